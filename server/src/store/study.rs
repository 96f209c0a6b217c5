//! Storage of private studies ([`StudyStore`]): definitions, the leader's
//! pending reports, preparation jobs, per-batch aggregate shares and
//! releases, replay markers and per-patient quotas.
//!
//! Every change that has an audit event commits with it in one
//! transaction, durable before the call returns; decisions that depend on
//! stored state (is this id new? is this batch still open? is it big
//! enough?) are taken under the store's write lock from committed state, so
//! two concurrent requests cannot both pass a check that only one may pass.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{DecodeError, PrincipalId};
use medrelay_dp::study::MAX_STUDY_BYTES;
use sha2::{Digest, Sha256};

use super::{LogAppend, StoreError};

const V1: u8 = 1;
const NAME_MAX: usize = 64;
/// Largest stored aggregate or release blob.
const MAX_AGGREGATE_BYTES: usize = 4 * 1024 * 1024;
/// Most reports in one preparation job.
pub const MAX_JOB_REPORTS: usize = 2000;

/// A report id (the Prio3 nonce).
pub type ReportIdBytes = [u8; 16];
/// A change of a stored blob computed under the store's write lock (sums an
/// aggregate, adds noise).
pub type Transform<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, StoreError> + Sync + 'a;
/// A helper's kept job answer: SHA-256 of the request and the response.
pub type KeptResponse = ([u8; 32], Vec<u8>);

/// What the leader states about a batch it asks the helper to release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectCheck {
    /// The batch.
    pub batch: u64,
    /// Reports the leader aggregated.
    pub reports: u64,
    /// Their checksum.
    pub checksum: [u8; 32],
    /// The study's minimum batch size.
    pub min_reports: u64,
}

/// An installed study definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStudy {
    /// The study's name.
    pub name: String,
    /// Its schema's name.
    pub schema: String,
    /// The definition's canonical JSON.
    pub json: Vec<u8>,
    /// SHA-256 of `json`.
    pub sha256: [u8; 32],
    /// Log index of the `study added` event (set by the store).
    pub log_index: u64,
}

impl StoredStudy {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSST", V1, 160 + self.json.len());
        e.str(&self.name).str(&self.schema).bytes(&self.json).fixed(&self.sha256).u64(self.log_index);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSST", &[V1], MAX_STUDY_BYTES + 512)?;
            let name = d.str(NAME_MAX)?.to_owned();
            let schema = d.str(NAME_MAX)?.to_owned();
            let json = d.bytes(MAX_STUDY_BYTES)?.to_vec();
            let sha256 = d.array()?;
            let log_index = d.u64()?;
            d.finish()?;
            Ok(Self { name, schema, json, sha256, log_index })
        })()
        .map_err(|_| StoreError::Corrupt("study"))
    }
}

/// Where a batch is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStatus {
    /// Collecting reports.
    Open,
    /// Leader: the release is charged and logged; the noisy result is being
    /// assembled (a retry finishes it without charging again).
    Charged,
    /// Released: no report goes in any more, and no second release.
    Released,
}

/// One batch's state on one aggregator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchState {
    /// Open, charged or released.
    pub status: BatchStatus,
    /// Reports aggregated.
    pub reports: u64,
    /// XOR of SHA-256 of the aggregated report ids (both aggregators must agree).
    pub checksum: [u8; 32],
    /// Reports rejected, per `medrelay_dp::study::PrepError::ALL` reason.
    pub rejected: [u32; 5],
    /// This aggregator's encoded aggregate share (without noise).
    pub aggregate: Vec<u8>,
    /// Once released: the leader's encoded release, or the helper's noisy share.
    pub release: Vec<u8>,
    /// Log index of the `batch released` event (0 until charged).
    pub release_log_index: u64,
}

