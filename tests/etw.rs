//! The driver's ETW events, recorded by the simulated kernel's trace
//! session and decoded from their TraceLogging bytes alone: each event's
//! provider, name, level, keyword and every field, for load and unload,
//! audit and trace-level verdicts, pends and their completions, vetoed
//! filters and a failed load. With the session off, nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::{FWPS_LAYER_ALE_AUTH_CONNECT_V4, GUID, STATUS_BAD_DATA};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::platform::etw::{PROVIDER_GUID, PROVIDER_NAME, keyword, level};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::etw::{self, EtwEvent, FieldValue};
use wfpcallout_simkernel::{faults, verifier};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

const AGENT: u64 = 0xE7E7;
const STATUS_FWP_NULL_POINTER: i32 = 0xC022_0007_u32 as i32;

fn policy(action: PolicyAction, log_level: LogLevel, label: &str) -> PolicyRepr {
    PolicyRepr { action, log_level, label: Label::new(label).unwrap() }
}

fn text(value: &str) -> FieldValue {
    FieldValue::Str(value.to_string())
}

fn fields(event: &EtwEvent) -> Vec<(&str, FieldValue)> {
    event.fields.iter().map(|(name, value)| (name.as_str(), value.clone())).collect()
}

/// The one event of that name, checked as coming from our provider.
fn only(name: &str) -> EtwEvent {
    let events = etw::events_named(name);
    assert_eq!(events.len(), 1, "{name} events: {events:?}");
    let event = events.into_iter().next().unwrap();
    assert_eq!(event.provider, PROVIDER_NAME, "provider name from the traits sent with {name}");
    assert_eq!(event.opcode, 0);
    event
}

/// Boots with a session that wants every event of ours.
fn load_listening() -> Harness {
    let mut harness = Harness::boot();
    etw::enable_session(level::VERBOSE, 0);
    harness.initialize().unwrap();
    harness
}

/// Unloads, keeping the kernel (and so the recorded events) until the
/// harness is dropped: another test's boot would reset them.
fn unload(harness: &mut Harness) {
    harness.unload();
    harness.kernel.assert_unloaded_clean();
    etw::report_leaks();
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

#[test]
fn loaded_and_unloaded_bracket_a_registration_named_by_its_traits() {
    let mut harness = load_listening();
    let guid = "{c1cead91-0afd-5555-c4a6-c3a052d30bc0}".to_string();
    assert_eq!(etw::guid_string(&PROVIDER_GUID), guid, "the GUID docs/ETW.md gives");
    assert_eq!(etw::registrations(), vec![(guid, Some(PROVIDER_NAME.to_string()))]);
    let loaded = only("Loaded");
    assert_eq!((loaded.level, loaded.keyword), (level::INFORMATION, keyword::LIFECYCLE));
    assert_eq!(
        fields(&loaded),
        vec![("CalloutsRegistered", FieldValue::U32(6)), ("FiltersAdopted", FieldValue::U32(0))]
    );
    unload(&mut harness);
    let unloaded = only("Unloaded");
    assert_eq!((unloaded.level, unloaded.keyword), (level::INFORMATION, keyword::LIFECYCLE));
    assert_eq!(fields(&unloaded), vec![("RequestsCompleted", FieldValue::U32(0))]);
    assert!(etw::registrations().is_empty(), "unregistered at unload");
    etw::report_leaks();
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

#[test]
fn logged_audit_and_trace_level_verdicts_are_events_and_others_are_not() {
    let mut harness = load_listening();
    let audit = harness
        .add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Audit, LogLevel::Info, "audit-dns")))
        .unwrap();
    let traced = harness
        .add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Block, LogLevel::Trace, "no-smb")))
        .unwrap();
    // Not audit, not trace-level, and on the full classify path (a plain
    // permit or block never reaches the policy code at all).
    let limit = PolicyAction::RateLimit { rate_per_sec: 100, burst: 10 };
    let quiet =
        harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(limit, LogLevel::Info, "quiet"))).unwrap();
    // An audit logged at no level only counts (as in the debugger output).
    let unlogged = harness
        .add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Audit, LogLevel::Off, "silent")))
        .unwrap();
    assert!(harness.classify(Layer::ConnectV4, audit, 53).permitted());
    assert!(!harness.classify(Layer::ConnectV4, traced, 445).permitted());
    assert!(harness.classify(Layer::ConnectV4, quiet, 80).permitted());
    assert_eq!(harness.counters(quiet).unwrap().permitted, 1, "the rate-limit policy ran");
    assert!(harness.classify(Layer::ConnectV4, unlogged, 81).permitted());
    assert_eq!(harness.counters(unlogged).unwrap().audited, 1, "the unlogged audit counted");

    let verdicts = etw::events_named("Verdict");
    assert_eq!(verdicts.len(), 2, "logged audit + trace-level only: {verdicts:?}");
    for event in &verdicts {
        assert_eq!((event.level, event.keyword), (level::VERBOSE, keyword::VERDICTS));
        assert_eq!(event.provider, PROVIDER_NAME);
    }
    let layer = FieldValue::U16(FWPS_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(
        fields(&verdicts[0]),
        vec![
            ("FilterId", FieldValue::U64(audit)),
            ("LayerId", layer.clone()),
            ("Action", text("permit")),
            ("Policy", text("audit")),
            ("Label", text("audit-dns")),
        ]
    );
    assert_eq!(
        fields(&verdicts[1]),
        vec![
            ("FilterId", FieldValue::U64(traced)),
            ("LayerId", layer),
            ("Action", text("block")),
            ("Policy", text("block")),
            ("Label", text("no-smb")),
        ]
    );
    for id in [audit, traced, quiet, unlogged] {
        harness.delete_filter(id).unwrap();
    }
    unload(&mut harness);
}

