//! A bounded in-memory cache of prepared re-encryption keys.
//!
//! Re-encrypting with a key read from the store means decoding ~1.6 MiB of
//! key material per key class and computing the NTT form of its lattice
//! key-switching key (~12 ms) on every request. The cache keeps, per grant,
//! the decoded and verified keys (whose NTT form is computed on first use and
//! then kept), so a doctor reading a patient's records pays that once.
//!
//! # Threat model
//!
//! The cache is a performance layer only: it never decides access. Every
//! request still reads the grant (and its revocation) from the store and
//! asks `medrelay_policy::authorize` before a cached key is looked up, so a
//! revoked or expired grant is denied whether or not its keys are cached.
//! On top of that, key material of a revoked grant does not outlive the
//! revocation in memory: the revocation handler drops the grant's entry as
//! soon as the revocation is durable, and a key load that was in flight
//! across a revocation is not inserted (an invalidation counter is compared
//! before and after the load). Entries past their grant's `not_after` are
//! never served, and are dropped as soon as a request finds the grant
//! expired, on lookup, and by the periodic sweep. The cache is bounded by a
//! number of keys (one per grant and key class, each ~1.5 MiB decoded plus
//! ~3.75 MiB of NTT form once used, ~5.3 MiB in all), evicting the least
//! recently used grant first; a capacity of 0 turns it off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use medrelay_crypto::{GrantId, KeyClass, Timestamp, VerifiedReencryptionKey};

/// Default capacity, in keys (one per grant and key class).
pub const DEFAULT_REKEY_CACHE_KEYS: usize = 32;

/// What the cache needs from a cached key: its key class.
pub(crate) trait Classed {
    fn class(&self) -> KeyClass;
}

impl Classed for VerifiedReencryptionKey {
    fn class(&self) -> KeyClass {
        self.key_class()
    }
}

struct Entry<V> {
    keys: Vec<Arc<V>>,
    not_after: Timestamp,
    last_used: u64,
}

struct Inner<V> {
    entries: HashMap<GrantId, Entry<V>>,
    /// Total keys held (the bounded quantity).
    keys: usize,
    /// Use counter for LRU order.
    tick: u64,
    /// Bumped by every invalidation; a load started before a bump is not
    /// inserted.
    generation: u64,
}

/// The generic LRU behind [`RekeyCache`] (generic so that its eviction and
/// invalidation rules are tested without lattice keys).
pub(crate) struct GrantCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

/// A snapshot of the invalidation counter, taken before loading keys from
/// the store and handed back to [`GrantCache::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoadTicket(u64);

