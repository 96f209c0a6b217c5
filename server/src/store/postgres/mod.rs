//! The PostgreSQL backend: the only module that touches PostgreSQL.
//!
//! For deployments that run several stateless `medrelay-server` replicas
//! over one database (`serve --database postgres://…`). It stores the same
//! versioned blobs as the sled backend, in tables created by the versioned
//! migrations in `migrations/` (applied at start, see [`migrate`]); large
//! values (envelopes, re-encryption keys) are `bytea`, and lists use keyset
//! pagination on indexed `(owner, id)`-style keys.
//!
//! # Several replicas on one database
//!
//! - **One log sequence.** The log head is one row (`log_head`). Every
//!   transaction that appends to the log locks it first (`SELECT … FOR
//!   UPDATE`), reads the size, plans the Merkle nodes of its appends from
//!   the committed nodes, and writes entries, nodes, new size and the change
//!   the events record, then commits. A second replica's append waits on
//!   the row lock until the first commits or rolls back, then reads the new
//!   size (READ COMMITTED takes a fresh snapshot per statement): indices are
//!   consecutive with no gap or duplicate, and a failed change rolls its
//!   appends back with it. A row lock rather than an advisory lock because
//!   it lives and dies with the transaction that writes the log, is visible
//!   in `pg_locks` as what it is, and needs no key convention. The cost is
//!   that logged writes (registrations, uploads, grants, accesses, DP
//!   answers) are serialized across all replicas for one round of writes
//!   and a commit each: the ceiling of write throughput (see
//!   docs/BENCHMARKS.md). Re-encryption itself, the CPU-bound part, runs
//!   outside any transaction and scales with replicas.
//! - **Consistent checkpoints.** Checkpoints are signed by each replica
//!   from the one log; every replica holds the same log signing key (the
//!   database records its public key, [`PgStore::claim_log_key`], and a
//!   replica with another key refuses to start), and Ed25519 signatures are
//!   deterministic, so any two replicas sign byte-identical checkpoints for
//!   the same size.
//! - **DP debits.** A charge locks the log head, then the analyst's ledger
//!   row (`FOR UPDATE`), re-reads it, debits, writes it and its log entry,
//!   and commits: two queries racing at two replicas are serialized, and
//!   the second sees the first's debit.
//! - **Revocation.** A revocation commits (grant marked revoked, keys
//!   deleted, log entry) before it is acknowledged; every replica reads the
//!   grant from the database on every re-encryption request, so it is
//!   refused everywhere from then on, whatever a replica's key cache holds
//!   (and a replica drops cached keys of a grant it finds revoked).
//! - **Tokens, challenges, sessions** are rows: a challenge is taken with
//!   `DELETE … RETURNING` (used once, from any replica), an enrollment token
//!   is consumed inside the registering transaction.
//!
//! The link to the database honours libpq's `sslmode` and `sslrootcert`
//! (rustls; `verify-full` for a database on another host): see the `tls`
//! module for what each mode protects.
//!
//! Every write is committed with `synchronous_commit = on` (set on each
//! connection) before a call returns, except challenges (their loss in a
//! crash only makes a client ask again).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use medrelay_crypto::{CapsuleId, GrantId, PrincipalId, RecordId, Timestamp, VerifyingKey};
use medrelay_dp::{AnalystId, Budget, DpError, Ledger, PrivacyCost};
use medrelay_policy::{ConsistencyProof, InclusionProof, LeafOpening, MerkleHash, MerkleTree};
use postgres::error::SqlState;
use postgres::{Client, Transaction};

use super::{
    Challenge, Enrollment, EnrollmentUse, LogAppend, RecordMeta, SecretHash, Session, Store, StoreError,
    StoredGrant, StoredPrincipal, StoredSchema, Swept,
};

mod import;
mod log;
mod migrate;
mod pool;
mod study;
pub mod testing;
mod tls;

use self::log::{append_in, lock_head, read_size, tree_err, Nodes};

/// Connections (and threads using them) per replica by default.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Attempts of a transaction that failed on a serialization failure or a
/// deadlock (neither happens with the locking described above; a bound
/// anyway).
const TX_ATTEMPTS: usize = 3;