#[test]
fn a_vetoed_filter_is_an_event_with_its_ntstatus() {
    let mut harness = load_listening();
    let good = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    let refused = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(b"not a policy"));
    assert_eq!(refused, Err(STATUS_BAD_DATA));
    let vetoed = only("FilterVetoed");
    assert_eq!((vetoed.level, vetoed.keyword), (level::WARNING, keyword::FILTERS));
    let FieldValue::U64(id) = vetoed.field("FilterId").cloned().unwrap() else { panic!("{vetoed:?}") };
    assert!(id > good, "the refused filter's own id ({id}), not the accepted one's ({good})");
    assert_eq!(fields(&vetoed)[1], ("Status", FieldValue::NtStatus(STATUS_BAD_DATA as u32)));
    assert_eq!(vetoed.fields.len(), 2);
    harness.delete_filter(good).unwrap();
    unload(&mut harness);
}

#[test]
fn pends_and_their_completions_are_events() {
    let mut harness = load_listening();
    let ask =
        policy(PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block }, LogLevel::Off, "ask-web");
    let filter = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);

    assert!(harness.classify_layer(Layer::ConnectV4, 8443).pended.is_some());
    let request = STATE.pending.take_next().unwrap();
    assert_eq!(request.local_port, 49_152, "the simulated engine's local port");
    let pended = only("Pended");
    assert_eq!((pended.level, pended.keyword), (level::INFORMATION, keyword::ASKS));
    assert_eq!(
        fields(&pended),
        vec![
            ("RequestId", FieldValue::U64(request.request_id)),
            ("FilterId", FieldValue::U64(filter)),
            ("Direction", text("outbound")),
            ("Protocol", FieldValue::U8(6)),
            ("LocalPort", FieldValue::Port(request.local_port)),
            ("RemotePort", FieldValue::Port(8443)),
            ("Label", text("ask-web")),
        ]
    );
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    let completed = only("Completed");
    assert_eq!((completed.level, completed.keyword), (level::INFORMATION, keyword::ASKS));
    assert_eq!(
        fields(&completed),
        vec![
            ("RequestId", FieldValue::U64(request.request_id)),
            ("FilterId", FieldValue::U64(filter)),
            ("Protocol", FieldValue::U8(6)),
            ("LocalPort", FieldValue::Port(request.local_port)),
            ("RemotePort", FieldValue::Port(8443)),
            ("Verdict", text("permit")),
            ("Why", text("agent")),
        ]
    );

    // A second pend is still waiting at unload: the default verdict, "unload".
    assert!(harness.classify_layer(Layer::ConnectV4, 9000).pended.is_some());
    unload(&mut harness);
    let completions = etw::events_named("Completed");
    assert_eq!(completions.len(), 2);
    assert_eq!(completions[1].field("RemotePort"), Some(&FieldValue::Port(9000)));
    assert_eq!(completions[1].field("Verdict"), Some(&text("block")));
    assert_eq!(completions[1].field("Why"), Some(&text("unload")));
    assert_eq!(only("Unloaded").field("RequestsCompleted"), Some(&FieldValue::U32(1)));
    etw::report_leaks();
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

