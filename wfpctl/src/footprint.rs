//! `wfpctl state`: the driver's footprint in the filter engine, in one
//! view: our provider and sublayer, our six callouts and whether each is
//! registered, every filter whose action names one of them (whoever added
//! it) with its weight, action type, policy and label, and what looks left
//! over from an earlier install. What `netsh wfp show state` and `show
//! filters` say across two XML files.
//!
//! The backend collects the objects ([`EngineObjects`]); everything here is
//! portable: decoding the policies, finding the leftovers, the text and
//! the JSON.
#![forbid(unsafe_code)]

use core::fmt::Write as _;

use wfpcallout_wire::PolicyRepr;
use wfpcallout_wire::text::Table;

use crate::filter_spec::{CalloutTarget, Condition, conditions_text};
use crate::json::Json;
use crate::json_output;
use crate::keys::{self, Guid};
use crate::policy;

/// A provider or sublayer as the engine returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementObject {
    /// Display name.
    pub name: String,
    /// `FWPM_*_FLAG_PERSISTENT`: it survives reboots (the driver adds
    /// its objects persistent, so that persistent filters can name them;
    /// `wfpctl uninstall` removes them).
    pub persistent: bool,
    /// The sublayer's weight (`None` for a provider).
    pub weight: Option<u16>,
}

/// One of our callouts as `FwpmCalloutGetByKey0` returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalloutObject {
    /// Run-time callout id.
    pub id: u32,
    /// `FWPM_CALLOUT_FLAG_REGISTERED`: the driver has registered it.
    pub registered: bool,
    /// `FWPM_CALLOUT_FLAG_PERSISTENT`.
    pub persistent: bool,
}

/// A filter whose action names one of our callouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalloutFilter {
    /// Run-time filter id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// The callout its action names (and so its layer).
    pub target: CalloutTarget,
    /// Whether it belongs to our provider (wfpctl adds it so).
    pub ours: bool,
    /// The weight the engine computed, if it reported one.
    pub weight: Option<u64>,
    /// `FWP_ACTION_*`.
    pub action_type: u32,
    /// `FWPM_FILTER_FLAG_PERSISTENT`.
    pub persistent: bool,
    /// The conditions wfpctl understands.
    pub conditions: Vec<Condition>,
    /// The provider context it carries, if any.
    pub provider_context: Option<Guid>,
}

/// A provider context of our provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderContextObject {
    /// Its key.
    pub key: Guid,
    /// Run-time id.
    pub id: u64,
    /// Its data (the policy blob), if it is an `FWPM_GENERAL_CONTEXT`.
    pub data: Option<Vec<u8>>,
    /// `FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT`.
    pub persistent: bool,
}

/// What the backend found in the engine.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EngineObjects {
    /// Our provider, if it exists.
    pub provider: Option<ManagementObject>,
    /// Our sublayer, if it exists.
    pub sublayer: Option<ManagementObject>,
    /// Our six callouts in [`CalloutTarget::ALL`] order; `None`: no
    /// `FWPM_CALLOUT` with that key.
    pub callouts: Vec<(CalloutTarget, Option<CalloutObject>)>,
    /// Every filter naming one of our callouts, by id.
    pub filters: Vec<CalloutFilter>,
    /// Every provider context of our provider.
    pub provider_contexts: Vec<ProviderContextObject>,
}

/// A filter's policy, as far as it can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterPolicy {
    /// Decoded from its provider context with the driver's decoder.
    Decoded(PolicyRepr),
    /// The filter has no provider context: the driver applies the default
    /// policy (permit).
    NoContext,
    /// Its provider context is not one of ours (or no longer exists).
    ContextNotOurs,
    /// The blob does not decode: the driver would refuse it.
    Malformed(String),
}

/// Why an object looks left over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// What it is: `provider context {…}`, `filter 70001`.
    pub object: String,
    /// Why it looks left over.
    pub why: String,
}

/// The footprint: the objects, each filter's policy, the leftovers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// What the engine holds.
    pub objects: EngineObjects,
    /// Each filter's policy, in the order of `objects.filters`.
    pub policies: Vec<FilterPolicy>,
    /// What looks left over from an earlier install.
    pub leftovers: Vec<Leftover>,
}

fn action_type_name(action_type: u32) -> String {
    match action_type {
        0x5003 => "CALLOUT_TERMINATING".to_string(),
        0x6004 => "CALLOUT_INSPECTION".to_string(),
        0x4005 => "CALLOUT_UNKNOWN".to_string(),
        other => format!("{other:#06x}"),
    }
}

