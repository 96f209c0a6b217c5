//! The sled backend: the only file that touches sled.
//!
//! Everything lives in one sled tree under short key prefixes, so every
//! multi-key change is a single-tree sled transaction (serializable, all or
//! nothing). Every write is followed by `flush` before the call returns, so a
//! returned `Ok` means the change is on disk.
//!
//! The large immutable values (record envelopes and metadata `r/`, batch
//! capsules `cp/`, stored re-encryptions `rd/`, principals `p/` with their
//! ~300 KB of PRE public keys, a grant's re-encryption keys `k/`, ~1.5 MiB
//! per key class) are not kept in sled: sled 0.34's pages are
//! log-structured and keep superseded versions of every node a value sits
//! in, and write a large node as a whole new blob file each time it
//! changes, so its directory grew 2.6–3.6× the live data. A principal and
//! a record's metadata embed the log index their transaction assigns, so
//! they are appended under the append lock, after the log plan
//! (`logged_appending`). The log entries written with records or served
//! fetches (`l/`, ~230 bytes each, one per record) go with them; an entry
//! written alone stays in sled (one sync, not two). They are appended to
//! segment files (`segments/NNNNNN.seg` inside the sled directory, see
//! [`segment`]), synced before the transaction that stores their
//! references commits; reads check each value's SHA-256. Unreferenced
//! segment bytes (a revoked grant's keys and re-encryptions, failed
//! requests) are reclaimed by the running server's periodic sweep once a
//! file is half garbage ([`SledStore::compact_sparse_segments`]), and all
//! at once by [`SledStore::compact_segments`] (`medrelay-server compact`).
//!
//! sled's own file grows with the number of keys a request writes (each
//! insert is a logged page fragment, and a page is rewritten whole every
//! few fragments), so the index keeps few keys per record:
//!
//! | key | value | per |
//! |---|---|---|
//! | `r/` record id | references to its metadata and its envelope | record |
//! | `o/` owner, record id | (empty: the owner's listing, by id) | record |
//! | `l/` first index | a [`segment::Run`] of up to 64 entries, or one entry's opening | request |
//! | `ls/` subject, first index | count of consecutive entries (empty: one) | request and subject |
//! | `n/` level, index | Merkle node, level ≥ [`log::STORED_FROM_LEVEL`] only | 8 entries |
//!
//! A log entry's leaf hash is stored with it (after the opening inline,
//! after the run's openings in a segment), so the nodes below level 4 come
//! from stored hashes, not from the openings: an opening altered on disk
//! fails its own inclusion check only. Measured on a 1,111-resource chart,
//! the import grew the directory 1.3× its plaintext with this layout,
//! against 2.45× with one key per entry, subject, envelope and Merkle node
//! (`docs/BENCHMARKS.md`).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use medrelay_crypto::{CapsuleId, GrantId, PrincipalId, RecordId, Timestamp};
use medrelay_policy::{ConsistencyProof, InclusionProof, LeafOpening, MerkleHash};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use medrelay_dp::{AnalystId, Budget, DpError, Ledger, PrivacyCost};

use super::{
    Challenge, Enrollment, EnrollmentUse, LogAppend, RecordMeta, SecretHash, Session, Store, StoreError,
    StoredGrant, StoredPrincipal, StoredSchema, Swept,
};

mod compact;
mod export;
mod log;
mod segment;
mod study;
#[cfg(test)]
mod tests;

pub use compact::{Compacted, PrefixUsage, StorageUsage, RECLAIM_MIN_BYTES};
use log::{
    leaf_hash, run_values, runs_of, stored_entries, subject_run_len, tree_err, tx_apply_log,
    tx_apply_log_placed,
};
use segment::{Run, Segments, ValueRef};