/// A failure inside a database call: a store error to return as it is, or
/// a database error (retried if transient, else reported as `Backend`).
#[derive(Debug)]
pub(crate) enum Fail {
    Store(StoreError),
    Db(postgres::Error),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl Fail {
    fn retryable(&self) -> bool {
        matches!(self, Fail::Db(e) if matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED))
    }

    fn into_store(self) -> StoreError {
        match self {
            Fail::Store(e) => e,
            // The text names the failing statement or connection problem,
            // never bound values.
            Fail::Db(e) => StoreError::Backend(format!("postgres: {e}")),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Store(e) => e.fmt(f),
            Fail::Db(e) => write!(f, "postgres: {e}"),
        }
    }
}

impl std::error::Error for Fail {}

type R<T> = Result<T, Fail>;

/// u64 → bigint for counts and indices (which never reach 2^63).
fn big(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::OutOfRange(format!("{n} is beyond the database's range")))
}

/// bigint → u64 for counts and indices read back.
fn unbig(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt("negative counter"))
}

/// A time as an order-preserving bigint (top bit flipped), so that every
/// u64 fits and comparisons in SQL agree with comparisons of the u64s.
fn time(t: Timestamp) -> i64 {
    i64::from_be_bytes((t.0 ^ (1 << 63)).to_be_bytes())
}

/// A list limit as bigint.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ledger_err(e: DpError) -> StoreError {
    match e {
        DpError::Overspend(o) => StoreError::Overspend(Box::new(o)),
        other => StoreError::Backend(format!("ledger: {other}")),
    }
}

fn decode_ledger(raw: &[u8]) -> Result<Ledger, StoreError> {
    Ledger::decode(raw).map_err(|_| StoreError::Corrupt("dp ledger"))
}

/// PostgreSQL-backed [`Store`] (and [`super::StudyStore`]). Cloning shares
/// the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Arc<pool::Pool>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or
    /// `host=… dbname=…`), applies the migrations this binary carries, and
    /// refuses a database whose schema is newer. Keeps up to
    /// [`DEFAULT_POOL_SIZE`] connections.
    ///
    /// The link honours libpq's `sslmode` (default `prefer`) and
    /// `sslrootcert` in `url`: `…?sslmode=verify-full&sslrootcert=/path/ca.pem`
    /// for a database on another host (see the `tls` module for what each
    /// mode protects and where roots come from). Neither errors nor logs
    /// ever show the URL's password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, DEFAULT_POOL_SIZE)
    }

    /// [`PgStore::open`] with `pool_size` connections.
    pub fn open_with(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let (mut config, link) = tls::configure(url)?;
        config.application_name("medrelay-server");
        link.log_choice(&config);
        let store = Self { pool: Arc::new(pool::Pool::new(config, link, pool_size)?) };
        store.run(|c| migrate::migrate(c).map(drop))?;
        Ok(store)
    }

    /// The newest schema version this binary knows.
    pub fn schema_version() -> i32 {
        migrate::latest()
    }

    /// Records `key` as the log signing key of this database, or checks
    /// that it is the one recorded: every replica must sign checkpoints of
    /// the one log with the same key.
    pub fn claim_log_key(&self, key: &VerifyingKey) -> Result<(), StoreError> {
        let want = key.to_bytes().to_vec();
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO deployment (id, log_key) VALUES (1, $1) ON CONFLICT DO NOTHING",
                &[&want],
            )?;
            let row = tx.query_one("SELECT log_key FROM deployment WHERE id = 1", &[])?;
            let have: &[u8] = row.try_get(0)?;
            if have != want.as_slice() {
                return Err(StoreError::Backend(
                    "this database's log is signed with another log signing key: every replica needs \
                     the same DATA/log-signing.key"
                        .into(),
                )
                .into());
            }
            Ok(())
        })
    }

    fn run<T: Send>(&self, f: impl FnOnce(&mut Client) -> R<T> + Send) -> Result<T, StoreError> {
        self.pool.run(f).map_err(Fail::into_store)
    }

    /// Runs `f` in a transaction, committed if it returns `Ok`, retried on
    /// a transient failure.
    fn tx<T: Send>(&self, f: impl Fn(&mut Transaction<'_>) -> R<T> + Send + Sync) -> Result<T, StoreError> {
        self.run(|c| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut tx = c.transaction()?;
                let out = f(&mut tx).and_then(|v| tx.commit().map(|()| v).map_err(Fail::from));
                match out {
                    Err(e) if e.retryable() && attempt < TX_ATTEMPTS => continue,
                    other => return other,
                }
            }
        })
    }

    /// Appends `events` and applies `change` in one transaction, under the
    /// log head lock: the change and its entries commit together or not at
    /// all. `change` gets the new entries' indices.
    fn logged<T: Send>(
        &self,
        events: &[&LogAppend],
        change: impl Fn(&mut Transaction<'_>, &[u64]) -> R<T> + Send + Sync,
    ) -> Result<T, StoreError> {
        self.tx(|tx| {
            let size = lock_head(tx)?;
            let idxs = append_in(tx, size, events)?;
            change(tx, &idxs)
        })
    }

    fn read_tree<T: Send>(
        &self,
        f: impl Fn(&MerkleTree<Nodes<'_, Client>>) -> R<T> + Send + Sync,
    ) -> Result<T, StoreError> {
        self.run(|c| {
            let size = read_size(c)?;
            let tree = MerkleTree::new(Nodes { db: RefCell::new(c), size, pending: BTreeMap::new() });
            f(&tree)
        })
    }

    fn get_blob(&self, sql: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|c| Ok(c.query_opt(sql, &[&key])?.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?))
    }

    fn grants_where(
        &self,
        sql: &'static str,
        who: &PrincipalId,
        n: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.run(|c| {
            let rows = c.query(sql, &[&who.as_bytes().as_slice(), &limit(n)])?;
            rows.iter().map(|r| Ok(StoredGrant::decode(r.try_get(0)?)?)).collect()
        })
    }
}

