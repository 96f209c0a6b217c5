//! A backend-neutral dump of a store, row by row: what `medrelay-server
//! migrate` reads from sled ([`super::SledStore::export`]) and writes into
//! PostgreSQL ([`super::PgStore::import`]). Values stay the stored,
//! versioned blobs; the log is carried as its entries (openings and
//! subjects) in index order, and the destination rebuilds its Merkle tree
//! from them, so equal roots prove the entries were copied exactly.

use medrelay_crypto::{CapsuleId, GrantId, PrincipalId};

use super::{LogAppend, SecretHash};

/// One stored item.
#[derive(Debug)]
#[non_exhaustive]
pub enum Row {
    /// An authentication challenge (encoded).
    Challenge(SecretHash, Vec<u8>),
    /// A session (encoded).
    Session(SecretHash, Vec<u8>),
    /// An enrollment token (encoded).
    Enrollment(SecretHash, Vec<u8>),
    /// A principal (encoded).
    Principal(Vec<u8>),
    /// A suspension and the log index of its event.
    Suspension(PrincipalId, u64),
    /// A batch capsule (signed, as uploaded).
    Capsule(CapsuleId, Vec<u8>),
    /// A record: encoded metadata and envelope.
    Record(Vec<u8>, Vec<u8>),
    /// A grant (encoded).
    Grant(Vec<u8>),
    /// A grant's re-encryption key material.
    Rekeys(GrantId, Vec<u8>),
    /// A capsule's stored re-encryption under a grant.
    Delivered(GrantId, CapsuleId, Vec<u8>),
    /// A log entry, in index order starting at 0.
    LogEntry(u64, LogAppend),
    /// A DP schema (encoded).
    Schema(Vec<u8>),
    /// A DP summary: schema, patient, blob.
    Summary(String, PrincipalId, Vec<u8>),
    /// A DP ledger: analyst, schema, encoded ledger.
    Ledger(PrincipalId, String, Vec<u8>),
    /// A study definition (encoded).
    Study(Vec<u8>),
    /// A pending report: study, id, report.
    StudyPending(String, [u8; 16], Vec<u8>),
    /// A replay marker: study, report id.
    StudySeen(String, [u8; 16]),
    /// Reports a patient uploaded to a study.
    StudyQuota(String, PrincipalId, u64),
    /// A study's open batch.
    StudyOpenBatch(String, u64),
    /// A started job: study, job id, encoded job record.
    StudyJob(String, [u8; 16], Vec<u8>),
    /// A helper's kept job response: study, job id, request hash, response.
    StudyJobResponse(String, [u8; 16], [u8; 32], Vec<u8>),
    /// A batch: study, number, encoded state.
    StudyBatch(String, u64, Vec<u8>),
}

/// How many rows of each kind a copy moved (what `migrate` reports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpCounts {
    /// Principals.
    pub principals: u64,
    /// Records.
    pub records: u64,
    /// Grants.
    pub grants: u64,
    /// Log entries.
    pub log_entries: u64,
    /// Sessions, challenges and enrollment tokens.
    pub secrets: u64,
    /// DP schemas, summaries and ledgers.
    pub dp: u64,
    /// Study rows of every kind.
    pub study: u64,
    /// Batch capsules and their stored re-encryptions.
    pub capsules: u64,
    /// Everything else (suspensions, re-encryption keys).
    pub other: u64,
}

impl DumpCounts {
    /// Counts `row`.
    pub fn add(&mut self, row: &Row) {
        let slot = match row {
            Row::Principal(_) => &mut self.principals,
            Row::Record(..) => &mut self.records,
            Row::Capsule(..) | Row::Delivered(..) => &mut self.capsules,
            Row::Grant(_) => &mut self.grants,
            Row::LogEntry(..) => &mut self.log_entries,
            Row::Challenge(..) | Row::Session(..) | Row::Enrollment(..) => &mut self.secrets,
            Row::Schema(_) | Row::Summary(..) | Row::Ledger(..) => &mut self.dp,
            Row::Study(_)
            | Row::StudyPending(..)
            | Row::StudySeen(..)
            | Row::StudyQuota(..)
            | Row::StudyOpenBatch(..)
            | Row::StudyJob(..)
            | Row::StudyJobResponse(..)
            | Row::StudyBatch(..) => &mut self.study,
            Row::Suspension(..) | Row::Rekeys(..) => &mut self.other,
        };
        *slot += 1;
    }
}