const LOG_SIZE: &[u8] = b"m/log_size";
/// The key layout this version writes (the table in the module docs),
/// stored at creation and checked at every open.
const LAYOUT_KEY: &[u8] = b"m/layout";
const LAYOUT: &[u8] = b"medrelay sled layout 2";
/// The segment files, inside the sled directory.
const SEGMENTS_DIR: &str = "segments";
/// The prefixes whose values live in segment files (sled holds
/// references): records (`r/`: metadata and envelope, two references under
/// one key), batch capsules, stored re-encryptions, principals, a grant's
/// re-encryption keys (`k/`, removed at revocation).
/// Log entries (`l/`) written with records or served fetches are kept there
/// too, as [`Run`]s (an entry written alone stays in sled: one sync, not two).
const SEGMENTED: [&[u8]; 6] = [b"cp/", b"rd/", b"l/", b"p/", b"r/", b"k/"];
/// Held shared by whoever reads or stores a segment value.
type Gate<'a> = RwLockReadGuard<'a, ()>;

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    k.extend_from_slice(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn from_tx(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn read_u64(v: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| StoreError::Corrupt("counter"))?;
    Ok(u64::from_be_bytes(arr))
}

// DP keys. Schema names are `[a-z0-9_-]`, so `/` ends a name unambiguously.
fn schema_key(name: &str) -> Vec<u8> {
    key(b"dsc/", &[name.as_bytes()])
}

fn summaries_prefix(schema: &str) -> Vec<u8> {
    key(b"dsu/", &[schema.as_bytes(), b"/"])
}

fn summary_key(schema: &str, patient: &PrincipalId) -> Vec<u8> {
    key(&summaries_prefix(schema), &[patient.as_bytes()])
}

fn ledger_key(analyst: &PrincipalId, schema: &str) -> Vec<u8> {
    key(b"dl/", &[analyst.as_bytes(), schema.as_bytes()])
}

fn decode_ledger(raw: &[u8]) -> Result<Ledger, StoreError> {
    Ledger::decode(raw).map_err(|_| StoreError::Corrupt("dp ledger"))
}

/// A ledger operation failing for a reason other than overspending (an
/// invalid cost or budget from the caller) is a server bug, not bad input.
fn ledger_err(e: DpError) -> StoreError {
    match e {
        DpError::Overspend(o) => StoreError::Overspend(Box::new(o)),
        other => StoreError::Backend(format!("ledger: {other}")),
    }
}

/// Marks a new database with [`LAYOUT`]; refuses one written with another
/// key layout (records under two keys, log entries one key each, without
/// their leaf hashes) rather than misread it. Nothing is deployed with an
/// older layout, so there is no migration.
fn check_layout(db: &sled::Db) -> Result<(), StoreError> {
    match db.get(LAYOUT_KEY).map_err(backend)? {
        Some(v) if v.as_ref() == LAYOUT => Ok(()),
        None if db.is_empty() => {
            db.insert(LAYOUT_KEY, LAYOUT).map_err(backend)?;
            db.flush().map(drop).map_err(backend)
        }
        found => Err(StoreError::Backend(format!(
            "this data directory was written by another version of medrelay (store layout {}, this version \
             reads \"{}\"): start from a new data directory, or copy it with the version that wrote it \
             (`medrelay-server migrate` to PostgreSQL)",
            found.map_or_else(
                || "1".to_owned(),
                |v| format!("\"{}\"", String::from_utf8_lossy(&v[..v.len().min(64)]))
            ),
            String::from_utf8_lossy(LAYOUT)
        ))),
    }
}

/// Refuses a database whose log predates leaf commitments (its entries are
/// bare events, published as leaf data): serving it would publish them.
fn check_log_format(db: &sled::Db) -> Result<(), StoreError> {
    match db.get(key(b"l/", &[&0u64.to_be_bytes()])).map_err(backend)? {
        // An entry in a segment is of this format (older ones never were).
        Some(first) if !first.starts_with(b"MRLO") && !segment::is_run(&first) => Err(StoreError::Backend(
            "this database holds an audit log in the old format, whose leaves are the events \
             themselves; this version cannot serve it without publishing them: start from a new \
             data directory"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// sled-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    /// The large immutable values (`r/`, `cp/`, `rd/`, `p/`, `k/`, bulk `l/`); sled
    /// holds their references.
    segs: Arc<Segments>,
    /// Unreferenced bytes per segment file, as far as this process knows:
    /// `None` until the first [`SledStore::compact_sparse_segments`] counts
    /// them with a scan, then kept up to date as references are dropped.
    garbage: Arc<Mutex<Option<std::collections::HashMap<u32, u64>>>>,
    /// Held shared by every store and read of a segmented value (from
    /// before its append to after its commit), and exclusively by a
    /// compaction to start and to swap references and delete files.
    gate: Arc<RwLock<()>>,
    /// One compaction at a time.
    compacting: Arc<Mutex<()>>,
    /// Serializes log appends (planning + commit). sled admits one process,
    /// so an in-process lock is enough.
    append_lock: Arc<Mutex<()>>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_waiting(dir, Duration::ZERO)
    }

    /// Opens the database in `dir`, waiting up to `wait` while its file
    /// lock is held: after the last handle in this process is dropped,
    /// sled's background threads release the lock a moment later (an
    /// in-process restart, as [`crate::LocalServer`] does). A database
    /// another process holds still fails once `wait` has passed.
    pub fn open_waiting(dir: &Path, wait: Duration) -> Result<Self, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            match sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open() {
                Ok(db) => {
                    check_layout(&db)?;
                    check_log_format(&db)?;
                    let segs = Arc::new(Segments::open(&dir.join(SEGMENTS_DIR))?);
                    return Ok(Self {
                        db,
                        segs,
                        gate: Arc::new(RwLock::new(())),
                        append_lock: Arc::new(Mutex::new(())),
                        garbage: Arc::new(Mutex::new(None)),
                        compacting: Arc::new(Mutex::new(())),
                    });
                }
                Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::Backend(format!(
                            "the store in {} is in use by another process (a running medrelay-server?): stop \
                             it first",
                            dir.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// The sled database itself, for tests that edit stored bytes.
    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> &sled::Db {
        &self.db
    }

    fn gate_read(&self) -> Result<RwLockReadGuard<'_, ()>, StoreError> {
        self.gate.read().map_err(|_| StoreError::Backend("segment gate poisoned".into()))
    }

    fn gate_write(&self) -> Result<RwLockWriteGuard<'_, ()>, StoreError> {
        self.gate.write().map_err(|_| StoreError::Backend("segment gate poisoned".into()))
    }

    fn lock(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.append_lock.lock().map_err(|_| StoreError::Backend("log append lock poisoned".into()))
    }

    /// Appends `events` to the log and applies `change` in the same sled
    /// transaction, under the append lock, and returns once it is durable:
    /// the change and its log entries commit together or not at all.
    /// `change` gets the new entries' indices; an abort from it discards
    /// the appends too.
    fn logged<T>(
        &self,
        events: &[&LogAppend],
        change: impl Fn(&TransactionalTree, &[u64]) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let gate = self.gate_read()?;
        self.logged_placed(&gate, events, &[], change)
    }

    /// [`Self::logged`] for events whose openings were appended to segments
    /// already (`runs`, in order), under `gate`.
    fn logged_placed<T>(
        &self,
        gate: &Gate<'_>,
        events: &[&LogAppend],
        runs: &[Run],
        change: impl Fn(&TransactionalTree, &[u64]) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let guard = self.lock()?;
        let plan = self.plan(gate, events)?;
        let out = self
            .db
            .transaction(|tx| {
                let idxs = tx_apply_log_placed(tx, &plan, events, runs)?;
                change(tx, &idxs)
            })
            .map_err(from_tx)?;
        drop(guard);
        self.durable()?;
        Ok(out)
    }

    /// [`Self::logged`] for a change that stores segment values, some of
    /// which embed the log index the transaction assigns (a principal's or
    /// a record's `log_index`). Under the append lock, after the log plan,
    /// `indexed` builds those values from the first new entry's index (or
    /// refuses, before anything is appended); `fixed`, then the indexed
    /// values, then the events' openings if `log_in_segment` (as runs; else
    /// they stay in sled) are appended and synced in one write, and the
    /// transaction stores their references: `change` gets the entries'
    /// indices and the references of `fixed` and of the indexed values.
    fn logged_appending<T>(
        &self,
        gate: &Gate<'_>,
        events: &[&LogAppend],
        log_in_segment: bool,
        fixed: &[&[u8]],
        indexed: impl FnOnce(u64) -> Result<Vec<Vec<u8>>, StoreError>,
        change: impl Fn(&TransactionalTree, &[u64], &[ValueRef], &[ValueRef]) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let guard = self.lock()?;
        let plan = self.plan(gate, events)?;
        let indexed = indexed(plan.start)?;
        let entries = if log_in_segment { stored_entries(events) } else { Vec::new() };
        let run_values = run_values(&entries);
        let mut values: Vec<&[u8]> = fixed.to_vec();
        values.extend(indexed.iter().map(Vec::as_slice));
        values.extend(run_values.iter().map(Vec::as_slice));
        let appended = self.segs.append(&values)?;
        let (fixed_refs, rest) = appended.split_at(fixed.len());
        let (indexed_refs, run_refs) = rest.split_at(indexed.len());
        let runs = runs_of(&entries, run_refs)?;
        let out = self
            .db
            .transaction(|tx| {
                let idxs = tx_apply_log_placed(tx, &plan, events, &runs)?;
                change(tx, &idxs, fixed_refs, indexed_refs)
            })
            .map_err(from_tx)
            .inspect_err(|_| self.note_garbage(&appended))?;
        drop(guard);
        self.durable()?;
        Ok(out)
    }

    fn durable(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(backend)
    }

    fn put(&self, k: Vec<u8>, v: Vec<u8>) -> Result<(), StoreError> {
        self.db.insert(k, v).map_err(backend)?;
        self.durable()
    }

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db.get(k).map_err(backend)
    }

    /// A value kept in a segment: sled holds its reference under `k`.
    fn get_segmented(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _gate = self.gate_read()?;
        self.get(k)?.map(|r| self.segs.resolve(&r)).transpose()
    }

    /// A record's two references (metadata, envelope), under the gate.
    fn record_refs(&self, id: &[u8]) -> Result<Option<(ValueRef, ValueRef)>, StoreError> {
        let Some(v) = self.get(&key(b"r/", &[id]))? else {
            return Ok(None);
        };
        match segment::refs_in(&v)?[..] {
            [meta, envelope] => Ok(Some((meta, envelope))),
            _ => Err(StoreError::Corrupt("record reference")),
        }
    }

    /// A record's metadata.
    fn record_meta(&self, id: &[u8]) -> Result<Option<RecordMeta>, StoreError> {
        let _gate = self.gate_read()?;
        self.record_refs(id)?.map(|(meta, _)| RecordMeta::decode(&self.segs.read(&meta)?)).transpose()
    }

    fn scan_ids<const N: usize>(&self, prefix: &[u8], limit: usize) -> Result<Vec<[u8; N]>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix).take(limit) {
            let (k, _) = item.map_err(backend)?;
            let tail = k.get(prefix.len()..).ok_or(StoreError::Corrupt("index key"))?;
            out.push(tail.try_into().map_err(|_| StoreError::Corrupt("index key"))?);
        }
        Ok(out)
    }

    /// Removes the entries under `prefix` whose value `expired` says is
    /// expired; returns how many. Not transactional: each entry is removed
    /// only if it still holds the value that was judged expired.
    fn remove_expired_in(
        &self,
        prefix: &[u8],
        expired: impl Fn(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.db.scan_prefix(prefix) {
            let (k, v) = item.map_err(backend)?;
            if expired(&v)? {
                let swapped =
                    self.db.compare_and_swap(&k, Some(&v), None as Option<&[u8]>).map_err(backend)?;
                if swapped.is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn grants_in(&self, prefix: &[u8], limit: usize) -> Result<Vec<StoredGrant>, StoreError> {
        let mut out = Vec::new();
        for id in self.scan_ids::<16>(prefix, limit)? {
            let id = GrantId::from_bytes(id);
            out.push(self.get_grant(&id)?.ok_or(StoreError::Corrupt("grant index"))?);
        }
        Ok(out)
    }
}

impl Store for SledStore {
    fn put_challenge(&self, nonce_hash: &SecretHash, challenge: &Challenge) -> Result<(), StoreError> {
        // Not flushed: sled writes it with the next flush (its own, every
        // 500 ms, or the next durable write).
        self.db.insert(key(b"c/", &[nonce_hash]), challenge.encode()).map(drop).map_err(backend)
    }

    fn take_challenge(&self, nonce_hash: &SecretHash) -> Result<Option<Challenge>, StoreError> {
        // `remove` is atomic: of two concurrent uses of one nonce, one gets None.
        let old = self.db.remove(key(b"c/", &[nonce_hash])).map_err(backend)?;
        self.durable()?;
        old.map(|v| Challenge::decode(&v)).transpose()
    }

    fn put_session(&self, token_hash: &SecretHash, session: &Session) -> Result<(), StoreError> {
        self.put(key(b"s/", &[token_hash]), session.encode())
    }

    fn get_session(&self, token_hash: &SecretHash) -> Result<Option<Session>, StoreError> {
        self.get(&key(b"s/", &[token_hash]))?.map(|v| Session::decode(&v)).transpose()
    }

    fn put_enrollment(&self, token_hash: &SecretHash, enrollment: &Enrollment) -> Result<(), StoreError> {
        self.put(key(b"e/", &[token_hash]), enrollment.encode())
    }

    fn register_principal(
        &self,
        principal: &StoredPrincipal,
        enrollment: Option<EnrollmentUse>,
        event: &LogAppend,
    ) -> Result<u64, StoreError> {
        let pkey = key(b"p/", &[principal.id().as_bytes()]);
        let ekey = enrollment.as_ref().map(|u| key(b"e/", &[&u.token_hash]));
        // Checks the enrollment and that the id is free, against sled as it
        // is (`tx` inside the transaction, the tree before the append).
        let check = |taken: bool, enrollment_value: Option<&[u8]>| -> Result<(), StoreError> {
            if taken {
                return Err(StoreError::AlreadyExists("principal"));
            }
            if let Some(u) = &enrollment {
                let raw = enrollment_value.ok_or(StoreError::InvalidEnrollment)?;
                match Enrollment::decode(raw) {
                    Ok(en) if en.role == u.role && u.now < en.expires_at => {}
                    Ok(_) => return Err(StoreError::InvalidEnrollment),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        // The principal (its PRE public keys are ~300 KB) goes to a segment;
        // sled holds its reference. It embeds its log index, so it is
        // appended under the append lock; a refusal is found before the
        // append where it can be (only a race leaves unreferenced bytes).
        let gate = self.gate_read()?;
        self.logged_appending(
            &gate,
            &[event],
            false,
            &[],
            |idx| {
                let enrolled = ekey.as_ref().map(|k| self.get(k)).transpose()?.flatten();
                check(self.get(&pkey)?.is_some(), enrolled.as_deref())?;
                let mut p = principal.clone();
                p.log_index = idx;
                Ok(vec![p.encode()])
            },
            |tx, idxs, _, refs| {
                let enrolled = match &ekey {
                    Some(k) => tx.remove(k.as_slice())?,
                    None => None,
                };
                if let Err(e) = check(tx.get(&pkey)?.is_some(), enrolled.as_deref()) {
                    return abort(e);
                }
                tx.insert(pkey.as_slice(), refs[0].encode())?;
                Ok(idxs[0])
            },
        )
    }

    fn get_principal(&self, id: &PrincipalId) -> Result<Option<StoredPrincipal>, StoreError> {
        self.get_segmented(&key(b"p/", &[id.as_bytes()]))?.map(|v| StoredPrincipal::decode(&v)).transpose()
    }

    fn suspend_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<(u64, u64), StoreError> {
        let skey = key(b"su/", &[id.as_bytes()]);
        let idx = self.logged(&[event], |tx, idxs| {
            if tx.get(key(b"p/", &[id.as_bytes()]))?.is_none() {
                return abort(StoreError::NotFound("principal"));
            }
            if tx.insert(skey.as_slice(), &idxs[0].to_be_bytes()[..])?.is_some() {
                return abort(StoreError::AlreadyExists("suspension"));
            }
            Ok(idxs[0])
        })?;
        let mut live = 0;
        for item in self.db.scan_prefix(b"s/") {
            let (_, v) = item.map_err(backend)?;
            if Session::decode(&v).is_ok_and(|s| s.principal == *id) {
                live += 1;
            }
        }
        Ok((idx, live))
    }

    fn reinstate_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<u64, StoreError> {
        let skey = key(b"su/", &[id.as_bytes()]);
        if self.get(&skey)?.is_none() {
            return Err(StoreError::NotFound("suspension"));
        }
        // First, while still suspended, the sessions from before go (no new
        // one can be made meanwhile: logins are refused), durably: a crash
        // after the suspension is lifted can never revive one.
        for item in self.db.scan_prefix(b"s/") {
            let (k, v) = item.map_err(backend)?;
            if Session::decode(&v).is_ok_and(|s| s.principal == *id) {
                self.db.remove(&k).map_err(backend)?;
            }
        }
        self.durable()?;
        self.logged(&[event], |tx, idxs| {
            if tx.remove(skey.as_slice())?.is_none() {
                return abort(StoreError::NotFound("suspension"));
            }
            Ok(idxs[0])
        })
    }

    fn is_suspended(&self, id: &PrincipalId) -> Result<bool, StoreError> {
        Ok(self.get(&key(b"su/", &[id.as_bytes()]))?.is_some())
    }

    fn put_batch(
        &self,
        capsules: &[(CapsuleId, Vec<u8>)],
        records: &[(RecordMeta, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<Vec<u64>, StoreError> {
        if records.len() != events.len() {
            return Err(StoreError::Backend("one log event per record expected".into()));
        }
        let refs: Vec<&LogAppend> = events.iter().collect();
        // The values go to the segment (synced) first; the transaction then
        // stores their references. A capsule already stored is not appended
        // again (one stored by a concurrent batch meanwhile is, and stays
        // unreferenced garbage for the compaction). The record metadata
        // embeds each record's log index, so the append happens under the
        // append lock, after the log plan.
        let gate = self.gate_read()?;
        let mut new_capsules = Vec::with_capacity(capsules.len());
        for (id, bytes) in capsules {
            if self.get(&key(b"cp/", &[id.as_bytes()]))?.is_none() {
                new_capsules.push((id, bytes));
            }
        }
        let mut fixed: Vec<&[u8]> = new_capsules.iter().map(|(_, b)| b.as_slice()).collect();
        fixed.extend(records.iter().map(|(_, env)| env.as_slice()));
        let metas = |start: u64| {
            Ok(records
                .iter()
                .zip(start..)
                .map(|((meta, _), idx)| {
                    let mut m = meta.clone();
                    m.log_index = idx;
                    m.encode()
                })
                .collect())
        };
        self.logged_appending(&gate, &refs, true, &fixed, metas, |tx, idxs, fixed_refs, meta_refs| {
            let (capsule_refs, envelope_refs) = fixed_refs.split_at(new_capsules.len());
            for ((id, _), r) in new_capsules.iter().zip(capsule_refs) {
                let k = key(b"cp/", &[id.as_bytes()]);
                if tx.get(&k)?.is_none() {
                    tx.insert(k, r.encode())?;
                }
            }
            for (((meta, _), env), m) in records.iter().zip(envelope_refs).zip(meta_refs) {
                let rid = &meta.record_id().as_bytes().to_owned();
                if tx.get(key(b"r/", &[rid]))?.is_some() {
                    return abort(StoreError::AlreadyExists("record"));
                }
                // One key for both (sled's file grows with the keys written).
                tx.insert(key(b"r/", &[rid]), segment::encode_refs(&[*m, *env]))?;
                tx.insert(key(b"o/", &[meta.owner().as_bytes(), rid]), &[][..])?;
            }
            Ok(idxs.to_vec())
        })
    }

    fn get_capsule(&self, id: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_segmented(&key(b"cp/", &[id.as_bytes()]))
    }

    fn get_delivered(&self, grant: &GrantId, capsule: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_segmented(&key(b"rd/", &[grant.as_bytes(), capsule.as_bytes()]))
    }

    fn put_served(
        &self,
        grants: &[GrantId],
        delivered: &[(GrantId, CapsuleId, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<(Vec<u64>, Vec<Vec<u8>>), StoreError> {
        let refs: Vec<&LogAppend> = events.iter().collect();
        // Appended and synced before the transaction references them; one
        // already stored (or whose grant is revoked meanwhile) stays
        // unreferenced.
        let gate = self.gate_read()?;
        let mut fresh = Vec::with_capacity(delivered.len());
        for (i, (grant, capsule, _)) in delivered.iter().enumerate() {
            if self.get(&key(b"rd/", &[grant.as_bytes(), capsule.as_bytes()]))?.is_none() {
                fresh.push(i);
            }
        }
        let entries = stored_entries(&refs);
        let run_values = run_values(&entries);
        let mut values: Vec<&[u8]> = fresh.iter().map(|&i| delivered[i].2.as_slice()).collect();
        values.extend(run_values.iter().map(Vec::as_slice));
        let appended = self.segs.append(&values)?;
        let (delivered_refs, run_refs) = appended.split_at(fresh.len());
        let runs = runs_of(&entries, run_refs)?;
        let mut placed: Vec<Option<segment::ValueRef>> = vec![None; delivered.len()];
        for (&i, r) in fresh.iter().zip(delivered_refs) {
            placed[i] = Some(*r);
        }
        let out = self.logged_placed(&gate, &refs, &runs, |tx, idxs| {
            for grant in grants {
                if tx.get(key(b"k/", &[grant.as_bytes()]))?.is_none() {
                    return abort(StoreError::AlreadyRevoked);
                }
            }
            let mut stored = Vec::with_capacity(delivered.len());
            let mut kept = Vec::new();
            for ((grant, capsule, bytes), appended) in delivered.iter().zip(&placed) {
                let k = key(b"rd/", &[grant.as_bytes(), capsule.as_bytes()]);
                if tx.get(key(b"k/", &[grant.as_bytes()]))?.is_none() {
                    // Revoked meanwhile (its keys are gone): not kept, so
                    // the sweep after the revocation has nothing to miss.
                    stored.push(bytes.clone());
                    continue;
                }
                match (tx.get(&k)?, appended) {
                    (Some(existing), _) => match self.segs.resolve(&existing) {
                        Ok(v) => stored.push(v),
                        Err(e) => return abort(e),
                    },
                    (None, Some(r)) => {
                        tx.insert(k, r.encode())?;
                        stored.push(bytes.clone());
                        kept.push(*r);
                    }
                    (None, None) => {
                        // Stored when checked above, removed since (a
                        // revocation's sweep): not stored again.
                        stored.push(bytes.clone());
                    }
                }
            }
            Ok((idxs.to_vec(), stored, kept))
        });
        // What the transaction did not reference (all of it, if it failed).
        match out {
            Ok((idxs, stored, kept)) => {
                let dropped: Vec<ValueRef> =
                    delivered_refs.iter().filter(|r| !kept.contains(r)).copied().collect();
                self.note_garbage(&dropped);
                Ok((idxs, stored))
            }
            Err(e) => {
                self.note_garbage(&appended);
                Err(e)
            }
        }
    }

    fn get_record(&self, id: &RecordId) -> Result<Option<(RecordMeta, Vec<u8>)>, StoreError> {
        let _gate = self.gate_read()?;
        let Some((meta, env)) = self.record_refs(id.as_bytes())? else {
            return Ok(None);
        };
        Ok(Some((RecordMeta::decode(&self.segs.read(&meta)?)?, self.segs.read(&env)?)))
    }

    fn list_records(
        &self,
        owner: &PrincipalId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordMeta>, StoreError> {
        let prefix = key(b"o/", &[owner.as_bytes()]);
        let ids: Vec<[u8; 16]> = match after {
            None => self.scan_ids::<16>(&prefix, limit)?,
            Some(after) => {
                let start = key(b"o/", &[owner.as_bytes(), after.as_bytes()]);
                let mut ids = Vec::new();
                let range = (std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded);
                for item in self.db.range::<Vec<u8>, _>(range).take(limit) {
                    let (k, _) = item.map_err(backend)?;
                    let Some(tail) = k.strip_prefix(prefix.as_slice()) else { break };
                    ids.push(tail.try_into().map_err(|_| StoreError::Corrupt("index key"))?);
                }
                ids
            }
        };
        let mut out = Vec::new();
        for id in ids {
            out.push(self.record_meta(&id)?.ok_or(StoreError::Corrupt("record index"))?);
        }
        Ok(out)
    }

    fn put_grant(&self, grant: &StoredGrant, rekeys: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gid = grant.grant_id.as_bytes();
        // The re-encryption keys (~1.5 MiB per key class) go to a segment,
        // sled holds their reference; a taken id is refused before the append.
        let gate = self.gate_read()?;
        let taken = || -> Result<(), StoreError> {
            match self.get(&key(b"g/", &[gid]))? {
                Some(_) => Err(StoreError::AlreadyExists("grant")),
                None => Ok(()),
            }
        };
        self.logged_appending(
            &gate,
            &[event],
            false,
            &[rekeys],
            |_| taken().map(|()| Vec::new()),
            |tx, idxs, refs, _| {
                if tx.get(key(b"g/", &[gid]))?.is_some() {
                    return abort(StoreError::AlreadyExists("grant"));
                }
                let idx = idxs[0];
                tx.insert(key(b"g/", &[gid]), grant.encode())?;
                tx.insert(key(b"k/", &[gid]), refs[0].encode())?;
                tx.insert(key(b"gp/", &[grant.patient.as_bytes(), gid]), &[][..])?;
                tx.insert(key(b"gd/", &[grant.doctor.as_bytes(), gid]), &[][..])?;
                Ok(idx)
            },
        )
    }

    fn revoke_grant(&self, id: &GrantId, revocation: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gkey = key(b"g/", &[id.as_bytes()]);
        self.logged(&[event], |tx, idxs| {
            let Some(raw) = tx.get(&gkey)? else {
                return abort(StoreError::NotFound("grant"));
            };
            let mut g = match StoredGrant::decode(&raw) {
                Ok(g) => g,
                Err(e) => return abort(e),
            };
            if g.revocation.is_some() {
                return abort(StoreError::AlreadyRevoked);
            }
            g.revocation = Some(revocation.to_vec());
            tx.insert(gkey.as_slice(), g.encode())?;
            let keys = tx.remove(key(b"k/", &[id.as_bytes()]))?;
            Ok((idxs[0], keys))
        })
        .and_then(|(idx, keys)| {
            // The grant's keys, removed with the revocation, and the capsule
            // re-encryptions made under it, useless without the doctor's key
            // and never served again, are segment garbage now.
            if let Some(keys) = keys {
                self.note_garbage(&segment::refs_in(&keys)?);
            }
            let prefix = key(b"rd/", &[id.as_bytes()]);
            let mut removed = false;
            for item in self.db.scan_prefix(&prefix) {
                let (k, _) = item.map_err(backend)?;
                if let Some(old) = self.db.remove(k).map_err(backend)? {
                    self.note_garbage(&segment::refs_in(&old)?);
                }
                removed = true;
            }
            if removed {
                self.durable()?;
            }
            Ok(idx)
        })
    }

    fn get_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        self.get(&key(b"g/", &[id.as_bytes()]))?.map(|v| StoredGrant::decode(&v)).transpose()
    }

    fn get_rekeys(&self, id: &GrantId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_segmented(&key(b"k/", &[id.as_bytes()]))
    }

    fn list_grants_by_patient(
        &self,
        patient: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_in(&key(b"gp/", &[patient.as_bytes()]), limit)
    }

    fn list_grants_by_doctor(
        &self,
        doctor: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_in(&key(b"gd/", &[doctor.as_bytes()]), limit)
    }

    fn append_log(&self, event: &LogAppend) -> Result<u64, StoreError> {
        self.logged(&[event], |_, idxs| Ok(idxs[0]))
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        self.get(LOG_SIZE)?.map(|v| read_u64(&v)).transpose().map(|n| n.unwrap_or(0))
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, LeafOpening)>, StoreError> {
        self.openings(start, end.min(self.log_size()?))
    }

    fn log_leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<(u64, MerkleHash)>, StoreError> {
        // Stored with the entries (level 0 is not a node key), a run at a time.
        self.entries_in(start, end.min(self.log_size()?), |(_, leaf)| leaf_hash(leaf))
    }

    fn log_indices_for(
        &self,
        subject: &PrincipalId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.subject_indices(subject, from, limit)
    }

    fn log_root(&self, tree_size: u64) -> Result<MerkleHash, StoreError> {
        let gate = self.gate_read()?;
        self.tree(&gate)?.root_at(tree_size).map_err(tree_err)
    }

    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, StoreError> {
        let gate = self.gate_read()?;
        self.tree(&gate)?.inclusion_proof(index, tree_size).map_err(tree_err)
    }

    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, StoreError> {
        let gate = self.gate_read()?;
        self.tree(&gate)?.consistency_proof(old_size, new_size).map_err(tree_err)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable()
    }

    fn reclaim_space(&self) -> Result<u64, StoreError> {
        let c = self.compact_sparse_segments()?;
        Ok(c.bytes_before.saturating_sub(c.bytes_after))
    }

    fn remove_expired(&self, now: Timestamp) -> Result<Swept, StoreError> {
        let swept = Swept {
            sessions: self.remove_expired_in(b"s/", |v| Ok(Session::decode(v)?.expires_at <= now))?,
            challenges: self.remove_expired_in(b"c/", |v| Ok(Challenge::decode(v)?.expires_at <= now))?,
            enrollments: self.remove_expired_in(b"e/", |v| Ok(Enrollment::decode(v)?.expires_at <= now))?,
        };
        if swept.total() > 0 {
            self.durable()?;
        }
        Ok(swept)
    }

    // ------------------------------------------------ differential privacy

    fn put_schema(&self, schema: &StoredSchema, event: &LogAppend) -> Result<u64, StoreError> {
        let skey = schema_key(&schema.name);
        self.logged(&[event], |tx, idxs| {
            if tx.get(&skey)?.is_some() {
                return abort(StoreError::AlreadyExists("schema"));
            }
            let idx = idxs[0];
            let mut stored = schema.clone();
            stored.log_index = idx;
            tx.insert(skey.as_slice(), stored.encode())?;
            Ok(idx)
        })
    }

    fn get_schema(&self, name: &str) -> Result<Option<StoredSchema>, StoreError> {
        self.get(&schema_key(name))?.map(|v| StoredSchema::decode(&v)).transpose()
    }

    fn list_schemas(&self, limit: usize) -> Result<Vec<StoredSchema>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"dsc/").take(limit) {
            let (_, v) = item.map_err(backend)?;
            out.push(StoredSchema::decode(&v)?);
        }
        Ok(out)
    }

    fn put_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        summary: &[u8],
        event: &LogAppend,
    ) -> Result<(bool, u64), StoreError> {
        let (skey, ukey) = (schema_key(schema), summary_key(schema, patient));
        self.logged(&[event], |tx, idxs| {
            if tx.get(&skey)?.is_none() {
                return abort(StoreError::NotFound("schema"));
            }
            let idx = idxs[0];
            let replaced = tx.insert(ukey.as_slice(), summary)?.is_some();
            Ok((replaced, idx))
        })
    }

    fn delete_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        event: &LogAppend,
    ) -> Result<u64, StoreError> {
        let ukey = summary_key(schema, patient);
        self.logged(&[event], |tx, idxs| {
            if tx.remove(ukey.as_slice())?.is_none() {
                return abort(StoreError::NotFound("summary"));
            }
            Ok(idxs[0])
        })
    }

    fn get_summary(&self, schema: &str, patient: &PrincipalId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&summary_key(schema, patient))?.map(|v| v.to_vec()))
    }

    fn list_summaries(&self, schema: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(summaries_prefix(schema)).take(limit) {
            let (_, v) = item.map_err(backend)?;
            out.push(v.to_vec());
        }
        Ok(out)
    }

    fn get_ledger(&self, analyst: &PrincipalId, schema: &str) -> Result<Option<Ledger>, StoreError> {
        self.get(&ledger_key(analyst, schema))?.map(|v| decode_ledger(&v)).transpose()
    }

    fn set_budget(
        &self,
        analyst: &PrincipalId,
        schema: &str,
        budget: Budget,
        event: &LogAppend,
    ) -> Result<(Ledger, u64), StoreError> {
        let (skey, lkey) = (schema_key(schema), ledger_key(analyst, schema));
        let fresh = Ledger::new(AnalystId::from_bytes(*analyst.as_bytes()), schema, budget)
            .map_err(|e| StoreError::Backend(format!("ledger: {e}")))?;
        self.logged(&[event], |tx, idxs| {
            if tx.get(&skey)?.is_none() {
                return abort(StoreError::NotFound("schema"));
            }
            let mut ledger = match tx.get(&lkey)? {
                Some(raw) => match decode_ledger(&raw) {
                    Ok(l) => l,
                    Err(e) => return abort(e),
                },
                None => fresh.clone(),
            };
            ledger.set_budget(budget);
            let idx = idxs[0];
            tx.insert(lkey.as_slice(), ledger.encode())?;
            Ok((ledger, idx))
        })
    }

    fn charge_dp_query(
        &self,
        analyst: &PrincipalId,
        schema: &str,
        default: Option<Budget>,
        cost: PrivacyCost,
        event: &LogAppend,
    ) -> Result<(Ledger, u64), StoreError> {
        let lkey = ledger_key(analyst, schema);
        let fresh = default
            .map(|b| Ledger::new(AnalystId::from_bytes(*analyst.as_bytes()), schema, b))
            .transpose()
            .map_err(|e| StoreError::Backend(format!("ledger: {e}")))?;
        // Every ledger write happens under the append lock (it always comes
        // with a log entry), and the transaction re-reads the ledger: no two
        // charges can both see the same balance.
        self.logged(&[event], |tx, idxs| {
            let mut ledger = match (tx.get(&lkey)?, &fresh) {
                (Some(raw), _) => match decode_ledger(&raw) {
                    Ok(l) => l,
                    Err(e) => return abort(e),
                },
                (None, Some(f)) => f.clone(),
                (None, None) => return abort(StoreError::NoBudget),
            };
            if let Err(e) = ledger.debit(cost) {
                return abort(ledger_err(e));
            }
            let idx = idxs[0];
            tx.insert(lkey.as_slice(), ledger.encode())?;
            Ok((ledger, idx))
        })
    }
}