impl Footprint {
    /// Decodes the policies and finds the leftovers.
    pub fn analyze(objects: EngineObjects) -> Footprint {
        let policies = objects
            .filters
            .iter()
            .map(|filter| match filter.provider_context {
                None => FilterPolicy::NoContext,
                Some(key) => match objects.provider_contexts.iter().find(|context| context.key == key) {
                    Some(ProviderContextObject { data: Some(blob), .. }) => match policy::decode(blob) {
                        Ok(policy) => FilterPolicy::Decoded(policy),
                        Err(error) => FilterPolicy::Malformed(error.to_string()),
                    },
                    Some(ProviderContextObject { data: None, .. }) => {
                        FilterPolicy::Malformed("not an FWPM_GENERAL_CONTEXT".to_string())
                    }
                    None => FilterPolicy::ContextNotOurs,
                },
            })
            .collect();
        let mut leftovers = Vec::new();
        for context in &objects.provider_contexts {
            let used = objects.filters.iter().any(|filter| filter.provider_context == Some(context.key));
            if !used {
                leftovers.push(Leftover {
                    object: format!("provider context {{{}}} (id {})", context.key, context.id),
                    why: "of our provider, and no filter uses it: left by an interrupted add or delete, or an \
                          earlier install"
                        .to_string(),
                });
            }
        }
        // The driver adds its provider, sublayer and callouts persistent; a
        // plain one is an older install's, which the driver keeps (with a
        // warning in its log) while filters use it.
        let plain = [("provider", objects.provider.as_ref()), ("sublayer", objects.sublayer.as_ref())]
            .into_iter()
            .filter(|(_, object)| object.is_some_and(|object| !object.persistent))
            .map(|(what, _)| what.to_string())
            .chain(objects.callouts.iter().filter_map(|(target, callout)| {
                callout.as_ref().filter(|callout| !callout.persistent).map(|_| format!("callout {target}"))
            }));
        for object in plain {
            leftovers.push(Leftover {
                object,
                why: "is not persistent, as an older install added it (this driver adds its objects persistent): \
                      it is gone after a reboot and persistent filters cannot name it; the driver replaces it when \
                      it loads with no filter using it"
                    .to_string(),
            });
        }
        let any_registered = objects.callouts.iter().any(|(_, callout)| callout.as_ref().is_some_and(|c| c.registered));
        if !any_registered {
            for filter in &objects.filters {
                leftovers.push(Leftover {
                    object: format!("filter {}", filter.id),
                    why: "names a wfpcallout callout, and none is registered: the driver is not running (the \
                          filter permits, or is ignored, until it is; `wfpctl uninstall` removes it)"
                        .to_string(),
                });
            }
        }
        for filter in objects.filters.iter().filter(|filter| filter.persistent) {
            leftovers.push(Leftover {
                object: format!("filter {}", filter.id),
                why: "is persistent (wfpctl adds filters that end with BFE): it comes back after every reboot"
                    .to_string(),
            });
        }
        Footprint { objects, policies, leftovers }
    }

    /// Whether the driver's objects are all there and its callouts
    /// registered.
    pub fn complete(&self) -> bool {
        self.objects.provider.is_some()
            && self.objects.sublayer.is_some()
            && self.objects.callouts.len() == CalloutTarget::ALL.len()
            && self.objects.callouts.iter().all(|(_, callout)| callout.as_ref().is_some_and(|c| c.registered))
    }