impl BatchState {
    /// A fresh open batch with an empty aggregate.
    pub fn open(empty_aggregate: Vec<u8>) -> Self {
        Self {
            status: BatchStatus::Open,
            reports: 0,
            checksum: [0; 32],
            rejected: [0; 5],
            aggregate: empty_aggregate,
            release: Vec::new(),
            release_log_index: 0,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSBA", V1, 128 + self.aggregate.len() + self.release.len());
        let status = match self.status {
            BatchStatus::Open => 0,
            BatchStatus::Charged => 1,
            BatchStatus::Released => 2,
        };
        e.u8(status).u64(self.reports).fixed(&self.checksum);
        for r in self.rejected {
            e.u32(r);
        }
        e.bytes(&self.aggregate).bytes(&self.release).u64(self.release_log_index);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSBA", &[V1], 2 * MAX_AGGREGATE_BYTES + 256)?;
            let status = match d.u8()? {
                0 => BatchStatus::Open,
                1 => BatchStatus::Charged,
                2 => BatchStatus::Released,
                _ => return Err(DecodeError::Invalid("batch status")),
            };
            let reports = d.u64()?;
            let checksum = d.array()?;
            let mut rejected = [0u32; 5];
            for r in &mut rejected {
                *r = d.u32()?;
            }
            let aggregate = d.bytes(MAX_AGGREGATE_BYTES)?.to_vec();
            let release = d.bytes(MAX_AGGREGATE_BYTES)?.to_vec();
            let release_log_index = d.u64()?;
            d.finish()?;
            Ok(Self { status, reports, checksum, rejected, aggregate, release, release_log_index })
        })()
        .map_err(|_| StoreError::Corrupt("study batch"))
    }
}

/// A leader's preparation job: reports of the pending queue assigned to one
/// batch. The job record keeps only their ids (the reports stay where the
/// upload stored them) until the helper's answer is committed, which
/// deletes both; a crash in between resumes the same job, which the helper
/// answers idempotently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyJob {
    /// The job id.
    pub job_id: [u8; 16],
    /// The batch it feeds.
    pub batch: u64,
    /// The reports (id, encoded report).
    pub reports: Vec<(ReportIdBytes, Vec<u8>)>,
}

/// The stored form of a job: its id, batch and report ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRecord {
    pub(crate) job_id: [u8; 16],
    pub(crate) batch: u64,
    pub(crate) ids: Vec<ReportIdBytes>,
}

impl JobRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSJB", V1, 64 + 16 * self.ids.len());
        e.fixed(&self.job_id).u64(self.batch).u32(u32::try_from(self.ids.len()).unwrap_or(u32::MAX));
        for id in &self.ids {
            e.fixed(id);
        }
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSJB", &[V1], MAX_JOB_REPORTS * 16 + 64)?;
            let job_id = d.array()?;
            let batch = d.u64()?;
            let n = usize::try_from(d.u32()?).map_err(|_| DecodeError::Invalid("job size"))?;
            if n > MAX_JOB_REPORTS {
                return Err(DecodeError::Invalid("job size"));
            }
            let ids = (0..n).map(|_| d.array()).collect::<Result<_, _>>()?;
            d.finish()?;
            Ok(Self { job_id, batch, ids })
        })()
        .map_err(|_| StoreError::Corrupt("study job"))
    }
}

/// What happened to one uploaded report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Stored for preparation.
    Accepted,
    /// Its id was uploaded before (or twice in this request).
    Replayed,
    /// The patient has used up the study's reports per patient.
    OverQuota,
}

/// One prepared job to commit into a batch.
#[derive(Debug)]
pub struct JobCommit<'a> {
    /// The job id.
    pub job_id: [u8; 16],
    /// The batch.
    pub batch: u64,
    /// Reports aggregated (their output shares are in `merge`'s result).
    pub aggregated: &'a [ReportIdBytes],
    /// Reports rejected and why (`PrepError::index`).
    pub rejected: &'a [(ReportIdBytes, usize)],
    /// Helper: mark every report of the job seen and keep this response
    /// (request hash, encoded response) for retries. Leader: `None` (the
    /// job record is deleted instead).
    pub helper_response: Option<([u8; 32], &'a [u8])>,
}

