//! The control IOCTL decoders (what the driver decodes from user mode, and
//! what user mode decodes from the driver): none panics; whatever parses
//! re-encodes to exactly the input and parses back to the same value.
//! The first byte picks the decoder, the rest is the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, STATS_REPLY_MAX_LEN, StatsQueryRepr, StatsReply, VERDICT_MESSAGE_LEN,
    VERSION_INFO_LEN, VerdictMessageRepr, VersionInfoRepr,
};

fn stats_query(data: &[u8]) {
    let Ok(repr) = StatsQueryRepr::parse(data) else { return };
    let mut out = [0u8; 64];
    let len = repr.emit(&mut out).expect("a parsed query encodes");
    assert_eq!(&out[..len], data, "second encoding of {repr:?}");
    assert_eq!(StatsQueryRepr::parse(&out[..len]), Ok(repr));
}

fn verdict_message(data: &[u8]) {
    let Ok(repr) = VerdictMessageRepr::parse(data) else { return };
    let mut out = [0u8; VERDICT_MESSAGE_LEN];
    let len = repr.emit(&mut out).expect("a parsed verdict encodes");
    assert_eq!(&out[..len], data, "second encoding of {repr:?}");
    assert_eq!(VerdictMessageRepr::parse(&out[..len]), Ok(repr));
}

fn ask_request(data: &[u8]) {
    let Ok(repr) = AskRequestRepr::parse(data) else { return };
    let mut out = [0u8; ASK_REQUEST_LEN];
    let len = repr.emit(&mut out).expect("a parsed request encodes");
    assert_eq!(&out[..len], data, "second encoding of {repr:?}");
    assert_eq!(AskRequestRepr::parse(&out[..len]), Ok(repr));
}

fn version_info(data: &[u8]) {
    let Ok(repr) = VersionInfoRepr::parse(data) else { return };
    let mut out = [0u8; VERSION_INFO_LEN];
    let len = repr.emit(&mut out).expect("a parsed version encodes");
    assert_eq!(&out[..len], data, "second encoding of {repr:?}");
    assert_eq!(VersionInfoRepr::parse(&out[..len]), Ok(repr));
}

fn stats_reply(data: &[u8]) {
    let Ok(reply) = StatsReply::parse(data) else { return };
    let header = *reply.header();
    let mut out = vec![0u8; STATS_REPLY_MAX_LEN];
    let len = StatsReply::emit_header(&header, &mut out).expect("a parsed header encodes");
    assert_eq!(len, data.len());
    assert_eq!(reply.buffer_len(), data.len());
    // Entries decode one by one; if all do, the reply re-encodes exactly.
    let mut all = true;
    for (index, entry) in reply.entries().enumerate() {
        match entry {
            Ok(entry) => {
                StatsReply::emit_entry(index as u32, &entry, &mut out).expect("a parsed entry encodes");
            }
            Err(_) => all = false,
        }
    }
    if all {
        assert_eq!(&out[..len], data, "second encoding of a stats reply");
        let again = StatsReply::parse(&out[..len]).expect("re-parses");
        assert_eq!(*again.header(), header);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, buffer)) = data.split_first() else { return };
    match selector % 5 {
        0 => stats_query(buffer),
        1 => verdict_message(buffer),
        2 => ask_request(buffer),
        3 => version_info(buffer),
        _ => stats_reply(buffer),
    }
});
