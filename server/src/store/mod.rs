//! Storage: the [`Store`] trait and its stored types.
//!
//! Every operation that changes more than one key (a principal and its log
//! entry, a record and its log entry, a grant and its re-encryption keys and
//! its log entry) is one atomic call here, so a backend can make it one
//! transaction. Every call that writes returns only after the write is
//! durable. Only `sled.rs` touches sled and only `postgres/` touches
//! PostgreSQL; both run the same conformance suite (`tests.rs`,
//! `tests_dp.rs`, and the study store's in `server/tests/study.rs`).
//!
//! Stored values are versioned binary blobs (magic + version, see
//! `medrelay_crypto::encoding`), decoded with size limits; a corrupt value is
//! a [`StoreError::Corrupt`], never a panic.

mod codec;
mod dp;
pub mod dump;
pub mod postgres;
pub(crate) mod sled;
pub(crate) mod study;
#[cfg(test)]
#[macro_use]
mod tests;
#[cfg(test)]
mod tests_dp;

pub use self::postgres::PgStore;
pub use self::sled::{Compacted, PrefixUsage, SledStore, StorageUsage, RECLAIM_MIN_BYTES};
pub use codec::{Challenge, Enrollment, RecordMeta, Session, StoredGrant, StoredPrincipal};
pub use dp::{decode_summary, encode_summary, StoredSchema};
pub use study::{
    BatchState, BatchStatus, ChargeOutcome, CollectCheck, CommitOutcome, HelperReleaseOutcome, JobCommit,
    KeptResponse, ReportIdBytes, StoredStudy, StudyJob, StudyStore, Transform, UploadOutcome,
    MAX_JOB_REPORTS,
};

use medrelay_crypto::{CapsuleId, GrantId, PrincipalId, RecordId, Timestamp};
use medrelay_dp::{Budget, Ledger, Overspend, PrivacyCost};
use medrelay_policy::{ConsistencyProof, InclusionProof, LeafOpening, LogEvent, MerkleHash, PolicyError};
use medrelay_wire::Role;

/// A 32-byte SHA-256 digest of a secret (token or nonce); secrets themselves
/// are never stored.
pub type SecretHash = [u8; 32];

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key already exists (duplicate principal, record or grant).
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// The thing to change does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The enrollment token is unknown, used, expired or for another role.
    #[error("invalid enrollment token")]
    InvalidEnrollment,
    /// The grant is already revoked.
    #[error("grant already revoked")]
    AlreadyRevoked,
    /// A requested log index or tree size is beyond the log.
    #[error("{0}")]
    OutOfRange(String),
    /// A stored value failed to decode.
    #[error("corrupt stored value: {0}")]
    Corrupt(&'static str),
    /// The backend failed (I/O, database error).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A DP query's cost does not fit the analyst's budget; nothing was
    /// written.
    #[error("{0}")]
    Overspend(Box<Overspend>),
    /// The analyst has no budget for the schema (none set by the operator
    /// and no default configured).
    #[error("no privacy budget")]
    NoBudget,
}

/// One event to append to the audit log, with the principals it concerns
/// (so a patient can list the events about their records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAppend {
    /// The event with its salt. The tree gets only its leaf hash (a
    /// commitment); the opening itself is stored with the entry and served
    /// only to the event's audience and to auditors.
    pub opening: LeafOpening,
    /// Principals the event is about (its audience), whose own history
    /// lists it.
    pub subjects: Vec<PrincipalId>,
}

impl LogAppend {
    /// The append for `event`: its canonical (validated) bytes sealed with a
    /// fresh random salt, and its audience ([`LogEvent::audience`]).
    pub fn seal(event: &LogEvent) -> Result<Self, PolicyError> {
        let opening = LeafOpening::seal(event, &mut rand::rngs::OsRng)?;
        Ok(Self { opening, subjects: event.audience()?.principals().to_vec() })
    }
}

/// How a registration uses an operator enrollment token.
#[derive(Clone, Copy, Debug)]
pub struct EnrollmentUse {
    /// SHA-256 of the token.
    pub token_hash: SecretHash,
    /// The role being registered (must match the token's).
    pub role: Role,
    /// Now (the token must not have expired).
    pub now: Timestamp,
}

/// What one expiry sweep removed ([`Store::remove_expired`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Bearer-token sessions.
    pub sessions: u64,
    /// Authentication challenges.
    pub challenges: u64,
    /// Operator enrollment tokens.
    pub enrollments: u64,
}

impl Swept {
    /// Everything removed.
    pub fn total(&self) -> u64 {
        self.sessions + self.challenges + self.enrollments
    }
}