/// What [`StudyStore::commit_job`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed; the log index of its event.
    Committed(u64),
    /// The batch is no longer open: nothing written.
    BatchClosed,
    /// Helper: a report of the job was aggregated by an earlier job:
    /// nothing written.
    Replayed,
}

/// What [`StudyStore::charge_release`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The batch asked for is not open yet.
    NotOpen,
    /// Charged and logged now (the batch is closed to new jobs).
    Charged(BatchState),
    /// Charged by an earlier attempt that did not finish: resume it.
    Resumed(BatchState),
    /// Released before: a second release is refused.
    AlreadyReleased,
    /// Fewer reports than the minimum: nothing changed.
    TooSmall,
}

/// What [`StudyStore::helper_release`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperReleaseOutcome {
    /// The noisy share (released now, or the same bytes again on a retry of
    /// the same collection).
    Released(Vec<u8>),
    /// The leader's report count or checksum differs from this batch's:
    /// nothing released.
    Mismatch,
    /// Fewer reports than the minimum: nothing released.
    TooSmall,
}

/// Storage of the private-study service (both aggregator roles).
pub trait StudyStore: Send + Sync + 'static {
    /// Installs a study and appends its log event atomically;
    /// `AlreadyExists("study")` if the name is taken. Returns the log index.
    fn put_study(&self, study: &StoredStudy, event: &LogAppend) -> Result<u64, StoreError>;
    /// An installed study.
    fn get_study(&self, name: &str) -> Result<Option<StoredStudy>, StoreError>;
    /// Up to `limit` studies, by name.
    fn list_studies(&self, limit: usize) -> Result<Vec<StoredStudy>, StoreError>;

    /// Leader: stores an upload. Under the write lock, per report in order:
    /// an id seen before (or earlier in `reports`) is `Replayed`; beyond the
    /// patient's remaining `quota` it is `OverQuota`; otherwise it is stored
    /// as pending, its id marked seen and the patient's count raised. The
    /// accepted reports and `event(accepted, refused_before + refused)` commit
    /// in one transaction, durable before return.
    fn upload_reports(
        &self,
        study: &str,
        patient: &PrincipalId,
        quota: u32,
        reports: &[(ReportIdBytes, Vec<u8>)],
        refused_before: u32,
        event: &(dyn Fn(u32, u32) -> Result<LogAppend, StoreError> + Sync),
    ) -> Result<(Vec<UploadOutcome>, u64), StoreError>;
    /// Leader: up to `limit` pending reports.
    fn pending_reports(&self, study: &str, limit: usize)
        -> Result<Vec<(ReportIdBytes, Vec<u8>)>, StoreError>;
    /// Leader: the batch new jobs go into (0 at first).
    fn open_batch(&self, study: &str) -> Result<u64, StoreError>;
    /// Leader: records the job (its report ids, which must all be pending:
    /// else `NotFound("pending report")`), durably.
    fn start_job(&self, study: &str, job: &StudyJob) -> Result<(), StoreError>;
    /// Leader: started jobs not yet committed, with their reports.
    fn jobs(&self, study: &str) -> Result<Vec<StudyJob>, StoreError>;

    /// Helper: which of `ids` were aggregated before.
    fn seen_reports(&self, study: &str, ids: &[ReportIdBytes]) -> Result<Vec<bool>, StoreError>;
    /// Helper: the stored (request hash, response) of a job already committed.
    fn job_response(&self, study: &str, job: &[u8; 16]) -> Result<Option<KeptResponse>, StoreError>;

    /// Commits a prepared job into its batch with `event`, atomically, under
    /// the write lock: the batch (fresh with `empty` aggregate if absent) must
    /// be open; `merge` turns its stored aggregate into the new one; counts,
    /// checksum and rejections are added. Helper: every report of the job
    /// must be unseen and is marked seen, and the response is kept. Leader:
    /// the job record and the job's pending reports are deleted.
    fn commit_job(
        &self,
        study: &str,
        commit: &JobCommit<'_>,
        empty: &[u8],
        merge: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<CommitOutcome, StoreError>;

    /// A batch's state.
    fn get_batch(&self, study: &str, batch: u64) -> Result<Option<BatchState>, StoreError>;
    /// Up to `limit` batches, by number.
    fn list_batches(&self, study: &str, limit: usize) -> Result<Vec<(u64, BatchState)>, StoreError>;

    /// Leader: charges the release of `batch` with `event(reports)` (the
    /// cost, logged), under the write lock. The open batch, with at least
    /// `min_reports` reports, becomes `Charged` and the next batch opens,
    /// durably, before anything is released; an earlier batch charged but
    /// not completed is `Resumed` (no second charge); a released one is
    /// `AlreadyReleased`.
    fn charge_release(
        &self,
        study: &str,
        batch: u64,
        min_reports: u64,
        event: &(dyn Fn(u64) -> Result<LogAppend, StoreError> + Sync),
    ) -> Result<ChargeOutcome, StoreError>;
    /// Leader: stores the release of a charged batch and marks it released.
    fn complete_release(&self, study: &str, batch: u64, release: &[u8]) -> Result<BatchState, StoreError>;

    /// Helper: releases `check.batch` once, under the write lock: its count
    /// and checksum must equal the leader's, its count reach the minimum;
    /// `noisy` computes the noisy share, which is stored with `event` in one
    /// durable transaction before it is returned. A retry with the same
    /// count and checksum gets the same bytes (no new noise).
    fn helper_release(
        &self,
        study: &str,
        check: &CollectCheck,
        noisy: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<HelperReleaseOutcome, StoreError>;
}

// The decisions every backend takes before it writes, from committed state
// read under the write lock. Each backend reads the state its own way and
// passes it in (a replay marker as a `seen` lookup); the function decides,
// and the backend writes what it returns.

/// Adds a report id to a batch checksum: XOR of SHA-256 of the ids.
pub(crate) fn checksum_add(sum: &mut [u8; 32], id: &ReportIdBytes) {
    let h: [u8; 32] = Sha256::digest(id).into();
    for (s, x) in sum.iter_mut().zip(h) {
        *s ^= x;
    }
}

/// What [`decide_upload`] decided for an upload.
#[derive(Debug)]
pub(crate) struct UploadDecision {
    /// Each report's outcome, in order.
    pub(crate) outcomes: Vec<UploadOutcome>,
    /// Reports accepted now.
    pub(crate) accepted: u32,
    /// Reports refused, counting the `refused_before` of the request.
    pub(crate) refused: u32,
    /// The patient's count of reports after this upload.
    pub(crate) used_after: u64,
}

/// [`StudyStore::upload_reports`]'s decision, per report in order: an id
/// `seen` before (or earlier in `reports`) is `Replayed`; beyond what is
/// left of `quota` once `used` is counted, `OverQuota`; else `Accepted`.
pub(crate) fn decide_upload<E: From<StoreError>>(
    quota: u32,
    used: u64,
    reports: &[(ReportIdBytes, Vec<u8>)],
    refused_before: u32,
    mut seen: impl FnMut(&ReportIdBytes) -> Result<bool, E>,
) -> Result<UploadDecision, E> {
    let mut left = u64::from(quota).saturating_sub(used);
    let mut outcomes = Vec::with_capacity(reports.len());
    let mut this_request = std::collections::HashSet::new();
    for (id, _) in reports {
        let outcome = if !this_request.insert(*id) || seen(id)? {
            UploadOutcome::Replayed
        } else if left == 0 {
            UploadOutcome::OverQuota
        } else {
            left -= 1;
            UploadOutcome::Accepted
        };
        outcomes.push(outcome);
    }
    let accepted = outcomes.iter().filter(|o| **o == UploadOutcome::Accepted).count();
    let refused = refused_before.saturating_add(u32::try_from(reports.len() - accepted).unwrap_or(u32::MAX));
    let accepted = u32::try_from(accepted).map_err(|_| StoreError::Backend("upload size".into()))?;
    Ok(UploadDecision { outcomes, accepted, refused, used_after: used + u64::from(accepted) })
}

/// Every report id of a job: aggregated, then rejected.
pub(crate) fn job_report_ids<'a>(commit: &'a JobCommit<'_>) -> impl Iterator<Item = &'a ReportIdBytes> + 'a {
    commit.aggregated.iter().chain(commit.rejected.iter().map(|(id, _)| id))
}