impl<V: Classed> GrantCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner { entries: HashMap::new(), keys: 0, tick: 0, generation: 0 }),
        }
    }

    /// The lock; a poisoned lock is recovered, since every mutation below
    /// leaves the map consistent before anything can panic.
    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key of `class` for `grant`, if cached and the grant has not
    /// expired at `now` (an expired entry is dropped).
    pub(crate) fn get(&self, grant: GrantId, class: KeyClass, now: Timestamp) -> Option<Arc<V>> {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(&grant)?;
        if now >= entry.not_after {
            let n = entry.keys.len();
            inner.entries.remove(&grant);
            inner.keys -= n;
            return None;
        }
        entry.last_used = tick;
        entry.keys.iter().find(|k| k.class() == class).cloned()
    }

    /// Take before reading keys from the store; pass to [`Self::insert`].
    pub(crate) fn ticket(&self) -> LoadTicket {
        LoadTicket(self.lock().generation)
    }

    /// Caches `keys` for `grant` (valid until `not_after`), unless an
    /// invalidation happened since `ticket`, the cache is off, or the grant
    /// alone exceeds the capacity. Evicts least recently used grants to
    /// make room. Returns whether it was inserted.
    pub(crate) fn insert(
        &self,
        grant: GrantId,
        keys: Vec<Arc<V>>,
        not_after: Timestamp,
        ticket: LoadTicket,
    ) -> bool {
        let n = keys.len();
        if n == 0 || n > self.capacity {
            return false;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.generation != ticket.0 {
            return false;
        }
        if let Some(old) = inner.entries.remove(&grant) {
            inner.keys -= old.keys.len();
        }
        while inner.keys + n > self.capacity {
            let Some(victim) = inner.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&victim) {
                inner.keys -= e.keys.len();
            }
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner.entries.insert(grant, Entry { keys, not_after, last_used });
        inner.keys += n;
        true
    }

    /// Drops `grant`'s keys now, and stops in-flight loads from inserting.
    pub(crate) fn invalidate(&self, grant: GrantId) {
        let mut g = self.lock();
        g.generation += 1;
        if let Some(e) = g.entries.remove(&grant) {
            g.keys -= e.keys.len();
        }
    }

    /// Drops `grant`'s keys (e.g. the grant was found expired). Unlike
    /// [`Self::invalidate`], loads in flight may still insert: an expired
    /// entry is never served ([`Self::get`] checks `not_after`).
    pub(crate) fn remove(&self, grant: &GrantId) {
        let mut g = self.lock();
        if let Some(e) = g.entries.remove(grant) {
            g.keys -= e.keys.len();
        }
    }

    /// Drops every entry whose grant has expired at `now`; returns how many
    /// grants were dropped.
    pub(crate) fn evict_expired(&self, now: Timestamp) -> usize {
        let mut g = self.lock();
        let before = g.entries.len();
        let mut dropped = 0;
        g.entries.retain(|_, e| {
            let keep = now < e.not_after;
            if !keep {
                dropped += e.keys.len();
            }
            keep
        });
        g.keys -= dropped;
        before - g.entries.len()
    }

    pub(crate) fn keys(&self) -> usize {
        self.lock().keys
    }

    pub(crate) fn contains(&self, grant: &GrantId) -> bool {
        self.lock().entries.contains_key(grant)
    }
}

/// The server's cache of prepared re-encryption keys, keyed by grant id
/// (see the module docs for its rules).
pub struct RekeyCache(pub(crate) GrantCache<VerifiedReencryptionKey>);

impl RekeyCache {
    /// A cache holding at most `capacity` keys (0: off).
    pub fn new(capacity: usize) -> Self {
        Self(GrantCache::new(capacity))
    }

    /// The capacity, in keys.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.0.keys()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `grant`'s keys are held.
    pub fn contains(&self, grant: &GrantId) -> bool {
        self.0.contains(grant)
    }
}

