//! The user-mode agent's side of the asynchronous path (inverted call):
//! which file handles are agents, and how the KMDF glue learns that a
//! request is waiting for one.
//!
//! The glue parks "get request" IOCTLs in a WDF manual queue (which also
//! handles their cancellation). When classify files a new request it calls
//! the hook the glue installed, and the glue pairs parked IOCTLs with
//! queued requests through [`crate::verdicts::pending::Pending::take_next`]. When the
//! last agent handle is cleaned up, every pending request gets its default
//! verdict.
#![forbid(unsafe_code)]

use crate::platform::log::Level;
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::{NtStatus, Result};
use crate::verdicts::pending::{EndReason, Pending};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Agent handles at most (each a file object that issued a get-request).
pub const MAX_AGENTS: usize = 8;

/// The agents and the request-available hook.
pub struct Agents {
    files: SpinLock<[u64; MAX_AGENTS]>,
    count: AtomicUsize,
    hook: SpinLock<Option<fn()>>,
}

impl Agents {
    /// No agents, no hook.
    pub const fn new() -> Self {
        Self { files: SpinLock::new([0; MAX_AGENTS]), count: AtomicUsize::new(0), hook: SpinLock::new(None) }
    }

    /// Whether any agent is connected (otherwise ask filters answer with
    /// their default verdict at once).
    pub fn connected(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Marks a file handle as an agent (idempotent). `file` is any non-zero
    /// token that identifies the handle (the WDFFILEOBJECT).
    pub fn attach(&self, file: u64) -> Result {
        if file == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut files = self.files.lock();
        if files.contains(&file) {
            return Ok(());
        }
        let slot = files.iter_mut().find(|f| **f == 0).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        *slot = file;
        self.count.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// A handle was cleaned up (closed). If it was the last agent, every
    /// request in `pending` is finished with its default verdict.
    pub fn detach(&self, file: u64, pending: &Pending) {
        let was_agent = {
            let mut files = self.files.lock();
            match files.iter_mut().find(|f| **f == file && file != 0) {
                Some(slot) => {
                    *slot = 0;
                    true
                }
                None => false,
            }
        };
        if !was_agent {
            return;
        }
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            let finished = pending.finish_where(EndReason::AgentGone, |_, _| true);
            crate::log!(Level::Info, "last agent gone: {} pending requests got their default verdict", finished);
        }
    }

    /// Forgets every agent (unload).
    pub fn reset(&self) {
        *self.files.lock() = [0; MAX_AGENTS];
        self.count.store(0, Ordering::Release);
    }

    /// Installs the function classify calls when a request is queued (the
    /// glue's "pair parked IOCTLs with requests" routine). It runs at up to
    /// DISPATCH_LEVEL with no driver lock held.
    pub fn set_request_available_hook(&self, hook: Option<fn()>) {
        *self.hook.lock() = hook;
    }

    /// Whether a request-available hook is installed.
    pub fn has_request_available_hook(&self) -> bool {
        self.hook.read().is_some()
    }

    /// Tells the glue a request is waiting.
    pub fn request_available(&self) {
        let hook = *self.hook.read();
        if let Some(hook) = hook {
            hook();
        }
    }
}

impl Default for Agents {
    fn default() -> Self {
        Self::new()
    }
}