/// [`StudyStore::commit_job`]'s decision on the batch's stored `state`
/// (fresh with `empty` if absent): the new state to write, or why nothing
/// is written (the batch is closed; helper: a report was `seen` before).
pub(crate) fn decide_commit<E: From<StoreError>>(
    state: Option<BatchState>,
    commit: &JobCommit<'_>,
    empty: &[u8],
    merge: &Transform<'_>,
    mut seen: impl FnMut(&ReportIdBytes) -> Result<bool, E>,
) -> Result<Result<BatchState, CommitOutcome>, E> {
    let mut state = state.unwrap_or_else(|| BatchState::open(empty.to_vec()));
    if state.status != BatchStatus::Open {
        return Ok(Err(CommitOutcome::BatchClosed));
    }
    if commit.helper_response.is_some() {
        for id in job_report_ids(commit) {
            if seen(id)? {
                return Ok(Err(CommitOutcome::Replayed));
            }
        }
    }
    state.aggregate = merge(&state.aggregate)?;
    state.reports += commit.aggregated.len() as u64;
    for id in commit.aggregated {
        checksum_add(&mut state.checksum, id);
    }
    for (_, reason) in commit.rejected {
        if let Some(r) = state.rejected.get_mut(*reason) {
            *r = r.saturating_add(1);
        }
    }
    Ok(Ok(state))
}