/// Decodes the first column of an optional row with `decode`.
fn decoded<T>(row: Option<postgres::Row>, decode: impl Fn(&[u8]) -> Result<T, StoreError>) -> R<Option<T>> {
    match row {
        Some(r) => Ok(Some(decode(r.try_get(0)?)?)),
        None => Ok(None),
    }
}

fn exists(tx: &mut Transaction<'_>, sql: &str, key: &(dyn postgres::types::ToSql + Sync)) -> R<bool> {
    Ok(tx.query_opt(sql, &[key])?.is_some())
}

impl Store for PgStore {
    fn put_challenge(&self, nonce_hash: &SecretHash, challenge: &Challenge) -> Result<(), StoreError> {
        let value = challenge.encode();
        self.tx(|tx| {
            // Need not be durable (see the trait): no flush wait per challenge.
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
            tx.execute(
                "INSERT INTO challenges (nonce_hash, expires_at, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (nonce_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
                &[&nonce_hash.as_slice(), &time(challenge.expires_at), &value],
            )?;
            Ok(())
        })
    }

    fn take_challenge(&self, nonce_hash: &SecretHash) -> Result<Option<Challenge>, StoreError> {
        // One statement: of two replicas taking one nonce, one gets None.
        let raw =
            self.get_blob("DELETE FROM challenges WHERE nonce_hash = $1 RETURNING value", nonce_hash)?;
        raw.map(|v| Challenge::decode(&v)).transpose()
    }

    fn put_session(&self, token_hash: &SecretHash, session: &Session) -> Result<(), StoreError> {
        let value = session.encode();
        self.run(|c| {
            c.execute(
                "INSERT INTO sessions (token_hash, principal, expires_at, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (token_hash) DO UPDATE SET principal = EXCLUDED.principal, \
                 expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
                &[
                    &token_hash.as_slice(),
                    &session.principal.as_bytes().as_slice(),
                    &time(session.expires_at),
                    &value,
                ],
            )?;
            Ok(())
        })
    }

    fn get_session(&self, token_hash: &SecretHash) -> Result<Option<Session>, StoreError> {
        let raw = self.get_blob("SELECT value FROM sessions WHERE token_hash = $1", token_hash)?;
        raw.map(|v| Session::decode(&v)).transpose()
    }

