//! The verdict each asked connection got, kept for the connection's life.
//!
//! A connection the agent (or a timeout) decided is classified again later:
//! when the policy at its layer changes (any filter added or deleted there,
//! by anyone: Windows Firewall does it routinely), when it arrives on a new
//! interface, possibly in the opposite direction ("ALE Re-authorization";
//! "Processing Classify Callouts Asynchronously"). Those reauthorizations
//! must get the verdict the connection already has, or approved
//! connections are torn down. The verdict therefore belongs to the
//! connection (its 5-tuple, as seen from this host, which is the same in
//! both directions), not to the pended request, and is not consumed by
//! being read.
//!
//! Bounded and allocation-free on the classify path: a table of
//! [`CAPACITY`] slots allocated at load, open addressing over [`PROBES`]
//! slots per key, under one spin lock (O(1) per operation). The driver sees
//! no end of a connection at the ALE authorization layers, so an entry
//! lives until it has not been used for [`IDLE_LIMIT_TICKS`] or until a
//! newer connection needs its slot (the least recently used of the probed
//! slots is evicted, and counted). It outlives the filter that decided it:
//! the decision is about the connection, and another of our ask filters
//! reauthorizing it gets the same answer.
#![forbid(unsafe_code)]

use crate::platform::pool::{PoolSlice, PoolTag};
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::Result;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use wfpcallout_wire::Verdict;

/// Slots in the table.
pub const CAPACITY: usize = 1024;
/// Slots a key may occupy (probed from its hash).
pub const PROBES: usize = 8;
/// An entry unused for this long (in 100-ns ticks: one hour) is free again.
pub const IDLE_LIMIT_TICKS: u64 = 3_600 * 10_000_000;
/// The table's pool tag.
pub const TAG_CONNECTION_VERDICTS: PoolTag = PoolTag::new(*b"WfCv");

/// A connection as both directions see it from this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionKey {
    /// IP protocol.
    pub protocol: u8,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
}

/// One slot. All zeros (family 0) is the empty slot.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Slot {
    local: [u8; 16],
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
    protocol: u8,
    /// 0 empty, 4 or 6.
    family: u8,
    /// 1 permit, 2 block.
    verdict: u8,
    _reserved: u8,
    filter_id: u64,
    last_used: u64,
}

fn octets(address: IpAddr) -> (u8, [u8; 16]) {
    match address {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            if let Some(head) = bytes.get_mut(..4) {
                head.copy_from_slice(&v4.octets());
            }
            (4, bytes)
        }
        IpAddr::V6(v6) => (6, v6.octets()),
    }
}

impl Slot {
    fn of(key: &ConnectionKey) -> Slot {
        let (family, local) = octets(key.local.0);
        let (_, remote) = octets(key.remote.0);
        Slot {
            local,
            remote,
            local_port: key.local.1,
            remote_port: key.remote.1,
            protocol: key.protocol,
            family,
            ..Slot::default()
        }
    }

    fn same_connection(&self, other: &Slot) -> bool {
        self.family != 0
            && self.family == other.family
            && self.protocol == other.protocol
            && self.local_port == other.local_port
            && self.remote_port == other.remote_port
            && self.local == other.local
            && self.remote == other.remote
    }

    fn is_free(&self, now: u64) -> bool {
        self.family == 0 || now.saturating_sub(self.last_used) > IDLE_LIMIT_TICKS
    }

    fn verdict(&self) -> Option<Verdict> {
        match self.verdict {
            1 => Some(Verdict::Permit),
            2 => Some(Verdict::Block),
            _ => None,
        }
    }

    /// FNV-1a over the key bytes: the first slot to probe.
    fn home(&self) -> usize {
        let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
        let ports = [self.local_port.to_le_bytes(), self.remote_port.to_le_bytes()];
        let bytes = self.local.iter().chain(self.remote.iter()).chain(ports.iter().flatten()).chain([&self.protocol]);
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01B3);
        }
        (hash as usize) % CAPACITY
    }
}