/// [`StudyStore::charge_release`]'s decision, given the `open` batch and
/// the stored `state` of `batch`: the batch to charge (already marked
/// `Charged`; its log index is set when the event is appended), or the
/// outcome without a write.
pub(crate) fn decide_charge(
    open: u64,
    batch: u64,
    state: Option<BatchState>,
    min_reports: u64,
) -> Result<BatchState, ChargeOutcome> {
    if batch > open {
        return Err(ChargeOutcome::NotOpen);
    }
    if batch < open {
        return Err(match state {
            Some(s) if s.status == BatchStatus::Charged => ChargeOutcome::Resumed(s),
            _ => ChargeOutcome::AlreadyReleased,
        });
    }
    match state {
        Some(mut s) if s.status == BatchStatus::Open && s.reports >= min_reports => {
            s.status = BatchStatus::Charged;
            Ok(s)
        }
        _ => Err(ChargeOutcome::TooSmall),
    }
}

/// [`StudyStore::complete_release`]'s check: the stored batch, charged,
/// becomes released with `release`.
pub(crate) fn decide_completion(state: Option<BatchState>, release: &[u8]) -> Result<BatchState, StoreError> {
    let mut s = state.ok_or(StoreError::NotFound("batch"))?;
    if s.status != BatchStatus::Charged {
        return Err(StoreError::Backend("completing a release that was not charged".into()));
    }
    s.status = BatchStatus::Released;
    s.release = release.to_vec();
    Ok(s)
}

