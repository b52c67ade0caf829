//! The connection-verdict table on its own: keys tell every field of the
//! 5-tuple apart, verdicts are not consumed by being read, idle entries
//! expire, a full neighbourhood evicts its least recently used entry (and
//! counts it), and a closed table remembers nothing. Unload frees it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use wfpcallout::connections::connection_verdicts::{CAPACITY, ConnectionKey, ConnectionVerdicts, IDLE_LIMIT_TICKS};
use wfpcallout_simkernel::{Kernel, pool};
use wfpcallout_wire::Verdict;

const NOW: u64 = 1_000_000_000;

fn key(local: &str, local_port: u16, remote: &str, remote_port: u16, protocol: u8) -> ConnectionKey {
    ConnectionKey {
        protocol,
        local: (local.parse::<IpAddr>().unwrap(), local_port),
        remote: (remote.parse::<IpAddr>().unwrap(), remote_port),
    }
}

fn base() -> ConnectionKey {
    key("10.0.0.2", 50_000, "192.0.2.10", 443, 6)
}

#[test]
fn every_field_of_the_key_counts_and_reading_does_not_consume() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.open().unwrap();
    table.remember(&base(), 1, Verdict::Permit, NOW);
    for _ in 0..3 {
        assert_eq!(table.recall(&base(), NOW), Some(Verdict::Permit));
    }
    let others = [
        key("10.0.0.3", 50_000, "192.0.2.10", 443, 6),
        key("10.0.0.2", 50_001, "192.0.2.10", 443, 6),
        key("10.0.0.2", 50_000, "192.0.2.11", 443, 6),
        key("10.0.0.2", 50_000, "192.0.2.10", 444, 6),
        key("10.0.0.2", 50_000, "192.0.2.10", 443, 17),
        key("::ffff:10.0.0.2", 50_000, "::ffff:192.0.2.10", 443, 6),
    ];
    for other in &others {
        assert_eq!(table.recall(other, NOW), None, "{other:?} is another connection");
    }
    for (i, other) in others.iter().enumerate() {
        table.remember(other, 2, if i % 2 == 0 { Verdict::Block } else { Verdict::Permit }, NOW);
    }
    for (i, other) in others.iter().enumerate() {
        let wanted = if i % 2 == 0 { Verdict::Block } else { Verdict::Permit };
        assert_eq!(table.recall(other, NOW), Some(wanted));
    }
    table.remember(&base(), 1, Verdict::Block, NOW);
    assert_eq!(table.recall(&base(), NOW), Some(Verdict::Block), "a newer verdict replaces the old one");
    assert_eq!(table.len(NOW), 7);
    assert_eq!(table.stats.remembered.load(Ordering::Relaxed), 8);
    table.close();
    assert!(pool::usage_by_tag().is_empty(), "close frees the table");
    kernel.assert_unloaded_clean();
}

#[test]
fn idle_entries_expire_and_use_keeps_them() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.open().unwrap();
    let used = key("10.0.0.2", 1, "192.0.2.10", 443, 6);
    table.remember(&base(), 1, Verdict::Permit, NOW);
    table.remember(&used, 1, Verdict::Permit, NOW);
    assert_eq!(table.recall(&used, NOW + IDLE_LIMIT_TICKS), Some(Verdict::Permit), "used at the limit");
    assert_eq!(table.recall(&base(), NOW + IDLE_LIMIT_TICKS), Some(Verdict::Permit), "exactly the limit: kept");
    assert!(!table.is_empty(NOW));
    // The limit is an hour of 100-ns ticks: 59 minutes idle is kept.
    assert_eq!(table.recall(&used, NOW + IDLE_LIMIT_TICKS + 59 * 60 * 10_000_000), Some(Verdict::Permit));
    let later = NOW + 3 * IDLE_LIMIT_TICKS;
    assert_eq!(table.recall(&base(), later), None, "idle past the limit");
    assert_eq!(table.recall(&used, later), None);
    assert!(table.is_empty(later));
    table.close();
    kernel.assert_unloaded_clean();
}

