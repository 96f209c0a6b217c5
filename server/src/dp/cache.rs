//! An in-memory cache of each DP schema's validated summaries.
//!
//! Without it every analyst query reads every stored summary blob of the
//! schema from the store and parses and validates each one (~0.2–0.4 s for
//! 100,000 summaries, 10–100× the OpenDP release). The cache keeps, per
//! schema, one immutable snapshot of the validated rows (`Arc<[Summary]>`)
//! tagged with the schema's *generation*, and serves it while the generation
//! has not moved.
//!
//! # Consistency
//!
//! - Every handler that writes a summary (submit, replace, withdraw) calls
//!   [`DpCache::invalidate`] after the store call returns and before the
//!   request is acknowledged, on the blocking thread that made the write (so
//!   a client disconnecting mid-request cannot skip it), whether the write
//!   succeeded or not (an error after the commit, e.g. a failed flush, must
//!   not leave a stale snapshot; a needless bump only costs a reload).
//! - A query reads the generation; a snapshot tagged with that generation
//!   is served. Otherwise the query reads the generation *before* scanning
//!   the store, loads, and tags the new snapshot with it. So a write
//!   acknowledged before a query started is always visible to it: its bump
//!   happened after its commit, and any snapshot tagged with a generation at
//!   or after that bump was scanned after the commit.
//! - A snapshot loaded while a write is in flight (committed, not yet
//!   bumped, or bumped during the scan) may or may not include that write:
//!   such a query is at most one write behind per concurrent writer, which
//!   is the same as if it had started a moment earlier. The next query after
//!   the bump reloads.
//! - A snapshot is replaced as a whole (one `Arc` swap), never edited, so
//!   a query never sees a mix of two snapshots. Reloads of one schema are
//!   serialised: when many queries find the snapshot stale, one loads and the
//!   others reuse its result.
//! - Only writes made through the HTTP handlers bump the generation. Code
//!   that writes summaries to the store directly while a server runs (tests,
//!   benchmarks) must call [`DpCache::invalidate`] itself. Several server
//!   processes over one database would need the generation in the database;
//!   sled allows one process only.
//! - The cache lives in memory only: a restart starts empty and the first
//!   query of each schema loads it from the store.
//!
//! # Memory
//!
//! A cached summary costs `size_of::<Summary>()` (48 bytes on 64-bit) plus
//! one `Option<FieldValue>` (24 bytes) per schema field, plus the heap of
//! its schema-name string and of each category value. For the 7-field
//! `health-basics` schema that is ≈ 234 bytes of payload (measured by the
//! `dp_queries` benchmark), ≈ 290 bytes with the allocator's rounding of its
//! three allocations: ≈ 29 MB per 100,000 summaries. The cache holds at most
//! `capacity` rows over all schemas (default [`DEFAULT_DP_CACHE_ROWS`] =
//! `MAX_ROWS`, ≈ 300 MB of `health-basics` rows when full; a 64-field schema
//! costs ≈ 1.6 KB per row); a schema that does not fit, or that has more
//! than `MAX_ROWS` summaries (which queries refuse anyway), is answered from
//! a fresh load as without the cache, and not kept. A capacity of 0 turns
//! the cache off.
//! While a schema reloads, its raw blobs (~200 bytes each for
//! `health-basics`) and the previous snapshot (until the queries holding it
//! finish) are held too, briefly.
//!
//! # Threat model
//!
//! The cache holds what the store holds (validated summaries the server
//! already sees) and changes no access rule: queries are authorised, planned
//! and charged exactly as before, and the budget debit and log entry are
//! still one durable transaction before the answer leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use medrelay_dp::{Schema, Summary, MAX_ROWS};

use crate::store::{decode_summary, Store, StoredSchema};
use crate::ApiError;

/// Default capacity of the summary cache, in rows over all schemas.
pub const DEFAULT_DP_CACHE_ROWS: usize = MAX_ROWS;

/// One schema's validated summaries as of one generation.
struct Snapshot {
    generation: u64,
    /// SHA-256 of the schema the rows were validated against (schemas never
    /// change under stored summaries; this guards the invariant).
    schema_sha256: [u8; 32],
    rows: Arc<[Summary]>,
}

/// Per-schema state.
struct Slot {
    /// Bumped after every summary write to the schema.
    generation: AtomicU64,
    /// Held while loading, so that one query reloads and the others wait.
    load: Mutex<()>,
    snapshot: Mutex<Option<Snapshot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below replaces whole values, so a poisoned
    // lock still guards consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The server's cache of validated DP summaries, per schema (see the
/// module docs for its rules).
pub struct DpCache {
    capacity: usize,
    /// Slots exist only for installed schemas (created by a query after the
    /// schema was found), so the map is bounded by the schemas installed.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    loads: AtomicU64,
}

impl std::fmt::Debug for DpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl DpCache {
    /// A cache holding at most `capacity` summaries over all schemas (0: off).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, slots: Mutex::new(HashMap::new()), loads: AtomicU64::new(0) }
    }