impl std::fmt::Debug for RekeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyCache").field("capacity", &self.capacity()).field("keys", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    impl Classed for KeyClass {
        fn class(&self) -> KeyClass {
            *self
        }
    }

    fn gid(i: u8) -> GrantId {
        GrantId::from_bytes([i; 16])
    }

    fn keys(classes: &[KeyClass]) -> Vec<Arc<KeyClass>> {
        classes.iter().copied().map(Arc::new).collect()
    }

    const LAB: KeyClass = KeyClass::Laboratory;
    const GEN: KeyClass = KeyClass::General;

    #[test]
    fn hits_by_grant_and_class_until_expiry() {
        let c = GrantCache::new(4);
        let t = c.ticket();
        assert!(c.insert(gid(1), keys(&[LAB, GEN]), Timestamp(100), t));
        assert_eq!(c.keys(), 2);
        assert_eq!(*c.get(gid(1), LAB, Timestamp(99)).unwrap(), LAB);
        assert_eq!(*c.get(gid(1), GEN, Timestamp(99)).unwrap(), GEN);
        assert!(c.get(gid(1), KeyClass::Imaging, Timestamp(99)).is_none());
        assert!(c.get(gid(2), LAB, Timestamp(99)).is_none());
        // At not_after the grant is expired: the entry is dropped on lookup.
        assert!(c.get(gid(1), LAB, Timestamp(100)).is_none());
        assert!(!c.contains(&gid(1)));
        assert_eq!(c.keys(), 0);
    }

    #[test]
    fn evicts_least_recently_used_grants_to_stay_within_capacity() {
        let c = GrantCache::new(3);
        let far = Timestamp(u64::MAX);
        assert!(c.insert(gid(1), keys(&[LAB]), far, c.ticket()));
        assert!(c.insert(gid(2), keys(&[LAB]), far, c.ticket()));
        assert!(c.insert(gid(3), keys(&[LAB]), far, c.ticket()));
        // Use 1, so 2 is the least recently used.
        c.get(gid(1), LAB, Timestamp(0)).unwrap();
        assert!(c.insert(gid(4), keys(&[LAB]), far, c.ticket()));
        assert!(!c.contains(&gid(2)) && c.contains(&gid(1)) && c.contains(&gid(3)) && c.contains(&gid(4)));
        assert_eq!(c.keys(), 3);
        // A two-key grant evicts two.
        assert!(c.insert(gid(5), keys(&[LAB, GEN]), far, c.ticket()));
        assert_eq!(c.keys(), 3);
        assert!(c.contains(&gid(5)) && c.contains(&gid(4)));
        // A grant larger than the whole cache is not cached, and evicts nothing.
        assert!(!c.insert(gid(6), keys(&[LAB, GEN, KeyClass::Imaging, KeyClass::Genetics]), far, c.ticket()));
        assert_eq!(c.keys(), 3);
        // Re-inserting a grant replaces it without double counting.
        assert!(c.insert(gid(5), keys(&[LAB]), far, c.ticket()));
        assert_eq!(c.keys(), 2);
    }

    #[test]
    fn invalidation_drops_at_once_and_blocks_loads_in_flight() {
        let c = GrantCache::new(8);
        let far = Timestamp(u64::MAX);
        assert!(c.insert(gid(1), keys(&[LAB]), far, c.ticket()));
        let in_flight = c.ticket();
        c.invalidate(gid(1));
        assert!(!c.contains(&gid(1)));
        assert!(c.get(gid(1), LAB, Timestamp(0)).is_none());
        // A load that read the store before the revocation committed does
        // not put the revoked grant's keys back.
        assert!(!c.insert(gid(1), keys(&[LAB]), far, in_flight));
        assert!(!c.contains(&gid(1)));
        assert_eq!(c.keys(), 0);
        // A load started after it does.
        assert!(c.insert(gid(1), keys(&[LAB]), far, c.ticket()));
    }

    #[test]
    fn sweep_drops_expired_grants_and_capacity_zero_is_off() {
        let c = GrantCache::new(8);
        assert!(c.insert(gid(1), keys(&[LAB]), Timestamp(10), c.ticket()));
        assert!(c.insert(gid(2), keys(&[LAB, GEN]), Timestamp(20), c.ticket()));
        assert_eq!(c.evict_expired(Timestamp(9)), 0);
        assert_eq!(c.evict_expired(Timestamp(10)), 1);
        assert_eq!(c.keys(), 2);
        assert_eq!(c.evict_expired(Timestamp(25)), 1);
        assert_eq!(c.keys(), 0);
        let off = GrantCache::new(0);
        assert!(!off.insert(gid(1), keys(&[LAB]), Timestamp(10), off.ticket()));
        assert_eq!(off.keys(), 0);
    }

    #[test]
    fn remove_drops_one_grant() {
        let c = GrantCache::new(8);
        let far = Timestamp(u64::MAX);
        assert!(c.insert(gid(1), keys(&[LAB, GEN]), far, c.ticket()));
        assert!(c.insert(gid(2), keys(&[LAB]), far, c.ticket()));
        c.remove(&gid(1));
        c.remove(&gid(3));
        assert!(!c.contains(&gid(1)) && c.contains(&gid(2)));
        assert_eq!(c.keys(), 1);
    }
}