/// Half the capacity fits without a single eviction: the keys spread over
/// the table (a hash that sent them to a few slots would evict).
#[test]
fn half_the_capacity_fits_without_evictions() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.open().unwrap();
    let keys: Vec<ConnectionKey> =
        (0..(CAPACITY / 2) as u16).map(|i| key("10.0.0.2", 40_000 + i, "198.51.100.7", 443, 6)).collect();
    for k in &keys {
        table.remember(k, 1, Verdict::Block, NOW);
    }
    assert_eq!(table.stats.evicted.load(Ordering::Relaxed), 0);
    assert!(keys.iter().all(|k| table.recall(k, NOW) == Some(Verdict::Block)));
    table.close();
    kernel.assert_unloaded_clean();
}

#[test]
fn a_full_table_evicts_the_least_recently_used_and_counts_it() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.open().unwrap();
    let keys: Vec<ConnectionKey> = (0..(2 * CAPACITY) as u32)
        .map(|i| key("10.0.0.2", (i % 60_000) as u16, "192.0.2.10", (i / 60_000) as u16, 6))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        table.remember(k, 1, Verdict::Permit, NOW + i as u64);
    }
    let evicted = table.stats.evicted.load(Ordering::Relaxed);
    assert!(evicted > 0, "2 x capacity connections: some were evicted");
    assert!(table.len(NOW + keys.len() as u64) <= CAPACITY);
    let kept = keys.iter().filter(|k| table.recall(k, NOW + keys.len() as u64).is_some()).count();
    assert_eq!(kept as u64 + evicted, keys.len() as u64, "each connection is either kept or counted as evicted");
    // Least recently used first: the most recent connections survive.
    let recent = &keys[keys.len() - 64..];
    assert!(recent.iter().all(|k| table.recall(k, NOW + keys.len() as u64).is_some()), "a recent one was evicted");
    table.close();
    kernel.assert_unloaded_clean();
}

#[test]
fn a_closed_table_remembers_nothing() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.remember(&base(), 1, Verdict::Permit, NOW);
    assert_eq!(table.recall(&base(), NOW), None);
    assert_eq!(table.len(NOW), 0);
    table.open().unwrap();
    table.close();
    table.remember(&base(), 1, Verdict::Permit, NOW);
    assert_eq!(table.recall(&base(), NOW), None);
    kernel.assert_unloaded_clean();
}

/// Eviction takes the least recently *used* entry, not merely the oldest
/// insertion: connections whose verdict was read again (reauthorized
/// recently) outlive those that were not.
#[test]
fn recently_used_connections_outlive_idle_ones() {
    let kernel = Kernel::boot();
    let table = ConnectionVerdicts::new();
    table.open().unwrap();
    let mut now = NOW;
    let first: Vec<ConnectionKey> =
        (0..CAPACITY as u16).map(|i| key("10.0.0.2", 10_000 + i, "203.0.113.9", 443, 6)).collect();
    for k in &first {
        now += 1;
        table.remember(k, 1, Verdict::Permit, now);
    }
    let stored: Vec<ConnectionKey> = first.iter().copied().filter(|k| table.recall(k, now).is_some()).collect();
    // Reading refreshed them all; now read every other one again, later.
    now += 1_000;
    let (used, idle): (Vec<_>, Vec<_>) = stored.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, k) in &used {
        assert!(table.recall(k, now).is_some());
    }
    now += 1_000;
    for i in 0..(CAPACITY / 2) as u16 {
        now += 1;
        table.remember(&key("10.0.0.2", 30_000 + i, "203.0.113.9", 443, 6), 1, Verdict::Permit, now);
    }
    let survivors =
        |set: &Vec<(usize, &ConnectionKey)>| set.iter().filter(|(_, k)| table.recall(k, now).is_some()).count();
    let (used_left, idle_left) = (survivors(&used), survivors(&idle));
    assert!(
        used_left > idle_left + used.len() / 4,
        "recently used: {used_left} of {} kept; idle: {idle_left} of {} kept",
        used.len(),
        idle.len()
    );
    table.close();
    kernel.assert_unloaded_clean();
}
