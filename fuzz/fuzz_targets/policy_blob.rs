//! The policy blob decoder, as the driver runs it on a filter's provider
//! context: the checked view never panics; whatever `PolicyRepr::parse`
//! accepts re-encodes to exactly the same bytes (one encoding per value),
//! parses back to the same policy, and the driver's own path (copy into a
//! kernel buffer, then parse) agrees with the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wfpcallout::wfp::filter_view::ProviderBlob;
use wfpcallout::callbacks::notify::policy_from_blob;
use wfpcallout_wire::{POLICY_MAX_LEN, PolicyBlob, PolicyRepr};

fuzz_target!(|data: &[u8]| {
    // The view: every accessor stays inside the buffer once checked.
    if let Ok(blob) = PolicyBlob::new_checked(data) {
        let _ = (blob.magic(), blob.version(), blob.total_len(), blob.action_code(), blob.log_level_code());
        let _ = (blob.verdict_code(), blob.label_len(), blob.param_a(), blob.param_b(), blob.reserved_is_zero());
        let _ = blob.label();
    }
    let parsed = PolicyRepr::parse(data);
    // The driver decodes the same bytes the same way (from its copy; an
    // oversized blob is refused before parsing, with its own error).
    let driver = policy_from_blob(&ProviderBlob::General(data));
    assert_eq!(driver.ok(), parsed.ok(), "driver and decoder disagree");
    let Ok(repr) = parsed else { return };
    assert!(data.len() <= POLICY_MAX_LEN);
    let mut out = [0u8; POLICY_MAX_LEN];
    let len = repr.emit(&mut out).expect("a parsed policy encodes");
    assert_eq!(len, repr.buffer_len());
    assert_eq!(&out[..len], data, "parse accepted a second encoding of {repr:?}");
    assert_eq!(PolicyRepr::parse(&out[..len]), Ok(repr));
    assert_eq!(repr.to_bytes(), data);
});
