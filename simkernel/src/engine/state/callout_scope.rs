//! Which callout callback, if any, the calling thread is inside of. Some
//! calls are allowed only out of band: TCP packets may be injected only
//! from outside classifyFn (FwpsInjectTransportReceiveAsync0 remarks: from
//! a DPC or a worker), so the engine needs to know where a call comes from.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Runs `f` as the engine's call of callback `name` (classifyFn,
/// notifyFn); the name in force is the innermost's.
pub(crate) fn inside<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    let outer = INSIDE.with(|inside| inside.replace(Some(name)));
    let result = f();
    INSIDE.with(|inside| inside.set(outer));
    result
}

/// The callback the calling thread is inside of, if any.
pub(crate) fn current() -> Option<&'static str> {
    INSIDE.with(Cell::get)
}