/// Whether a request was already visible to agents when `Pended` was written.
static VISIBLE_AT_PENDED: std::sync::Mutex<Vec<bool>> = std::sync::Mutex::new(Vec::new());

/// A request's `Pended` is written before the request is filed, so no agent
/// can read and answer it (and its `Completed` be written) first: at the
/// moment the event is written, nothing is queued for the agent yet. Red
/// when the event is written after filing.
#[test]
fn pended_is_written_before_an_agent_can_see_the_request() {
    let mut harness = load_listening();
    let ask = policy(PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block }, LogLevel::Off, "ask");
    let filter = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);
    VISIBLE_AT_PENDED.lock().unwrap().clear();
    etw::on_write(Some(|event| {
        if event.name == "Pended" {
            VISIBLE_AT_PENDED.lock().unwrap().push(STATE.pending.has_queued());
        }
    }));
    for port in [8001, 8002, 8003] {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
        let request = STATE.pending.take_next().unwrap();
        STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    }
    etw::on_write(None);
    assert_eq!(*VISIBLE_AT_PENDED.lock().unwrap(), [false, false, false]);
    let names: Vec<String> = etw::events().into_iter().map(|e| e.name).filter(|n| n != "Verdict").collect();
    let asks: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n == "Pended" || *n == "Completed").collect();
    assert_eq!(asks, ["Pended", "Completed", "Pended", "Completed", "Pended", "Completed"]);
    harness.disconnect_agent(AGENT);
    harness.delete_filter(filter).unwrap();
    unload(&mut harness);
}

#[test]
fn a_failed_load_says_what_failed_and_leaves_no_registration() {
    let mut harness = Harness::boot();
    etw::enable_session(level::VERBOSE, 0);
    faults::fail_call("FwpsCalloutRegister2", 2, STATUS_FWP_NULL_POINTER);
    assert!(harness.initialize().is_err());
    let error = only("Error");
    assert_eq!((error.level, error.keyword), (level::ERROR, keyword::LIFECYCLE));
    assert_eq!(
        fields(&error),
        vec![("What", text("FwpsCalloutRegister2")), ("Status", FieldValue::NtStatus(STATUS_FWP_NULL_POINTER as u32))]
    );
    assert!(etw::events_named("Loaded").is_empty());
    assert!(etw::registrations().is_empty(), "a failed load unregisters the provider");
    harness.kernel.assert_unloaded_clean();
    etw::report_leaks();
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

#[test]
fn a_failed_pend_is_an_error_event_and_no_pended_event() {
    let mut harness = load_listening();
    let ask = policy(PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Permit }, LogLevel::Off, "ask");
    let filter = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);
    faults::fail_call("FwpsPendOperation0", 0, STATUS_FWP_NULL_POINTER);
    let result = harness.classify_layer(Layer::ConnectV4, 443);
    assert!(result.pended.is_none() && result.permitted(), "the default verdict at once");
    let error = only("Error");
    assert_eq!((error.level, error.keyword), (level::ERROR, keyword::LIFECYCLE));
    assert_eq!(
        fields(&error),
        vec![
            ("What", text("FwpsPendOperation0 (the default verdict applied)")),
            ("Status", FieldValue::NtStatus(STATUS_FWP_NULL_POINTER as u32))
        ]
    );
    assert!(etw::events_named("Pended").is_empty() && etw::events_named("Completed").is_empty());
    harness.delete_filter(filter).unwrap();
    unload(&mut harness);
}

/// The metadata bytes of one event, written out by hand from the
/// TraceLogging format (TraceLoggingProvider.h): size, tag byte, name,
/// then per field name, in-type (0x80: out-type follows), out-type.
#[test]
fn event_metadata_is_the_tracelogging_layout_byte_for_byte() {
    let mut wanted = vec![0, 0, 0];
    wanted.extend_from_slice(b"FilterVetoed\0");
    wanted.extend_from_slice(b"FilterId\0\x0a"); // UINT64
    wanted.extend_from_slice(b"Status\0\x88\x0e"); // UINT32 | chain, NTSTATUS
    let len = wanted.len() as u16;
    wanted[..2].copy_from_slice(&len.to_le_bytes());
    assert_eq!(wfpcallout::platform::etw::FILTER_VETOED.metadata, &wanted[..]);
    let mut traits = vec![13, 0];
    traits.extend_from_slice(b"wfpcallout\0");
    assert_eq!(&wfpcallout::platform::etw::PROVIDER_TRAITS[..], &traits[..]);
}

