//! `wfpctl uninstall`: removes the driver's footprint from the filter
//! engine for good. The driver adds its provider, sublayer and six callouts
//! persistent (persistent filters may only name persistent objects), and
//! its unload keeps those that filters still name; once the driver is gone
//! (stopped and never started again, or removed) only a management client
//! can delete them. This command deletes, in one transaction, every filter
//! whose action names one of our callouts (whoever added it), every
//! provider context of our provider, then the callouts, the sublayer and
//! the provider: the order Microsoft's "Uninstalling a Provider" sample
//! uses (learn.microsoft.com/windows/win32/fwp/uninstalling-a-provider),
//! objects that reference another first. Objects already gone are fine, so
//! a second run succeeds and says nothing was left.
//!
//! It works with the driver loaded too: `FwpmCalloutDeleteByKey0` refuses
//! a callout only while filters name it, not while a driver has it
//! registered. The driver's callouts then stay registered (`FwpsCallout*`
//! registrations are the driver's own) until it stops; the command says so
//! and exits with [`crate::EXIT_DRIVER_LOADED`]. Its unload finds the
//! objects gone (not an error), and a later start adds them back.
#![forbid(unsafe_code)]

use core::fmt::Write as _;

use crate::backend::Backend;
use crate::command::Format;
use crate::driver_client::{self, DriverError};
use crate::filter_spec::CalloutTarget;
use crate::json::Json;
use crate::keys::{self, Guid};
use crate::run::{Io, Outcome, RunError};

/// What became of one of our objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It was there and is deleted.
    Deleted,
    /// It was not there (deleted already, or never added).
    Absent,
    /// The engine refused to delete it (`FWP_E_IN_USE`: another object
    /// still references it); why, in words.
    Kept(String),
}

impl Fate {
    fn word(&self) -> &'static str {
        match self {
            Fate::Deleted => "deleted",
            Fate::Absent => "absent",
            Fate::Kept(_) => "kept",
        }
    }

    /// `{…, "result": …, "error": …}` added to `object`.
    fn describe(&self, object: Json) -> Json {
        let error = match self {
            Fate::Kept(why) => Json::from(why.as_str()),
            Fate::Deleted | Fate::Absent => Json::Null,
        };
        object.with("result", self.word()).with("error", error)
    }
}

/// What [`Backend::delete_our_objects`] did, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The filters naming one of our callouts that were deleted: id and
    /// the callout they named.
    pub filters: Vec<(u64, CalloutTarget)>,
    /// How many provider contexts of our provider were deleted.
    pub provider_contexts: usize,
    /// Our six callouts, in [`CalloutTarget::ALL`] order.
    pub callouts: Vec<(CalloutTarget, Fate)>,
    /// Our sublayer.
    pub sublayer: Fate,
    /// Our provider.
    pub provider: Fate,
    /// Whether a callout was registered by the driver
    /// (`FWPM_CALLOUT_FLAG_REGISTERED`) when it was deleted: the driver is
    /// loaded.
    pub registered: bool,
}

impl Removal {
    /// Nothing of ours was found.
    pub fn nothing_found(&self) -> bool {
        self.filters.is_empty() && self.provider_contexts == 0 && self.fates().all(|fate| *fate == Fate::Absent)
    }

    /// Nothing of ours is left (every object deleted or absent).
    pub fn complete(&self) -> bool {
        self.fates().all(|fate| !matches!(fate, Fate::Kept(_)))
    }

    fn fates(&self) -> impl Iterator<Item = &Fate> {
        self.callouts.iter().map(|(_, fate)| fate).chain([&self.sublayer, &self.provider])
    }
}

/// What `uninstall` tells a user whose driver is still loaded.
pub const DRIVER_STILL_LOADED: &str = "the driver is still loaded: its callouts stay registered until it stops \
                                       (sc.exe stop WfpCallout); started again, it adds its provider, sublayer and \
                                       callouts back";

/// Deletes our filters and objects, then asks whether the driver is
/// loaded, and reports.
pub fn run(format: Format, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    backend.open_engine()?;
    let removal = backend.delete_our_objects()?;
    // The control device answers while the driver is loaded (whatever it
    // answers); opening it fails otherwise.
    let driver_loaded = removal.registered || !matches!(driver_client::version(backend), Err(DriverError::Backend(_)));
    match format {
        Format::Json => writeln!(io.out, "{}", json(&removal, driver_loaded))?,
        Format::Text => write!(io.out, "{}", text(&removal))?,
    }
    if driver_loaded {
        writeln!(io.err, "wfpctl: {DRIVER_STILL_LOADED}")?;
    }
    Ok(if !removal.complete() {
        Outcome::Degraded
    } else if driver_loaded {
        Outcome::DriverLoaded
    } else {
        Outcome::Success
    })
}

fn object_line(text: &mut String, what: &str, fate: &Fate) {
    // Writing to a String cannot fail.
    let _ = match fate {
        Fate::Deleted => writeln!(text, "deleted {what}"),
        Fate::Absent => Ok(()),
        Fate::Kept(why) => writeln!(text, "kept {what}: {why}"),
    };
}

/// The text report: one line per deleted or kept object, then a summary.
pub fn text(removal: &Removal) -> String {
    let mut text = String::new();
    for (id, target) in &removal.filters {
        let _ = writeln!(text, "deleted filter {id} at {target}");
    }
    match removal.provider_contexts {
        0 => {}
        1 => text.push_str("deleted 1 provider context\n"),
        count => {
            let _ = writeln!(text, "deleted {count} provider contexts");
        }
    }
    for (target, fate) in &removal.callouts {
        object_line(&mut text, &format!("callout {target} {{{}}}", target.callout_key()), fate);
    }
    object_line(&mut text, &format!("the sublayer {{{}}}", keys::SUBLAYER_KEY), &removal.sublayer);
    object_line(&mut text, &format!("the provider {{{}}}", keys::PROVIDER_KEY), &removal.provider);
    text.push_str(if removal.nothing_found() {
        "nothing of wfpcallout was left in the filter engine\n"
    } else if removal.complete() {
        "wfpcallout is gone from the filter engine\n"
    } else {
        "some wfpcallout objects are still referenced and were kept (see above)\n"
    });
    text
}

fn object_json(key: Guid, fate: &Fate) -> Json {
    fate.describe(Json::object().with("key", key.to_string()))
}

/// The JSON document: `{"filters_deleted":[ids],"provider_contexts_deleted",
/// "callouts":[{"callout","key","result","error"}],"sublayer":{"key",
/// "result","error"},"provider":{…},"complete","driver_loaded"}`; `result`
/// is `deleted`, `absent` or `kept` (`error` says why).
pub fn json(removal: &Removal, driver_loaded: bool) -> Json {
    let callouts = removal
        .callouts
        .iter()
        .map(|(target, fate)| {
            fate.describe(
                Json::object().with("callout", target.to_string()).with("key", target.callout_key().to_string()),
            )
        })
        .collect();
    Json::object()
        .with("filters_deleted", removal.filters.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .with("provider_contexts_deleted", removal.provider_contexts)
        .with("callouts", Json::Array(callouts))
        .with("sublayer", object_json(keys::SUBLAYER_KEY, &removal.sublayer))
        .with("provider", object_json(keys::PROVIDER_KEY, &removal.provider))
        .with("complete", removal.complete())
        .with("driver_loaded", driver_loaded)
}