    /// The text report.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let object = |found: &Option<ManagementObject>| match found {
            Some(object) => {
                let weight = object.weight.map_or(String::new(), |weight| format!(", weight {weight}"));
                let persistent = if object.persistent { ", persistent" } else { "" };
                format!("present \"{}\"{weight}{persistent}", object.name)
            }
            None => "missing (the driver adds it when it loads)".to_string(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(text, "provider  {{{}}}  {}", keys::PROVIDER_KEY, object(&self.objects.provider));
        let _ = writeln!(text, "sublayer  {{{}}}  {}", keys::SUBLAYER_KEY, object(&self.objects.sublayer));
        let mut callouts =
            Table::new(&[("CALLOUT", false), ("KEY", false), ("ID", true), ("REGISTERED", false), ("FILTERS", true)]);
        for (target, callout) in &self.objects.callouts {
            let filters = self.objects.filters.iter().filter(|filter| filter.target == *target).count();
            let (id, registered) = match callout {
                Some(callout) => (callout.id.to_string(), if callout.registered { "yes" } else { "no" }.to_string()),
                None => ("-".to_string(), "missing".to_string()),
            };
            callouts.push(vec![
                target.to_string(),
                format!("{{{}}}", target.callout_key()),
                id,
                registered,
                filters.to_string(),
            ]);
        }
        text.push_str(&callouts.render());
        if self.objects.filters.is_empty() {
            text.push_str("no filter names a wfpcallout callout\n");
        } else {
            let mut rows = Table::new(&[
                ("FILTER", true),
                ("LAYER", false),
                ("WEIGHT", true),
                ("ACTION", false),
                ("POLICY", false),
                ("LABEL", false),
                ("PROVIDER", false),
                ("CONDITIONS", false),
            ]);
            for (filter, policy) in self.objects.filters.iter().zip(&self.policies) {
                let (policy_text, label) = match policy {
                    FilterPolicy::Decoded(policy) => (
                        policy::describe_action(&policy.action),
                        if policy.label.is_empty() { "-".to_string() } else { policy.label.to_string() },
                    ),
                    FilterPolicy::NoContext => ("(no provider context: permit)".to_string(), "-".to_string()),
                    FilterPolicy::ContextNotOurs => ("(provider context not ours)".to_string(), "-".to_string()),
                    FilterPolicy::Malformed(error) => (format!("(malformed: {error})"), "-".to_string()),
                };
                rows.push(vec![
                    filter.id.to_string(),
                    filter.target.to_string(),
                    filter.weight.map_or("-".to_string(), |weight| weight.to_string()),
                    action_type_name(filter.action_type),
                    policy_text,
                    label,
                    if filter.ours { "wfpcallout" } else { "other" }.to_string(),
                    conditions_text(&filter.conditions),
                ]);
            }
            text.push_str(&rows.render());
        }
        if self.leftovers.is_empty() {
            text.push_str("leftovers: none\n");
        } else {
            text.push_str("leftovers:\n");
            for leftover in &self.leftovers {
                let _ = writeln!(text, "  {}: {}", leftover.object, leftover.why);
            }
        }
        text
    }

    /// The JSON document: `{"complete","provider","sublayer","callouts",
    /// "filters","leftovers"}` (see `docs/WALKTHROUGH.md`).
    pub fn json(&self) -> Json {
        let object = |found: &Option<ManagementObject>, key: Guid| match found {
            Some(object) => Json::object()
                .with("key", key.to_string())
                .with("name", object.name.as_str())
                .with("weight", object.weight)
                .with("persistent", object.persistent),
            None => Json::Null,
        };
        let callouts = self
            .objects
            .callouts
            .iter()
            .map(|(target, callout)| {
                Json::object()
                    .with("callout", target.to_string())
                    .with("key", target.callout_key().to_string())
                    .with("present", callout.is_some())
                    .with("id", callout.as_ref().map(|c| c.id))
                    .with("registered", callout.as_ref().is_some_and(|c| c.registered))
            })
            .collect();
        let filters = self
            .objects
            .filters
            .iter()
            .zip(&self.policies)
            .map(|(filter, policy)| {
                let (policy, problem) = match policy {
                    FilterPolicy::Decoded(policy) => (json_output::policy(policy), Json::Null),
                    FilterPolicy::NoContext => (Json::Null, Json::from("no provider context")),
                    FilterPolicy::ContextNotOurs => (Json::Null, Json::from("provider context not ours")),
                    FilterPolicy::Malformed(error) => (Json::Null, Json::from(format!("malformed: {error}"))),
                };
                Json::object()
                    .with("filter_id", filter.id)
                    .with("name", filter.name.as_str())
                    .with("layer", filter.target.to_string())
                    .with("ours", filter.ours)
                    .with("weight", filter.weight)
                    .with("action_type", action_type_name(filter.action_type))
                    .with("persistent", filter.persistent)
                    .with("conditions", json_output::conditions(&filter.conditions))
                    .with("policy", policy)
                    .with("policy_problem", problem)
            })
            .collect();
        let leftovers = self
            .leftovers
            .iter()
            .map(|leftover| Json::object().with("object", leftover.object.as_str()).with("why", leftover.why.as_str()))
            .collect();
        Json::object()
            .with("complete", self.complete())
            .with("provider", object(&self.objects.provider, keys::PROVIDER_KEY))
            .with("sublayer", object(&self.objects.sublayer, keys::SUBLAYER_KEY))
            .with("callouts", Json::Array(callouts))
            .with("filters", Json::Array(filters))
            .with("leftovers", Json::Array(leftovers))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::filter_spec::{ConditionField, ConditionValue, IpVersion, Layer};
    use wfpcallout_wire::{Label, LogLevel, PolicyAction};

    const CONNECT_V4: CalloutTarget = CalloutTarget { layer: Layer::Connect, ip: IpVersion::V4 };

    fn objects() -> EngineObjects {
        let web =
            PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Off, label: Label::new("web").unwrap() };
        EngineObjects {
            provider: Some(ManagementObject { name: "wfpcallout".into(), persistent: true, weight: None }),
            sublayer: Some(ManagementObject { name: "wfpcallout".into(), persistent: true, weight: Some(0x100) }),
            callouts: CalloutTarget::ALL
                .iter()
                .enumerate()
                .map(|(index, target)| {
                    (*target, Some(CalloutObject { id: 300 + index as u32, registered: true, persistent: true }))
                })
                .collect(),
            filters: vec![
                CalloutFilter {
                    id: 70_001,
                    name: "wfpcallout: web".into(),
                    target: CONNECT_V4,
                    ours: true,
                    weight: Some(42),
                    action_type: 0x5003,
                    persistent: false,
                    conditions: vec![Condition {
                        field: ConditionField::RemotePort,
                        value: ConditionValue::Uint16(443),
                    }],
                    provider_context: Some(Guid(1)),
                },
                CalloutFilter {
                    id: 70_002,
                    name: "someone else's".into(),
                    target: CONNECT_V4,
                    ours: false,
                    weight: None,
                    action_type: 0x5003,
                    persistent: true,
                    conditions: Vec::new(),
                    provider_context: None,
                },
            ],
            provider_contexts: vec![
                ProviderContextObject { key: Guid(1), id: 5, data: Some(web.to_bytes()), persistent: false },
                ProviderContextObject { key: Guid(2), id: 6, data: Some(b"junk".to_vec()), persistent: false },
            ],
        }
    }