/// Runs load, an audit verdict, a veto and unload; the harness is kept
/// so that the kernel's record stays until the caller has read it.
fn busy_life() -> Harness {
    let mut harness = Harness::boot();
    harness.initialize().unwrap();
    let audit = harness
        .add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Audit, LogLevel::Trace, "a")))
        .unwrap();
    harness.classify(Layer::ConnectV4, audit, 53);
    let _ = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(b"junk"));
    harness.delete_filter(audit).unwrap();
    unload(&mut harness);
    harness
}

#[test]
fn with_no_session_the_provider_asks_and_writes_nothing() {
    let _kernel = busy_life();
    let (asked, written) = etw::call_counts();
    assert!(asked >= 4, "each event asked EtwProviderEnabled ({asked})");
    assert_eq!(written, 0, "no EtwWriteTransfer without a session");
    assert!(etw::events().is_empty());
    etw::report_leaks();
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

#[test]
fn a_session_gets_only_its_level_and_keywords() {
    // Each run: load, an audit verdict (Verbose, VERDICTS), a veto
    // (Warning, FILTERS), unload (Information, LIFECYCLE).
    let check = |session_level: u8, session_keyword: u64, wanted: &[&str]| {
        let mut harness = Harness::boot();
        etw::enable_session(session_level, session_keyword);
        harness.initialize().unwrap();
        let audit = harness
            .add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Audit, LogLevel::Info, "a")))
            .unwrap();
        harness.classify(Layer::ConnectV4, audit, 53);
        let _ = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(b"junk"));
        harness.delete_filter(audit).unwrap();
        unload(&mut harness);
        let names: Vec<String> = etw::events().into_iter().map(|e| e.name).collect();
        assert_eq!(names, wanted, "session level {session_level} keyword {session_keyword:#x}");
        let (_, written) = etw::call_counts();
        assert_eq!(written as usize, wanted.len(), "events the session does not want are not even written");
    };
    check(level::INFORMATION, keyword::VERDICTS, &[]);
    check(level::VERBOSE, keyword::VERDICTS, &["Verdict"]);
    check(level::WARNING, 0, &["FilterVetoed"]);
    check(level::INFORMATION, keyword::LIFECYCLE, &["Loaded", "Unloaded"]);
}

/// SHA-1 (FIPS 180-4), only to recompute the provider GUID here.
fn sha1(message: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut data = message.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in data.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The TraceLogging/EventSource provider GUID of a name.
fn guid_from_name(name: &str) -> GUID {
    const NAMESPACE: [u8; 16] =
        [0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB];
    let mut input = NAMESPACE.to_vec();
    for unit in name.to_uppercase().encode_utf16() {
        input.extend_from_slice(&unit.to_be_bytes());
    }
    let mut hash = sha1(&input);
    hash[7] = (hash[7] & 0x0F) | 0x50;
    GUID {
        data1: u32::from_le_bytes(hash[0..4].try_into().unwrap()),
        data2: u16::from_le_bytes(hash[4..6].try_into().unwrap()),
        data3: u16::from_le_bytes(hash[6..8].try_into().unwrap()),
        data4: hash[8..16].try_into().unwrap(),
    }
}

#[test]
fn the_provider_guid_is_the_tracelogging_hash_of_its_name() {
    // FIPS 180 test vector, then the hash's own published example.
    assert_eq!(sha1(b"abc")[..4], [0xA9, 0x99, 0x3E, 0x36]);
    let text = |name: &str| etw::guid_string(&guid_from_name(name));
    assert_eq!(text("MyProvider"), "{b3864c38-4273-58c5-545b-8b3608343471}");
    assert_eq!(text("myprovider"), text("MyProvider"), "case-insensitive");
    assert_eq!(text(PROVIDER_NAME), etw::guid_string(&PROVIDER_GUID));
}