    fn put_enrollment(&self, token_hash: &SecretHash, enrollment: &Enrollment) -> Result<(), StoreError> {
        let value = enrollment.encode();
        self.run(|c| {
            c.execute(
                "INSERT INTO enrollments (token_hash, expires_at, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (token_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
                &[&token_hash.as_slice(), &time(enrollment.expires_at), &value],
            )?;
            Ok(())
        })
    }

    fn register_principal(
        &self,
        principal: &StoredPrincipal,
        enrollment: Option<EnrollmentUse>,
        event: &LogAppend,
    ) -> Result<u64, StoreError> {
        let id = principal.id();
        let id = id.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            if exists(tx, "SELECT 1 FROM principals WHERE id = $1", &id)? {
                return Err(StoreError::AlreadyExists("principal").into());
            }
            if let Some(u) = &enrollment {
                let row = tx.query_opt(
                    "DELETE FROM enrollments WHERE token_hash = $1 RETURNING value",
                    &[&u.token_hash.as_slice()],
                )?;
                let Some(row) = row else { return Err(StoreError::InvalidEnrollment.into()) };
                let en = Enrollment::decode(row.try_get(0)?)?;
                if en.role != u.role || u.now >= en.expires_at {
                    // The whole transaction rolls back: the token stays.
                    return Err(StoreError::InvalidEnrollment.into());
                }
            }
            let mut p = principal.clone();
            p.log_index = idxs[0];
            tx.execute("INSERT INTO principals (id, value) VALUES ($1, $2)", &[&id, &p.encode()])?;
            Ok(idxs[0])
        })
    }

    fn get_principal(&self, id: &PrincipalId) -> Result<Option<StoredPrincipal>, StoreError> {
        let raw = self.get_blob("SELECT value FROM principals WHERE id = $1", id.as_bytes())?;
        raw.map(|v| StoredPrincipal::decode(&v)).transpose()
    }

    fn suspend_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<(u64, u64), StoreError> {
        let key = id.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            if !exists(tx, "SELECT 1 FROM principals WHERE id = $1", &key)? {
                return Err(StoreError::NotFound("principal").into());
            }
            if exists(tx, "SELECT 1 FROM suspensions WHERE principal = $1", &key)? {
                return Err(StoreError::AlreadyExists("suspension").into());
            }
            tx.execute(
                "INSERT INTO suspensions (principal, log_index) VALUES ($1, $2)",
                &[&key, &big(idxs[0])?],
            )?;
            let live: i64 =
                tx.query_one("SELECT count(*) FROM sessions WHERE principal = $1", &[&key])?.try_get(0)?;
            Ok((idxs[0], unbig(live)?))
        })
    }

    fn reinstate_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<u64, StoreError> {
        let key = id.as_bytes().as_slice();
        // One transaction: the sessions from before go with the suspension.
        self.logged(&[event], |tx, idxs| {
            if tx.execute("DELETE FROM suspensions WHERE principal = $1", &[&key])? == 0 {
                return Err(StoreError::NotFound("suspension").into());
            }
            tx.execute("DELETE FROM sessions WHERE principal = $1", &[&key])?;
            Ok(idxs[0])
        })
    }

    fn is_suspended(&self, id: &PrincipalId) -> Result<bool, StoreError> {
        self.run(|c| {
            Ok(c.query_opt("SELECT 1 FROM suspensions WHERE principal = $1", &[&id.as_bytes().as_slice()])?
                .is_some())
        })
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
        let ids: Vec<Vec<u8>> = records.iter().map(|(m, _)| m.record_id().as_bytes().to_vec()).collect();
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != ids.len() {
            return Err(StoreError::AlreadyExists("record"));
        }
        let capsule_ids: Vec<&[u8]> = capsules.iter().map(|(id, _)| id.as_bytes().as_slice()).collect();
        let capsule_values: Vec<&[u8]> = capsules.iter().map(|(_, v)| v.as_slice()).collect();
        self.logged(&refs, |tx, idxs| {
            let taken = tx.query_opt("SELECT 1 FROM records WHERE id = ANY($1::bytea[]) LIMIT 1", &[&ids])?;
            if taken.is_some() {
                return Err(StoreError::AlreadyExists("record").into());
            }
            if !capsules.is_empty() {
                // A capsule's id is the digest of its bytes: one already
                // stored is kept as it is.
                tx.execute(
                    "INSERT INTO capsules (id, value) \
                     SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) ON CONFLICT (id) DO NOTHING",
                    &[&capsule_ids, &capsule_values],
                )?;
            }
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let mut owners = Vec::with_capacity(records.len());
            let mut metas = Vec::with_capacity(records.len());
            for ((meta, _), idx) in records.iter().zip(idxs) {
                let mut m = meta.clone();
                m.log_index = *idx;
                owners.push(meta.owner().as_bytes().to_vec());
                metas.push(m.encode());
            }
            let envelopes: Vec<&[u8]> = records.iter().map(|(_, e)| e.as_slice()).collect();
            tx.execute(
                "INSERT INTO records (id, owner, meta, envelope) \
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[])",
                &[&ids, &owners, &metas, &envelopes],
            )?;
            Ok(idxs.to_vec())
        })
    }

    fn get_capsule(&self, id: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob("SELECT value FROM capsules WHERE id = $1", id.as_bytes())
    }

    fn get_delivered(&self, grant: &GrantId, capsule: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError> {
        let (g, cap) = (grant.as_bytes().as_slice(), capsule.as_bytes().as_slice());
        self.run(|c| {
            let row =
                c.query_opt("SELECT value FROM delivered WHERE grant_id = $1 AND capsule = $2", &[&g, &cap])?;
            Ok(row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?)
        })
    }

    fn put_served(
        &self,
        served_under: &[GrantId],
        delivered: &[(GrantId, CapsuleId, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<(Vec<u64>, Vec<Vec<u8>>), StoreError> {
        let refs: Vec<&LogAppend> = events.iter().collect();
        let mut live: Vec<&[u8]> = served_under.iter().map(|g| g.as_bytes().as_slice()).collect();
        live.sort_unstable();
        live.dedup();
        let live_count = live.len() as i64;
        let grants: Vec<&[u8]> = delivered.iter().map(|(g, _, _)| g.as_bytes().as_slice()).collect();
        let capsules: Vec<&[u8]> = delivered.iter().map(|(_, c, _)| c.as_bytes().as_slice()).collect();
        let values: Vec<&[u8]> = delivered.iter().map(|(_, _, v)| v.as_slice()).collect();
        self.logged(&refs, |tx, idxs| {
            // Under the log head lock, which every revocation takes too: a
            // grant revoked since the fetch was authorized has no keys.
            if live_count > 0 {
                let row =
                    tx.query_one("SELECT count(*) FROM rekeys WHERE grant_id = ANY($1::bytea[])", &[&live])?;
                if row.try_get::<_, i64>(0)? != live_count {
                    return Err(StoreError::AlreadyRevoked.into());
                }
            }
            if delivered.is_empty() {
                return Ok((idxs.to_vec(), Vec::new()));
            }
            // A re-encryption under a revoked grant (its keys are gone) is
            // never kept. One stored before is kept as it is.
            tx.execute(
                "INSERT INTO delivered (grant_id, capsule, value) \
                 SELECT t.g, t.c, t.v FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[]) AS t(g, c, v) \
                 WHERE EXISTS (SELECT 1 FROM rekeys k WHERE k.grant_id = t.g) \
                 ON CONFLICT (grant_id, capsule) DO NOTHING",
                &[&grants, &capsules, &values],
            )?;
            let rows = tx.query(
                "SELECT d.value FROM UNNEST($1::bytea[], $2::bytea[]) WITH ORDINALITY AS t(g, c, n) \
                 LEFT JOIN delivered d ON d.grant_id = t.g AND d.capsule = t.c ORDER BY t.n",
                &[&grants, &capsules],
            )?;
            if rows.len() != delivered.len() {
                return Err(StoreError::Backend("stored re-encryptions: row count".into()).into());
            }
            let mut stored = Vec::with_capacity(rows.len());
            for (row, (_, _, made)) in rows.iter().zip(delivered) {
                let kept: Option<Vec<u8>> = row.try_get(0)?;
                stored.push(kept.unwrap_or_else(|| made.clone()));
            }
            Ok((idxs.to_vec(), stored))
        })
    }

    fn get_record(&self, id: &RecordId) -> Result<Option<(RecordMeta, Vec<u8>)>, StoreError> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT meta, envelope FROM records WHERE id = $1",
                &[&id.as_bytes().as_slice()],
            )?;
            let Some(row) = row else { return Ok(None) };
            let meta = RecordMeta::decode(row.try_get(0)?)?;
            Ok(Some((meta, row.try_get(1)?)))
        })
    }

    fn list_records(
        &self,
        owner: &PrincipalId,
        after: Option<&RecordId>,
        n: usize,
    ) -> Result<Vec<RecordMeta>, StoreError> {
        // Keyset pagination: the index on (owner, id) is walked from the cursor.
        let owner = owner.as_bytes().as_slice();
        let after: &[u8] = after.map_or(&[], |a| a.as_bytes().as_slice());
        self.run(|c| {
            let rows = c.query(
                "SELECT meta FROM records WHERE owner = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&owner, &after, &limit(n)],
            )?;
            rows.iter().map(|r| Ok(RecordMeta::decode(r.try_get(0)?)?)).collect()
        })
    }

    fn put_grant(&self, grant: &StoredGrant, rekeys: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gid = grant.grant_id.as_bytes().as_slice();
        let value = grant.encode();
        self.logged(&[event], |tx, idxs| {
            if exists(tx, "SELECT 1 FROM grants WHERE id = $1", &gid)? {
                return Err(StoreError::AlreadyExists("grant").into());
            }
            tx.execute(
                "INSERT INTO grants (id, patient, doctor, value) VALUES ($1, $2, $3, $4)",
                &[&gid, &grant.patient.as_bytes().as_slice(), &grant.doctor.as_bytes().as_slice(), &value],
            )?;
            tx.execute("INSERT INTO rekeys (grant_id, value) VALUES ($1, $2)", &[&gid, &rekeys])?;
            Ok(idxs[0])
        })
    }

    fn revoke_grant(&self, id: &GrantId, revocation: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gid = id.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            let row = tx.query_opt("SELECT value FROM grants WHERE id = $1 FOR UPDATE", &[&gid])?;
            let Some(row) = row else { return Err(StoreError::NotFound("grant").into()) };
            let mut g = StoredGrant::decode(row.try_get(0)?)?;
            if g.revocation.is_some() {
                return Err(StoreError::AlreadyRevoked.into());
            }
            g.revocation = Some(revocation.to_vec());
            tx.execute("UPDATE grants SET value = $2 WHERE id = $1", &[&gid, &g.encode()])?;
            tx.execute("DELETE FROM rekeys WHERE grant_id = $1", &[&gid])?;
            // The capsule re-encryptions made under the grant, in the same
            // transaction: never served again, on any replica.
            tx.execute("DELETE FROM delivered WHERE grant_id = $1", &[&gid])?;
            Ok(idxs[0])
        })
    }

    fn get_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        let raw = self.get_blob("SELECT value FROM grants WHERE id = $1", id.as_bytes())?;
        raw.map(|v| StoredGrant::decode(&v)).transpose()
    }

    fn get_rekeys(&self, id: &GrantId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob("SELECT value FROM rekeys WHERE grant_id = $1", id.as_bytes())
    }

    fn list_grants_by_patient(
        &self,
        patient: &PrincipalId,
        n: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where("SELECT value FROM grants WHERE patient = $1 ORDER BY id LIMIT $2", patient, n)
    }

    fn list_grants_by_doctor(&self, doctor: &PrincipalId, n: usize) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where("SELECT value FROM grants WHERE doctor = $1 ORDER BY id LIMIT $2", doctor, n)
    }

    fn append_log(&self, event: &LogAppend) -> Result<u64, StoreError> {
        self.logged(&[event], |_, idxs| Ok(idxs[0]))
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        self.run(read_size)
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, LeafOpening)>, StoreError> {
        self.run(|c| {
            let end = end.min(read_size(c)?);
            if start >= end {
                return Ok(Vec::new());
            }
            let rows = c.query(
                "SELECT idx, opening FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&big(start)?, &big(end)?],
            )?;
            if rows.len() as u64 != end - start {
                return Err(StoreError::Corrupt("log entry missing").into());
            }
            rows.iter()
                .map(|r| {
                    let i = unbig(r.try_get(0)?)?;
                    let o = LeafOpening::from_bytes(r.try_get(1)?)
                        .map_err(|_| StoreError::Corrupt("log entry"))?;
                    Ok((i, o))
                })
                .collect()
        })
    }

    fn log_leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<(u64, MerkleHash)>, StoreError> {
        self.run(|c| {
            let end = end.min(read_size(c)?);
            if start >= end {
                return Ok(Vec::new());
            }
            // Leaves are the level-0 nodes.
            let rows = c.query(
                "SELECT idx, hash FROM merkle_nodes WHERE level = 0 AND idx >= $1 AND idx < $2 ORDER BY idx",
                &[&big(start)?, &big(end)?],
            )?;
            if rows.len() as u64 != end - start {
                return Err(StoreError::Corrupt("merkle node missing").into());
            }
            rows.iter()
                .map(|r| {
                    let i = unbig(r.try_get(0)?)?;
                    let h = MerkleHash::from_slice(r.try_get(1)?)
                        .map_err(|_| StoreError::Corrupt("merkle node"))?;
                    Ok((i, h))
                })
                .collect()
        })
    }

    fn log_indices_for(&self, subject: &PrincipalId, from: u64, n: usize) -> Result<Vec<u64>, StoreError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT idx FROM log_subjects WHERE subject = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
                &[&subject.as_bytes().as_slice(), &big(from)?, &limit(n)],
            )?;
            rows.iter().map(|r| Ok(unbig(r.try_get(0)?)?)).collect()
        })
    }

    fn log_root(&self, tree_size: u64) -> Result<MerkleHash, StoreError> {
        self.read_tree(|t| t.root_at(tree_size).map_err(tree_err))
    }

    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, StoreError> {
        self.read_tree(|t| t.inclusion_proof(index, tree_size).map_err(tree_err))
    }

    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, StoreError> {
        self.read_tree(|t| t.consistency_proof(old_size, new_size).map_err(tree_err))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write was committed durably before its call returned.
        Ok(())
    }

    fn reclaim_space(&self) -> Result<u64, StoreError> {
        // Deleted rows are reclaimed by PostgreSQL's autovacuum.
        Ok(0)
    }

    fn remove_expired(&self, now: Timestamp) -> Result<Swept, StoreError> {
        let now = time(now);
        self.tx(|tx| {
            let sessions = tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])?;
            let challenges = tx.execute("DELETE FROM challenges WHERE expires_at <= $1", &[&now])?;
            let enrollments = tx.execute("DELETE FROM enrollments WHERE expires_at <= $1", &[&now])?;
            Ok(Swept { sessions, challenges, enrollments })
        })
    }

    // ------------------------------------------------ differential privacy

    fn put_schema(&self, schema: &StoredSchema, event: &LogAppend) -> Result<u64, StoreError> {
        self.logged(&[event], |tx, idxs| {
            if exists(tx, "SELECT 1 FROM dp_schemas WHERE name = $1", &schema.name)? {
                return Err(StoreError::AlreadyExists("schema").into());
            }
            let mut stored = schema.clone();
            stored.log_index = idxs[0];
            tx.execute(
                "INSERT INTO dp_schemas (name, value) VALUES ($1, $2)",
                &[&schema.name, &stored.encode()],
            )?;
            Ok(idxs[0])
        })
    }

    fn get_schema(&self, name: &str) -> Result<Option<StoredSchema>, StoreError> {
        self.run(|c| {
            let row = c.query_opt("SELECT value FROM dp_schemas WHERE name = $1", &[&name])?;
            decoded(row, StoredSchema::decode)
        })
    }

    fn list_schemas(&self, n: usize) -> Result<Vec<StoredSchema>, StoreError> {
        self.run(|c| {
            let rows =
                c.query("SELECT value FROM dp_schemas ORDER BY name COLLATE \"C\" LIMIT $1", &[&limit(n)])?;
            rows.iter().map(|r| Ok(StoredSchema::decode(r.try_get(0)?)?)).collect()
        })
    }

    fn put_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        summary: &[u8],
        event: &LogAppend,
    ) -> Result<(bool, u64), StoreError> {
        let p = patient.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            if !exists(tx, "SELECT 1 FROM dp_schemas WHERE name = $1", &schema)? {
                return Err(StoreError::NotFound("schema").into());
            }
            let replaced = tx.execute(
                "UPDATE dp_summaries SET value = $3 WHERE schema_name = $1 AND patient = $2",
                &[&schema, &p, &summary],
            )? == 1;
            if !replaced {
                tx.execute(
                    "INSERT INTO dp_summaries (schema_name, patient, value) VALUES ($1, $2, $3)",
                    &[&schema, &p, &summary],
                )?;
            }
            Ok((replaced, idxs[0]))
        })
    }

    fn delete_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        event: &LogAppend,
    ) -> Result<u64, StoreError> {
        let p = patient.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            if tx
                .execute("DELETE FROM dp_summaries WHERE schema_name = $1 AND patient = $2", &[&schema, &p])?
                == 0
            {
                return Err(StoreError::NotFound("summary").into());
            }
            Ok(idxs[0])
        })
    }

    fn get_summary(&self, schema: &str, patient: &PrincipalId) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT value FROM dp_summaries WHERE schema_name = $1 AND patient = $2",
                &[&schema, &patient.as_bytes().as_slice()],
            )?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn list_summaries(&self, schema: &str, n: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT value FROM dp_summaries WHERE schema_name = $1 ORDER BY patient LIMIT $2",
                &[&schema, &limit(n)],
            )?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
    }

    fn get_ledger(&self, analyst: &PrincipalId, schema: &str) -> Result<Option<Ledger>, StoreError> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT value FROM dp_ledgers WHERE analyst = $1 AND schema_name = $2",
                &[&analyst.as_bytes().as_slice(), &schema],
            )?;
            decoded(row, decode_ledger)
        })
    }

    fn set_budget(
        &self,
        analyst: &PrincipalId,
        schema: &str,
        budget: Budget,
        event: &LogAppend,
    ) -> Result<(Ledger, u64), StoreError> {
        let fresh = Ledger::new(AnalystId::from_bytes(*analyst.as_bytes()), schema, budget)
            .map_err(|e| StoreError::Backend(format!("ledger: {e}")))?;
        let a = analyst.as_bytes().as_slice();
        self.logged(&[event], |tx, idxs| {
            if !exists(tx, "SELECT 1 FROM dp_schemas WHERE name = $1", &schema)? {
                return Err(StoreError::NotFound("schema").into());
            }
            let mut ledger = locked_ledger(tx, a, schema)?.unwrap_or_else(|| fresh.clone());
            ledger.set_budget(budget);
            write_ledger(tx, a, schema, &ledger)?;
            Ok((ledger, idxs[0]))
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
        let fresh = default
            .map(|b| Ledger::new(AnalystId::from_bytes(*analyst.as_bytes()), schema, b))
            .transpose()
            .map_err(|e| StoreError::Backend(format!("ledger: {e}")))?;
        let a = analyst.as_bytes().as_slice();
        // The log head lock serializes every charge of every replica; the
        // ledger row is locked and re-read inside the same transaction, so
        // no two charges can both see one balance.
        self.logged(&[event], |tx, idxs| {
            let mut ledger = match (locked_ledger(tx, a, schema)?, &fresh) {
                (Some(l), _) => l,
                (None, Some(f)) => f.clone(),
                (None, None) => return Err(StoreError::NoBudget.into()),
            };
            ledger.debit(cost).map_err(ledger_err)?;
            write_ledger(tx, a, schema, &ledger)?;
            Ok((ledger, idxs[0]))
        })
    }
}

fn locked_ledger(tx: &mut Transaction<'_>, analyst: &[u8], schema: &str) -> R<Option<Ledger>> {
    let row = tx.query_opt(
        "SELECT value FROM dp_ledgers WHERE analyst = $1 AND schema_name = $2 FOR UPDATE",
        &[&analyst, &schema],
    )?;
    decoded(row, decode_ledger)
}

fn write_ledger(tx: &mut Transaction<'_>, analyst: &[u8], schema: &str, ledger: &Ledger) -> R<()> {
    tx.execute(
        "INSERT INTO dp_ledgers (analyst, schema_name, value) VALUES ($1, $2, $3) \
         ON CONFLICT (analyst, schema_name) DO UPDATE SET value = EXCLUDED.value",
        &[&analyst, &schema, &ledger.encode()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
