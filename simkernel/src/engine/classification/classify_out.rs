//! The `FWPS_CLASSIFY_OUT0` the engine lends a callout for one classifyFn
//! call, kept as raw words so that every byte the callout wrote can be
//! compared with what it was given, and the write-right rule checked:
//! without `FWPS_RIGHT_ACTION_WRITE` on entry a callout writes nothing,
//! except a BLOCK that vetoes a higher filter's permit (classifyFn0 and
//! FWPS_CLASSIFY_OUT0 pages; "Filter Arbitration").

use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::cell::RefCell;

const WORDS: usize = 5;
const _: () = assert!(core::mem::size_of::<FWPS_CLASSIFY_OUT0>() == WORDS * 8);
const _: () = assert!(core::mem::align_of::<FWPS_CLASSIFY_OUT0>() <= core::mem::align_of::<u64>());

/// The bytes of one classifyOut before and after a classifyFn call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifyOutTrace {
    /// The filter whose callout was called.
    pub filter_id: u64,
    /// What the engine handed the callout.
    pub before: [u8; WORDS * 8],
    /// What the callout left.
    pub after: [u8; WORDS * 8],
}

thread_local! {
    /// Traces of this thread's classifyFn calls, while tracing is on.
    static TRACE: RefCell<Option<Vec<ClassifyOutTrace>>> = const { RefCell::new(None) };
}

/// Starts (or stops) recording every classifyOut on the calling thread.
pub fn trace_classify_out(on: bool) {
    TRACE.with(|t| *t.borrow_mut() = on.then(Vec::new));
}

/// The classifyOuts recorded on the calling thread since the last call.
pub fn take_classify_out_trace() -> Vec<ClassifyOutTrace> {
    TRACE.with(|t| t.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
}

/// A classifyOut lent to one callout.
pub(crate) struct LentClassifyOut {
    words: [u64; WORDS],
    before: [u8; WORDS * 8],
    filter_id: u64,
}

fn bytes_of(words: &[u64; WORDS]) -> [u8; WORDS * 8] {
    let mut bytes = [0u8; WORDS * 8];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

impl LentClassifyOut {
    /// No verdict yet, `rights` as the engine grants them.
    pub(crate) fn new(filter_id: u64, rights: u32) -> Self {
        let mut words = [0u64; WORDS];
        // SAFETY: `words` is 40 bytes, 8-aligned (asserted above), zeroed:
        // a valid FWPS_CLASSIFY_OUT0 (all integers), borrowed only here.
        let out = unsafe { &mut *words.as_mut_ptr().cast::<FWPS_CLASSIFY_OUT0>() };
        // Field by field, so the padding keeps its zero bytes.
        out.filterId = filter_id;
        out.rights = rights;
        let before = bytes_of(&words);
        Self { words, before, filter_id }
    }

    /// The pointer classifyFn receives.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut FWPS_CLASSIFY_OUT0 {
        self.words.as_mut_ptr().cast()
    }

    /// After the call: records the trace, checks the write-right rule and
    /// returns what the callout left.
    pub(crate) fn finish(self) -> FWPS_CLASSIFY_OUT0 {
        // SAFETY: initialized by `new`, then written only through the
        // FWPS_CLASSIFY_OUT0 pointer by the callout.
        let out = unsafe { self.words.as_ptr().cast::<FWPS_CLASSIFY_OUT0>().read() };
        let after = bytes_of(&self.words);
        TRACE.with(|t| {
            if let Some(trace) = t.borrow_mut().as_mut() {
                trace.push(ClassifyOutTrace { filter_id: self.filter_id, before: self.before, after });
            }
        });
        // SAFETY: `before` holds the bytes of a valid FWPS_CLASSIFY_OUT0.
        let given = unsafe { self.before.as_ptr().cast::<FWPS_CLASSIFY_OUT0>().read_unaligned() };
        if given.rights & FWPS_RIGHT_ACTION_WRITE == 0 && after != self.before {
            let veto = out.actionType == fwp::FWP_ACTION_BLOCK
                && out.rights == given.rights
                && out.flags == given.flags
                && out.outContext == given.outContext
                && out.filterId == given.filterId
                && out.reserved == given.reserved;
            if !veto {
                report(
                    ViolationKind::ApiMisuse,
                    format!(
                        "filter {}: classifyFn wrote classifyOut without FWPS_RIGHT_ACTION_WRITE \
                         (actionType {:#x}, rights {:#x}, flags {:#x}); only a BLOCK veto may be written",
                        self.filter_id, out.actionType, out.rights, out.flags
                    ),
                );
            }
        }
        out
    }
}