/// Counters.
#[derive(Default)]
pub struct ConnectionVerdictStats {
    /// Verdicts stored.
    pub remembered: AtomicU64,
    /// Reauthorizations answered from a stored verdict.
    pub recalled: AtomicU64,
    /// Entries evicted to make room (their connections, if still alive,
    /// get the filter's default on a later reauthorization).
    pub evicted: AtomicU64,
}

/// The table.
pub struct ConnectionVerdicts {
    slots: SpinLock<Option<PoolSlice<Slot>>>,
    /// Counters.
    pub stats: ConnectionVerdictStats,
}

impl ConnectionVerdicts {
    /// Closed: nothing remembered until [`Self::open`].
    pub const fn new() -> Self {
        Self {
            slots: SpinLock::new(None),
            stats: ConnectionVerdictStats {
                remembered: AtomicU64::new(0),
                recalled: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            },
        }
    }

    /// Allocates the table (initialize, PASSIVE_LEVEL).
    pub fn open(&self) -> Result {
        let slots = PoolSlice::try_new_with(CAPACITY, TAG_CONNECTION_VERDICTS, |_| Slot::default())?;
        let old = self.slots.lock().replace(slots);
        drop(old);
        for counter in [&self.stats.remembered, &self.stats.recalled, &self.stats.evicted] {
            counter.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Frees the table (unload).
    pub fn close(&self) {
        let old = self.slots.lock().take();
        drop(old);
    }

    /// Remembers `verdict` for `key`, decided by `filter_id`'s policy.
    pub fn remember(&self, key: &ConnectionKey, filter_id: u64, verdict: Verdict, now: u64) {
        let mut entry = Slot::of(key);
        entry.filter_id = filter_id;
        entry.verdict = match verdict {
            Verdict::Permit => 1,
            Verdict::Block => 2,
        };
        entry.last_used = now;
        let home = entry.home();
        let mut guard = self.slots.lock();
        let Some(slots) = guard.as_mut() else { return };
        let mut target: Option<usize> = None;
        let mut oldest: Option<(usize, u64)> = None;
        for step in 0..PROBES {
            let index = (home + step) % CAPACITY;
            let Some(slot) = slots.get(index) else { continue };
            if slot.same_connection(&entry) {
                target = Some(index);
                break;
            }
            if target.is_none() && slot.is_free(now) {
                target = Some(index);
            }
            if oldest.is_none_or(|(_, used)| slot.last_used < used) {
                oldest = Some((index, slot.last_used));
            }
        }
        let index = match (target, oldest) {
            (Some(index), _) => index,
            (None, Some((index, _))) => {
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                index
            }
            (None, None) => return,
        };
        if let Some(slot) = slots.get_mut(index) {
            *slot = entry;
            self.stats.remembered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The verdict remembered for `key`, if any (and marks it used).
    pub fn recall(&self, key: &ConnectionKey, now: u64) -> Option<Verdict> {
        let probe = Slot::of(key);
        let home = probe.home();
        let mut guard = self.slots.lock();
        let slots = guard.as_mut()?;
        for step in 0..PROBES {
            let Some(slot) = slots.get_mut((home + step) % CAPACITY) else { continue };
            if slot.same_connection(&probe) && !slot.is_free(now) {
                slot.last_used = now;
                self.stats.recalled.fetch_add(1, Ordering::Relaxed);
                return slot.verdict();
            }
        }
        None
    }

    /// Connections remembered now (for tests and statistics).
    pub fn len(&self, now: u64) -> usize {
        self.slots.read().as_ref().map_or(0, |slots| slots.iter().filter(|slot| !slot.is_free(now)).count())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self, now: u64) -> bool {
        self.len(now) == 0
    }
}

impl Default for ConnectionVerdicts {
    fn default() -> Self {
        Self::new()
    }
}
