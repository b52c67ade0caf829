//! What the engine lends one classifyFn call: its own copy of the incoming
//! values (with the IPv6 addresses they point to), the metadata and the
//! filter. When classifyFn returns, the copy is overwritten with 0xCD and
//! freed, so a pointer the callout kept past the call reads garbage in a
//! plain run and is a heap-use-after-free under AddressSanitizer: the
//! bug class behind real WFP driver crashes. The parameters of classifyFn
//! are valid only for the call (classifyFn2: "inFixedValues",
//! "inMetaValues", "filter" are inputs of the call; data to be used after
//! it must be copied, "Processing Classify Callouts Asynchronously").

use super::classify_input::ClassifyInput;
use fwps_types::fwp::FWP_BYTE_ARRAY16;
use fwps_types::*;

/// The byte a lent structure is overwritten with when classifyFn returns.
pub const POISON: u8 = 0xCD;

/// One classifyFn call's parameters.
pub(crate) struct ClassifyScope {
    values: Box<FWPS_INCOMING_VALUES0>,
    array: Box<[FWPS_INCOMING_VALUE0]>,
    v6_addresses: Box<[FWP_BYTE_ARRAY16; 2]>,
    metadata: Box<FWPS_INCOMING_METADATA_VALUES0>,
    filter: Box<FWPS_FILTER2>,
}

impl ClassifyScope {
    /// Copies `input` and `filter` for one call.
    pub(crate) fn lend(input: &ClassifyInput, filter: &FWPS_FILTER2) -> Self {
        let mut v6_addresses = Box::new(*input.v6_addresses);
        let mut array: Box<[FWPS_INCOMING_VALUE0]> = input.array.clone();
        for value in array.iter_mut() {
            if value.value.r#type != fwp::FWP_BYTE_ARRAY16_TYPE {
                continue;
            }
            // SAFETY: the tag says the union holds a byteArray16 pointer.
            let pointer = unsafe { value.value.Anonymous.byteArray16 };
            for (original, copy) in input.v6_addresses.iter().zip(v6_addresses.iter_mut()) {
                if std::ptr::eq(pointer, original) {
                    value.value.Anonymous.byteArray16 = copy;
                }
            }
        }
        let values = Box::new(FWPS_INCOMING_VALUES0 {
            layerId: input.values.layerId,
            valueCount: array.len() as u32,
            incomingValue: array.as_mut_ptr(),
        });
        Self { values, array, v6_addresses, metadata: Box::new(*input.metadata), filter: Box::new(*filter) }
    }

    pub(crate) fn values(&self) -> *const FWPS_INCOMING_VALUES0 {
        &*self.values
    }

    pub(crate) fn metadata(&self) -> *const FWPS_INCOMING_METADATA_VALUES0 {
        &*self.metadata
    }

    pub(crate) fn filter(&self) -> *const FWPS_FILTER2 {
        &*self.filter
    }
}

/// A block lent to classifyFn, as it was when the call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonedBlock {
    /// Its address (what classifyFn was given, or inside it).
    pub address: usize,
    /// Its size in bytes.
    pub len: usize,
    /// Whether every byte was [`POISON`] just before it was freed.
    pub poisoned: bool,
}

thread_local! {
    static TRACE: std::cell::RefCell<Option<Vec<PoisonedBlock>>> = const { std::cell::RefCell::new(None) };
}

/// Starts (or stops) recording the blocks poisoned on the calling thread.
pub fn trace_poisoned(on: bool) {
    TRACE.with(|t| *t.borrow_mut() = on.then(Vec::new));
}

/// The blocks poisoned on the calling thread since the last call.
pub fn take_poisoned() -> Vec<PoisonedBlock> {
    TRACE.with(|t| t.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
}

/// Overwrites every byte of `value` with [`POISON`] (and records it).
fn poison<T: ?Sized>(value: &mut T) {
    let size = std::mem::size_of_val(value);
    let start = std::ptr::from_mut(value).cast::<u8>();
    // SAFETY: `value` is a unique borrow of `size` bytes; the types lent
    // here hold only integers and raw pointers, for which any bytes are
    // valid.
    unsafe { std::ptr::write_bytes(start, POISON, size) };
    TRACE.with(|t| {
        if let Some(trace) = t.borrow_mut().as_mut() {
            // SAFETY: the `size` bytes just written, still borrowed.
            let bytes = unsafe { std::slice::from_raw_parts(start, size) };
            let poisoned = bytes.iter().all(|&b| b == POISON);
            trace.push(PoisonedBlock { address: start as usize, len: size, poisoned });
        }
    });
}

impl Drop for ClassifyScope {
    fn drop(&mut self) {
        poison(&mut *self.values);
        poison(&mut *self.array);
        poison(&mut *self.v6_addresses);
        poison(&mut *self.metadata);
        poison(&mut *self.filter);
    }
}