    #[test]
    fn policies_and_leftovers() {
        let footprint = Footprint::analyze(objects());
        assert!(footprint.complete());
        assert!(matches!(&footprint.policies[0], FilterPolicy::Decoded(policy) if policy.label.as_str() == "web"));
        assert_eq!(footprint.policies[1], FilterPolicy::NoContext);
        let objects: Vec<&str> = footprint.leftovers.iter().map(|l| l.object.as_str()).collect();
        assert_eq!(objects, ["provider context {00000000-0000-0000-0000-000000000002} (id 6)", "filter 70002"]);
        let text = footprint.text();
        assert!(text.contains("connect-v4      {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0010}  300  yes"), "{text}");
        assert!(text.contains("70001  connect-v4      42  CALLOUT_TERMINATING  audit"), "{text}");
        assert!(text.contains("someone") || text.contains("other"), "{text}");
        assert!(text.contains("leftovers:\n  provider context"), "{text}");
        let json = footprint.json().to_string();
        assert!(
            json.starts_with(r#"{"complete":true,"provider":{"key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001""#),
            "{json}"
        );
        assert!(json.contains(r#""policy":null,"policy_problem":"no provider context""#), "{json}");
    }

    #[test]
    fn a_stopped_driver_leaves_filters_behind() {
        let mut stopped = objects();
        for (_, callout) in &mut stopped.callouts {
            if let Some(callout) = callout {
                callout.registered = false;
            }
        }
        stopped.provider_contexts[0].data = Some(b"WFPC".to_vec());
        let footprint = Footprint::analyze(stopped);
        assert!(!footprint.complete());
        assert!(matches!(&footprint.policies[0], FilterPolicy::Malformed(_)));
        assert!(footprint.leftovers.iter().any(|l| l.object == "filter 70001" && l.why.contains("none is registered")));
        let missing = Footprint::analyze(EngineObjects::default());
        assert!(!missing.complete());
        assert!(
            missing.text().contains("provider  {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}  missing"),
            "{}",
            missing.text()
        );
        assert!(missing.text().contains("no filter names a wfpcallout callout"));
        assert!(missing.text().ends_with("leftovers: none\n"));
    }

    /// The driver adds its provider, sublayer and callouts persistent: a
    /// plain one is an older install's, kept while filters use it.
    #[test]
    fn objects_an_older_install_added_plain_are_left_over() {
        let mut older = objects();
        if let Some(sublayer) = older.sublayer.as_mut() {
            sublayer.persistent = false;
        }
        if let Some((_, Some(callout))) = older.callouts.get_mut(2) {
            callout.persistent = false;
        }
        let footprint = Footprint::analyze(older);
        let plain: Vec<&str> = footprint
            .leftovers
            .iter()
            .filter(|l| l.why.contains("not persistent"))
            .map(|l| l.object.as_str())
            .collect();
        assert_eq!(plain, ["sublayer", "callout recv-accept-v4"]);
        assert!(footprint.text().contains("sublayer: is not persistent"), "{}", footprint.text());
    }
}