/// The storage interface of the server.
pub trait Store: Send + Sync + 'static {
    /// Stores a challenge under the hash of its nonce. Need not be durable
    /// when it returns (a challenge lost in a crash only makes its client
    /// ask again), so a flood of challenges costs no flush each.
    fn put_challenge(&self, nonce_hash: &SecretHash, challenge: &Challenge) -> Result<(), StoreError>;
    /// Removes and returns a challenge (atomically: a nonce is used once).
    fn take_challenge(&self, nonce_hash: &SecretHash) -> Result<Option<Challenge>, StoreError>;
    /// Stores a session under the hash of its bearer token.
    fn put_session(&self, token_hash: &SecretHash, session: &Session) -> Result<(), StoreError>;
    /// Looks a session up by the hash of its bearer token.
    fn get_session(&self, token_hash: &SecretHash) -> Result<Option<Session>, StoreError>;
    /// Stores an operator enrollment token (hashed).
    fn put_enrollment(&self, token_hash: &SecretHash, enrollment: &Enrollment) -> Result<(), StoreError>;

    /// Registers a principal, consuming the enrollment token if given, and
    /// appends its log event, all atomically. Returns the log index, which
    /// is also written into the stored principal.
    fn register_principal(
        &self,
        principal: &StoredPrincipal,
        enrollment: Option<EnrollmentUse>,
        event: &LogAppend,
    ) -> Result<u64, StoreError>;
    /// A registered principal.
    fn get_principal(&self, id: &PrincipalId) -> Result<Option<StoredPrincipal>, StoreError>;

    /// Suspends a principal and appends its log event atomically
    /// (`AlreadyExists("suspension")` if it is suspended already), durably.
    /// Its sessions stay stored, so that every later request with one of
    /// them is recognised and refused as the suspended principal's. Returns
    /// the log index and the number of unexpired sessions it had.
    fn suspend_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<(u64, u64), StoreError>;
    /// Deletes every session of a suspended principal (it logs in afresh),
    /// then lifts the suspension and appends its log event atomically;
    /// `NotFound("suspension")` if the principal is not suspended. Durable
    /// before it returns.
    fn reinstate_principal(&self, id: &PrincipalId, event: &LogAppend) -> Result<u64, StoreError>;
    /// Whether the principal is suspended.
    fn is_suspended(&self, id: &PrincipalId) -> Result<bool, StoreError>;

    /// Stores records (metadata + envelope) and their log events atomically:
    /// all or none. Fails with `AlreadyExists` if any record id is taken.
    /// Returns the log indices in order.
    fn put_records(
        &self,
        records: &[(RecordMeta, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<Vec<u64>, StoreError> {
        self.put_batch(&[], records, events)
    }
    /// [`Store::put_records`], storing the batch capsules the records are
    /// sealed under in the same transaction (a capsule already stored is
    /// kept as it is: its id is the digest of its bytes). One flush.
    fn put_batch(
        &self,
        capsules: &[(CapsuleId, Vec<u8>)],
        records: &[(RecordMeta, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<Vec<u64>, StoreError>;
    /// A stored batch capsule (owner-signed, verified on upload).
    fn get_capsule(&self, id: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError>;
    /// The re-encryption of `capsule` under `grant`, if made before.
    fn get_delivered(&self, grant: &GrantId, capsule: &CapsuleId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Appends the `re-encryption served` events of one batched fetch and
    /// stores the capsule re-encryptions it made, in one transaction and
    /// one flush. A re-encryption already stored for its (grant, capsule)
    /// is kept; returns the log indices and, per `delivered` entry, the
    /// bytes stored (the answer must carry those). `grants` are the grants
    /// the events serve under: if one of them was revoked since the fetch
    /// was authorized (its keys are gone; checked in the transaction,
    /// serialized with revocations), nothing is written and the call fails
    /// with `AlreadyRevoked`, so no access is logged, nor answered, after a
    /// revocation. A re-encryption under a revoked grant is never kept.
    #[allow(clippy::type_complexity)]
    fn put_served(
        &self,
        grants: &[GrantId],
        delivered: &[(GrantId, CapsuleId, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<(Vec<u64>, Vec<Vec<u8>>), StoreError>;
    /// A record's metadata and envelope.
    fn get_record(&self, id: &RecordId) -> Result<Option<(RecordMeta, Vec<u8>)>, StoreError>;
    /// Up to `limit` records of `owner`, ordered by id, starting after
    /// record `after` (a page cursor) if given.
    fn list_records(
        &self,
        owner: &PrincipalId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordMeta>, StoreError>;

    /// Stores a grant with its re-encryption key material and log event
    /// atomically. Returns the log index.
    fn put_grant(&self, grant: &StoredGrant, rekeys: &[u8], event: &LogAppend) -> Result<u64, StoreError>;
    /// Marks a grant revoked, stores the revocation, deletes its
    /// re-encryption keys and appends the log event, atomically; then
    /// deletes the capsule re-encryptions made under it.
    fn revoke_grant(&self, id: &GrantId, revocation: &[u8], event: &LogAppend) -> Result<u64, StoreError>;
    /// A grant.
    fn get_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError>;
    /// A grant's re-encryption key material (gone once revoked).
    fn get_rekeys(&self, id: &GrantId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` grants signed by `patient`, ordered by id.
    fn list_grants_by_patient(
        &self,
        patient: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError>;
    /// Up to `limit` grants toward `doctor`, ordered by id.
    fn list_grants_by_doctor(
        &self,
        doctor: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError>;

    /// Appends one event on its own (accesses served, denials). Returns its index.
    fn append_log(&self, event: &LogAppend) -> Result<u64, StoreError>;
    /// Number of log entries.
    fn log_size(&self) -> Result<u64, StoreError>;
    /// Log entries (event + salt) with index in `start..end` (clamped to the
    /// log size).
    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, LeafOpening)>, StoreError>;
    /// Leaf hashes (the public face of the entries) with index in
    /// `start..end` (clamped to the log size).
    fn log_leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<(u64, MerkleHash)>, StoreError>;
    /// Indices of up to `limit` log entries about `subject`, in order,
    /// starting at index `from`.
    fn log_indices_for(&self, subject: &PrincipalId, from: u64, limit: usize)
        -> Result<Vec<u64>, StoreError>;

    /// The RFC 6962 root of the log's first `tree_size` entries.
    fn log_root(&self, tree_size: u64) -> Result<MerkleHash, StoreError>;
    /// Inclusion proof of entry `index` in the tree of `tree_size` entries.
    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, StoreError>;
    /// Consistency proof between two tree sizes.
    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, StoreError>;

    /// Makes every acknowledged write durable (also called on shutdown).
    fn flush(&self) -> Result<(), StoreError>;

    // ---- maintenance (expiry sweep)

    /// Removes every session, challenge and enrollment token whose expiry
    /// is at or before `now` (they are refused from that second on), durably.
    fn remove_expired(&self, now: Timestamp) -> Result<Swept, StoreError>;

    /// Gives back space the store keeps for data no longer referenced (a
    /// revoked grant's keys and re-encryptions, failed requests' values);
    /// returns the bytes freed. sled: compacts its sparse segment files
    /// ([`SledStore::compact_sparse_segments`]); PostgreSQL: nothing, its
    /// autovacuum does this.
    fn reclaim_space(&self) -> Result<u64, StoreError>;

    // ------------------------------------------------ differential privacy

    /// Installs a summary schema and appends its log event atomically;
    /// `AlreadyExists("schema")` if the name is taken (a schema never
    /// changes under stored summaries and ledgers). Returns the log index.
    fn put_schema(&self, schema: &StoredSchema, event: &LogAppend) -> Result<u64, StoreError>;
    /// An installed schema.
    fn get_schema(&self, name: &str) -> Result<Option<StoredSchema>, StoreError>;
    /// Up to `limit` installed schemas, ordered by name.
    fn list_schemas(&self, limit: usize) -> Result<Vec<StoredSchema>, StoreError>;
    /// Stores `patient`'s summary blob for `schema`, replacing any earlier
    /// one, and appends its log event atomically. `NotFound("schema")` if
    /// the schema is not installed. Returns whether a summary was replaced,
    /// and the log index.
    fn put_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        summary: &[u8],
        event: &LogAppend,
    ) -> Result<(bool, u64), StoreError>;
    /// Deletes `patient`'s summary for `schema` and appends its log event
    /// atomically; `NotFound("summary")` (and nothing logged) if none.
    fn delete_summary(
        &self,
        schema: &str,
        patient: &PrincipalId,
        event: &LogAppend,
    ) -> Result<u64, StoreError>;
    /// `patient`'s summary blob for `schema`.
    fn get_summary(&self, schema: &str, patient: &PrincipalId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` summary blobs of `schema`, ordered by patient id.
    fn list_summaries(&self, schema: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
    /// An analyst's ledger for `schema`, if one is stored.
    fn get_ledger(&self, analyst: &PrincipalId, schema: &str) -> Result<Option<Ledger>, StoreError>;
    /// Sets an analyst's total budget for `schema` (keeping what was spent)
    /// and appends its log event atomically. `NotFound("schema")` if the
    /// schema is not installed. Returns the new ledger and the log index.
    fn set_budget(
        &self,
        analyst: &PrincipalId,
        schema: &str,
        budget: Budget,
        event: &LogAppend,
    ) -> Result<(Ledger, u64), StoreError>;
    /// Charges a DP answer: in ONE transaction, re-reads the analyst's
    /// ledger (a fresh one with `default` if none is stored), debits `cost`,
    /// writes the ledger and appends `event`; durable before it returns.
    /// Concurrent charges are serialized, so they can never overspend. A
    /// cost that does not fit is `Overspend` (no ledger, no default budget:
    /// `NoBudget`) and writes nothing. Returns the ledger after the debit
    /// and the log index.
    fn charge_dp_query(
        &self,
        analyst: &PrincipalId,
        schema: &str,
        default: Option<Budget>,
        cost: PrivacyCost,
        event: &LogAppend,
    ) -> Result<(Ledger, u64), StoreError>;
}