/// [`StudyStore::helper_release`]'s decision on the batch's stored
/// `state`: the batch to release now (marked `Released`, with its noisy
/// share; its log index is set when the event is appended), or the outcome
/// without a write (a mismatch, too few reports, or the share released
/// before, returned again).
pub(crate) fn decide_helper_release(
    state: Option<BatchState>,
    check: &CollectCheck,
    noisy: &Transform<'_>,
) -> Result<Result<BatchState, HelperReleaseOutcome>, StoreError> {
    let Some(mut s) = state else {
        return Ok(Err(if check.reports == 0 {
            HelperReleaseOutcome::TooSmall
        } else {
            HelperReleaseOutcome::Mismatch
        }));
    };
    if s.reports != check.reports
        || !bool::from(subtle::ConstantTimeEq::ct_eq(&s.checksum[..], &check.checksum[..]))
    {
        return Ok(Err(HelperReleaseOutcome::Mismatch));
    }
    if s.status == BatchStatus::Released {
        return Ok(Err(HelperReleaseOutcome::Released(s.release)));
    }
    if s.reports < check.min_reports {
        return Ok(Err(HelperReleaseOutcome::TooSmall));
    }
    s.release = noisy(&s.aggregate)?;
    s.status = BatchStatus::Released;
    Ok(Ok(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_shared_decisions_follow_the_trait_rules() {
        // Upload: a repeat in the request and an id seen before are
        // replays; past the quota, over quota; refusals add to those before.
        let reports: Vec<(ReportIdBytes, Vec<u8>)> =
            [[1; 16], [2; 16], [1; 16], [3; 16], [4; 16]].iter().map(|id| (*id, vec![0])).collect();
        let d = decide_upload::<StoreError>(3, 1, &reports, 2, |id| Ok(*id == [3; 16])).unwrap();
        use UploadOutcome::*;
        assert_eq!(d.outcomes, [Accepted, Accepted, Replayed, Replayed, OverQuota]);
        assert_eq!((d.accepted, d.refused, d.used_after), (2, 5, 3));
        let failed = decide_upload(3, 0, &reports, 0, |_| Err(StoreError::Corrupt("seen")));
        assert!(matches!(failed, Err(StoreError::Corrupt("seen"))));

        // Commit: closed batches and (helper) replays write nothing.
        let merge = |a: &[u8]| -> Result<Vec<u8>, StoreError> { Ok([a, &b"+"[..]].concat()) };
        let aggregated = [[7; 16]];
        let rejected = [([8; 16], 1)];
        let commit = JobCommit {
            job_id: [9; 16],
            batch: 0,
            aggregated: &aggregated,
            rejected: &rejected,
            helper_response: Some(([0; 32], b"r")),
        };
        let mut released = BatchState::open(b"a".to_vec());
        released.status = BatchStatus::Released;
        let closed = decide_commit::<StoreError>(Some(released), &commit, b"e", &merge, |_| Ok(false));
        assert_eq!(closed.unwrap().unwrap_err(), CommitOutcome::BatchClosed);
        let replay = decide_commit::<StoreError>(None, &commit, b"e", &merge, |id| Ok(*id == [8; 16]));
        assert_eq!(replay.unwrap().unwrap_err(), CommitOutcome::Replayed);
        let s = decide_commit::<StoreError>(None, &commit, b"e", &merge, |_| Ok(false)).unwrap().unwrap();
        let mut sum = [0; 32];
        checksum_add(&mut sum, &[7; 16]);
        assert_eq!(
            (s.aggregate.as_slice(), s.reports, s.checksum, s.rejected),
            (&b"e+"[..], 1, sum, [0, 1, 0, 0, 0])
        );

        // Charge: not open, too small, charged, resumed, released.
        assert_eq!(decide_charge(0, 1, None, 1).unwrap_err(), ChargeOutcome::NotOpen);
        assert_eq!(decide_charge(0, 0, None, 1).unwrap_err(), ChargeOutcome::TooSmall);
        assert_eq!(decide_charge(0, 0, Some(s.clone()), 2).unwrap_err(), ChargeOutcome::TooSmall);
        let charged = decide_charge(0, 0, Some(s.clone()), 1).unwrap();
        assert_eq!(charged.status, BatchStatus::Charged);
        assert_eq!(
            decide_charge(1, 0, Some(charged.clone()), 1).unwrap_err(),
            ChargeOutcome::Resumed(charged.clone())
        );
        assert_eq!(decide_charge(1, 0, Some(s.clone()), 1).unwrap_err(), ChargeOutcome::AlreadyReleased);
        assert!(matches!(decide_completion(None, b"x"), Err(StoreError::NotFound("batch"))));
        assert!(matches!(decide_completion(Some(s.clone()), b"x"), Err(StoreError::Backend(_))));
        let done = decide_completion(Some(charged), b"x").unwrap();
        assert_eq!((done.status, done.release.as_slice()), (BatchStatus::Released, &b"x"[..]));

        // Helper release: the leader's count and checksum must match.
        let noisy = |a: &[u8]| -> Result<Vec<u8>, StoreError> { Ok([a, &b"~"[..]].concat()) };
        let check = CollectCheck { batch: 0, reports: 1, checksum: sum, min_reports: 1 };
        let none = CollectCheck { reports: 0, ..check };
        assert_eq!(
            decide_helper_release(None, &none, &noisy).unwrap().unwrap_err(),
            HelperReleaseOutcome::TooSmall
        );
        assert_eq!(
            decide_helper_release(None, &check, &noisy).unwrap().unwrap_err(),
            HelperReleaseOutcome::Mismatch
        );
        let other = CollectCheck { checksum: [1; 32], ..check };
        let got = decide_helper_release(Some(s.clone()), &other, &noisy).unwrap();
        assert_eq!(got.unwrap_err(), HelperReleaseOutcome::Mismatch);
        let big = CollectCheck { min_reports: 2, ..check };
        let got = decide_helper_release(Some(s.clone()), &big, &noisy).unwrap();
        assert_eq!(got.unwrap_err(), HelperReleaseOutcome::TooSmall);
        let out = decide_helper_release(Some(s), &check, &noisy).unwrap().unwrap();
        assert_eq!((out.status, out.release.as_slice()), (BatchStatus::Released, &b"e+~"[..]));
        let again = decide_helper_release(Some(out), &check, &noisy).unwrap();
        assert_eq!(again.unwrap_err(), HelperReleaseOutcome::Released(b"e+~".to_vec()));
    }

    #[test]
    fn study_blobs_round_trip_and_reject_truncation() {
        let s = StoredStudy {
            name: "s".into(),
            schema: "h".into(),
            json: b"{}".to_vec(),
            sha256: [1; 32],
            log_index: 3,
        };
        assert_eq!(StoredStudy::decode(&s.encode()).unwrap(), s);
        let mut b = BatchState::open(vec![1, 2, 3]);
        b.status = BatchStatus::Charged;
        b.rejected = [1, 2, 3, 4, 5];
        assert_eq!(BatchState::decode(&b.encode()).unwrap(), b);
        let j = JobRecord { job_id: [4; 16], batch: 7, ids: vec![[5; 16], [6; 16]] };
        assert_eq!(JobRecord::decode(&j.encode()).unwrap(), j);
        type Dec = fn(&[u8]) -> bool;
        let cases: [(Vec<u8>, Dec); 3] = [
            (s.encode(), |x| StoredStudy::decode(x).is_ok()),
            (b.encode(), |x| BatchState::decode(x).is_ok()),
            (j.encode(), |x| JobRecord::decode(x).is_ok()),
        ];
        for (blob, ok) in cases {
            for n in 0..blob.len() {
                assert!(!ok(&blob[..n]), "prefix {n}");
            }
            let mut long = blob.clone();
            long.push(0);
            assert!(!ok(&long));
        }
    }
}