    /// The capacity, in summaries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Summaries held now, over all schemas.
    pub fn rows(&self) -> usize {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        slots.iter().map(|s| lock(&s.snapshot).as_ref().map_or(0, |s| s.rows.len())).sum()
    }

    /// Summaries of `schema` held now (`None`: nothing cached).
    pub fn cached_rows(&self, schema: &str) -> Option<usize> {
        let slot = lock(&self.slots).get(schema).cloned()?;
        let rows = lock(&slot.snapshot).as_ref().map(|s| s.rows.len());
        rows
    }

    /// How many times summaries were loaded from the store (cache misses).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// Marks `schema`'s snapshot stale: every query that starts after this
    /// returns reloads. Call after every write of one of its summaries has
    /// returned from the store, before acknowledging it.
    pub fn invalidate(&self, schema: &str) {
        // No slot: nothing is cached and no load has started (a load creates
        // the slot before reading the generation), so there is nothing to
        // mark. Not creating one keeps the map bounded by installed schemas.
        if let Some(slot) = lock(&self.slots).get(schema) {
            slot.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn slot(&self, schema: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        Arc::clone(slots.entry(schema.to_owned()).or_insert_with(|| {
            Arc::new(Slot { generation: AtomicU64::new(0), load: Mutex::new(()), snapshot: Mutex::new(None) })
        }))
    }

    fn fresh(slot: &Slot, sha256: &[u8; 32]) -> Option<Arc<[Summary]>> {
        let generation = slot.generation.load(Ordering::SeqCst);
        lock(&slot.snapshot)
            .as_ref()
            .filter(|s| s.generation == generation && s.schema_sha256 == *sha256)
            .map(|s| Arc::clone(&s.rows))
    }

    /// The validated summaries of `schema` (installed as `stored`): the
    /// cached snapshot if no write happened since it was loaded, else a fresh
    /// load from `store` (kept if it fits). At most `MAX_ROWS + 1` rows are
    /// read, so `medrelay_dp::answer` can refuse an oversized schema as
    /// before. Blocking: call on the blocking pool.
    pub(crate) fn summaries(
        &self,
        store: &dyn Store,
        stored: &StoredSchema,
        schema: &Schema,
    ) -> Result<Arc<[Summary]>, ApiError> {
        if self.capacity == 0 {
            self.loads.fetch_add(1, Ordering::SeqCst);
            return load_summaries(store, schema);
        }
        let slot = self.slot(schema.name());
        if let Some(rows) = Self::fresh(&slot, &stored.sha256) {
            return Ok(rows);
        }
        let _loading = lock(&slot.load);
        // Another query may have loaded while this one waited.
        if let Some(rows) = Self::fresh(&slot, &stored.sha256) {
            return Ok(rows);
        }
        // Read the generation before the scan: the snapshot contains at
        // least every write whose bump this load observed.
        let generation = slot.generation.load(Ordering::SeqCst);
        self.loads.fetch_add(1, Ordering::SeqCst);
        let rows = load_summaries(store, schema)?;
        // The map lock is held from counting to installing, so concurrent
        // loads of two schemas cannot both fit and together overflow (lock
        // order everywhere: map, then a snapshot).
        let slots = lock(&self.slots);
        let others: usize = slots
            .iter()
            .filter(|(name, _)| name.as_str() != schema.name())
            .map(|(_, s)| lock(&s.snapshot).as_ref().map_or(0, |s| s.rows.len()))
            .sum();
        let fits = rows.len() <= MAX_ROWS && others.saturating_add(rows.len()) <= self.capacity;
        *lock(&slot.snapshot) =
            fits.then(|| Snapshot { generation, schema_sha256: stored.sha256, rows: Arc::clone(&rows) });
        drop(slots);
        Ok(rows)
    }
}

/// Reads and validates up to `MAX_ROWS + 1` stored summaries of `schema`
/// (the uncached path).
pub(crate) fn load_summaries(store: &dyn Store, schema: &Schema) -> Result<Arc<[Summary]>, ApiError> {
    let blobs = store.list_summaries(schema.name(), MAX_ROWS + 1)?;
    let mut rows = Vec::with_capacity(blobs.len());
    for blob in &blobs {
        let summary = Summary::from_json(schema, decode_summary(blob)?)
            .map_err(|e| ApiError::Internal(format!("stored summary: {e}")))?;
        rows.push(summary);
    }
    Ok(rows.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::AtomicUsize;

    use medrelay_crypto::{PrincipalId, Timestamp};
    use medrelay_policy::LogEvent;

    use super::*;
    use crate::store::{encode_summary, SledStore};
    use crate::{install_default_schema, Clock};

    const HB: &str = "health-basics";

    fn put(store: &dyn Store, cache: &DpCache, i: u64, bmi: f64) {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&i.to_be_bytes());
        let patient = PrincipalId::from_bytes(id);
        let ev = LogEvent::SummarySubmitted { at: Timestamp(1), patient, schema: HB.into() };
        let append = crate::log::events::append(&ev).unwrap();
        let json = format!(r#"{{"schema":"{HB}","values":{{"bmi":{bmi}}}}}"#);
        store.put_summary(HB, &patient, &encode_summary(json.as_bytes()), &append).unwrap();
        cache.invalidate(HB);
    }

    fn setup() -> (tempfile::TempDir, Arc<dyn Store>, StoredSchema, Schema) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let stored = install_default_schema(store.as_ref(), &Clock::manual(1)).unwrap();
        (dir, store, stored, Schema::health_basics())
    }

    #[test]
    fn a_snapshot_is_reused_until_a_write_and_replaced_whole() {
        let (_dir, store, stored, schema) = setup();
        let cache = DpCache::new(100);
        cache.invalidate(HB); // no slot yet: a no-op that creates nothing
        assert_eq!(cache.cached_rows(HB), None);
        put(store.as_ref(), &cache, 1, 20.0);
        let a = cache.summaries(store.as_ref(), &stored, &schema).unwrap();
        let b = cache.summaries(store.as_ref(), &stored, &schema).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second read is the cached snapshot");
        assert_eq!(cache.loads(), 1);
        put(store.as_ref(), &cache, 2, 21.0);
        let c = cache.summaries(store.as_ref(), &stored, &schema).unwrap();
        assert_eq!((a.len(), c.len(), cache.loads()), (1, 2, 2));
        // The older snapshot a query may still hold is untouched.
        assert_eq!(a[0].value(3).and_then(medrelay_dp::FieldValue::as_f64), Some(20.0));
        // A schema whose hash differs from the snapshot's is reloaded.
        let mut other = stored.clone();
        other.sha256[0] ^= 1;
        cache.summaries(store.as_ref(), &other, &schema).unwrap();
        assert_eq!(cache.loads(), 3);
    }

    #[test]
    fn rows_beyond_the_capacity_are_served_but_not_kept() {
        let (_dir, store, stored, schema) = setup();
        for i in 0..3 {
            put(store.as_ref(), &DpCache::new(0), i, 20.0);
        }
        let small = DpCache::new(2);
        assert_eq!(small.summaries(store.as_ref(), &stored, &schema).unwrap().len(), 3);
        assert_eq!((small.cached_rows(HB), small.rows()), (None, 0));
        small.summaries(store.as_ref(), &stored, &schema).unwrap();
        assert_eq!(small.loads(), 2);
        let off = DpCache::new(0);
        off.summaries(store.as_ref(), &stored, &schema).unwrap();
        off.summaries(store.as_ref(), &stored, &schema).unwrap();
        assert_eq!((off.loads(), off.rows()), (2, 0));
        let fits = DpCache::new(3);
        fits.summaries(store.as_ref(), &stored, &schema).unwrap();
        assert_eq!((fits.cached_rows(HB), fits.rows()), (Some(3), 3));
    }

    /// A writer adds summaries one by one (store write, then invalidate, then
    /// "acknowledge"); readers check that every snapshot they get holds at
    /// least every summary acknowledged before they asked, and at most the
    /// ones written so far.
    #[test]
    fn a_query_sees_every_write_acknowledged_before_it_started() {
        const WRITES: u64 = 60;
        let (_dir, store, stored, schema) = setup();
        let cache = Arc::new(DpCache::new(1000));
        let acked = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (store, cache, acked) = (Arc::clone(&store), Arc::clone(&cache), Arc::clone(&acked));
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    put(store.as_ref(), &cache, i, 20.0);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, cache, acked) = (Arc::clone(&store), Arc::clone(&cache), Arc::clone(&acked));
                let (stored, schema) = (stored.clone(), schema.clone());
                std::thread::spawn(move || loop {
                    let before = acked.load(Ordering::SeqCst);
                    let rows = cache.summaries(store.as_ref(), &stored, &schema).unwrap();
                    // At most one write in flight beyond the acknowledged ones.
                    assert!(before <= rows.len() && rows.len() <= acked.load(Ordering::SeqCst) + 1);
                    if before as u64 == WRITES {
                        break;
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(cache.cached_rows(HB), Some(WRITES as usize));
    }
}
