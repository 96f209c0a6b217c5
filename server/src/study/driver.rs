//! The leader's side of preparation and release: it takes pending reports
//! in jobs of up to [`super::JOB_REPORTS`], runs its half of Prio3
//! preparation, sends the helper one request per job, and commits both
//! halves' outcome into the open batch (one transaction and one log entry
//! per job). A job is stored before it is sent, so a crash or an
//! unreachable helper only delays it: the same job (same id) is sent again
//! and the helper answers it from its record.
//!
//! Releases run under the same lock as jobs: every report uploaded before
//! the release request is prepared first, then the batch is charged and
//! logged, then the helper is asked for its noisy share, and only then does
//! the leader add its own noise and sum the two.

use std::time::Duration;

use medrelay_dp::study::{AggregatorRole, PrepError, ReleasedSums, Report};
use medrelay_policy::{LogEvent, StudyEvent};
use medrelay_wire::study::StudyRelease;
use medrelay_wire::ErrorBody;
use rand::rngs::OsRng;
use rand::RngCore as _;

use super::protocol::{
    CollectRequest, CollectResponse, JobReport, JobRequest, JobResponse, JobResult, MAX_COLLECT_BYTES,
};
use super::{AggregatorToken, LoadedStudy, StudyService, JOB_REPORTS};
use crate::log::events;
use crate::store::{ChargeOutcome, CommitOutcome, JobCommit, StoreError, StudyJob};
use crate::{ApiError, AppState, ServeError};

/// How long the leader waits for the helper.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// The leader's connection to the helper.
pub(crate) struct HelperClient {
    agent: ureq::Agent,
    base: String,
    token: AggregatorToken,
}

/// Why a call to the helper failed.
#[derive(Debug)]
pub(crate) enum HelperError {
    /// Transport failure or a 5xx: retry later.
    Unreachable(String),
    /// The helper refused, with its error code.
    Refused { status: u16, code: String, message: String },
    /// The helper answered something that does not decode.
    Protocol(String),
}

impl std::fmt::Display for HelperError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelperError::Unreachable(m) => write!(f, "helper unreachable: {m}"),
            HelperError::Refused { status, code, message } => {
                write!(f, "helper refused ({status} {code}): {message}")
            }
            HelperError::Protocol(m) => write!(f, "helper answered badly: {m}"),
        }
    }
}

impl From<HelperError> for ApiError {
    fn from(e: HelperError) -> Self {
        match e {
            HelperError::Refused { code, message, .. } => match code.as_str() {
                "batch_too_small" => ApiError::Refused { code: "batch_too_small", message },
                "batch_mismatch" => ApiError::Refused { code: "batch_mismatch", message },
                "study_mismatch" => ApiError::Refused { code: "study_mismatch", message },
                _ => ApiError::Refused { code: "helper_refused", message: format!("{code}: {message}") },
            },
            other => ApiError::Refused { code: "helper_unavailable", message: other.to_string() },
        }
    }
}

impl std::fmt::Debug for HelperClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl HelperClient {
    pub(crate) fn new(url: &str, token: AggregatorToken) -> Result<Self, ServeError> {
        let base = medrelay_wire::normalize_base_url(url)
            .map_err(|e| ServeError::Argument(format!("--helper-url: invalid URL {url:?}: {e}")))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HELPER_TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        Ok(Self { agent, base, token })
    }

    fn call(&self, method: &str, path: &str, body: &[u8], limit: u64) -> Result<Vec<u8>, HelperError> {
        let url = format!("{}{path}", self.base);
        let bearer = zeroize::Zeroizing::new(format!("Bearer {}", self.token.expose()));
        let req = if method == "PUT" { self.agent.put(&url) } else { self.agent.post(&url) };
        let mut resp = req
            .header("Authorization", bearer.as_str())
            .header("Content-Type", "application/octet-stream")
            .send(body)
            .map_err(|e| HelperError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let limit = if status == 200 { limit } else { 64 * 1024 };
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| HelperError::Unreachable(e.to_string()))?;
        if status == 200 {
            return Ok(bytes);
        }
        if status >= 500 {
            return Err(HelperError::Unreachable(format!("status {status}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(HelperError::Refused { status, code: b.error, message: b.message }),
            Err(_) => Err(HelperError::Protocol(format!("status {status} without an error body"))),
        }
    }
}

/// Prepares every pending report of every study this leader serves.
pub(crate) fn drive_all(state: &AppState) -> Result<(), ApiError> {
    let Some(svc) = state.study_service() else { return Ok(()) };
    let names: Vec<String> = svc
        .store()
        .list_studies(medrelay_wire::study::MAX_STUDIES_LISTED)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let _work = svc.work()?;
    for name in names {
        if let Some(l) = svc.load(state.store().as_ref(), &name)? {
            drive_study(svc, &l)?;
        }
    }
    Ok(())
}

/// Runs the study's unfinished jobs, then jobs of pending reports until none
/// is left. The caller holds the work lock.
pub(crate) fn drive_study(svc: &StudyService, l: &LoadedStudy) -> Result<usize, ApiError> {
    let name = &l.stored.name;
    let mut prepared = 0;
    for job in svc.store().jobs(name)? {
        prepared += run_job(svc, l, &job)?;
    }
    loop {
        let pending = svc.store().pending_reports(name, JOB_REPORTS)?;
        if pending.is_empty() {
            return Ok(prepared);
        }
        let mut job_id = [0u8; 16];
        OsRng.fill_bytes(&mut job_id);
        let job = StudyJob { job_id, batch: svc.store().open_batch(name)?, reports: pending };
        svc.store().start_job(name, &job)?;
        prepared += run_job(svc, l, &job)?;
    }
}

/// One job: the leader's preparation, the helper's, the commit. Returns the
/// number of reports it settled.
fn run_job(svc: &StudyService, l: &LoadedStudy, job: &StudyJob) -> Result<usize, ApiError> {
    let helper = svc.helper.as_ref().ok_or(ApiError::Internal("a leader without a helper".into()))?;
    let name = &l.stored.name;
    let mut rejected: Vec<([u8; 16], usize)> = Vec::new();
    let mut sent = Vec::with_capacity(job.reports.len());
    let mut states = Vec::with_capacity(job.reports.len());
    let prepared = super::par_map(&job.reports, |(id, bytes)| {
        let report = match Report::decode(bytes) {
            Ok(r) if r.id.0 == *id => r,
            _ => return (*id, Err(PrepError::Malformed)),
        };
        let prepared = report.open_share(AggregatorRole::Leader, &svc.hpke).and_then(|share| {
            l.vdaf.verify_init(
                &l.verify_key,
                AggregatorRole::Leader,
                &report.id.0,
                &report.public_share,
                &share,
            )
        });
        (*id, prepared.map(|p| (report, p)))
    });
    for (id, prepared) in prepared {
        let id = &id;
        match prepared.map(|(report, (st, verifier))| (report, st, verifier)) {
            Ok((report, st, verifier)) => {
                states.push(st);
                sent.push(JobReport {
                    id: *id,
                    time: report.time,
                    public_share: report.public_share,
                    helper_enc: report.helper_share.enc,
                    helper_ciphertext: report.helper_share.ciphertext,
                    leader_verifier: verifier,
                });
            }
            Err(why) => rejected.push((*id, why.index())),
        }
    }
    let mut aggregate = l.vdaf.aggregate_init();
    let mut aggregated = Vec::with_capacity(sent.len());
    if !sent.is_empty() {
        let ids: Vec<[u8; 16]> = sent.iter().map(|r| r.id).collect();
        let request = JobRequest {
            study: name.clone(),
            study_sha256: l.stored.sha256,
            job_id: job.job_id,
            batch: job.batch,
            reports: sent,
        };
        let path = format!("/v1/aggregator/studies/{name}/jobs/{}", hex::encode(job.job_id));
        let answer = helper.call("PUT", &path, &request.encode(), 64 * 1024 * 1024)?;
        let resp = JobResponse::decode(&answer).map_err(|e| HelperError::Protocol(e.to_string()))?;
        if resp.job_id != job.job_id
            || resp.results.len() != ids.len()
            || resp.results.iter().zip(&ids).any(|((a, _), b)| a != b)
        {
            return Err(HelperError::Protocol("the answer does not match the job".into()).into());
        }
        let pairs: Vec<_> = states.into_iter().zip(resp.results).collect();
        let finished = super::par_map(&pairs, |(st, (id, result))| {
            let out = match result {
                JobResult::Continue(msg) => Ok(l.vdaf.finish(st.clone(), msg)),
                JobResult::Reject(why) => Err(*why),
            };
            (*id, out)
        });
        for (id, result) in finished {
            match result {
                Ok(finished) => match finished {
                    Ok(out) => {
                        l.vdaf
                            .accumulate(&mut aggregate, &out)
                            .map_err(|e| ApiError::Internal(e.to_string()))?;
                        aggregated.push(id);
                    }
                    Err(why) => {
                        // The helper aggregated a report the leader cannot:
                        // the batch's counts will differ and its release will
                        // be refused (batch_mismatch), never released partial.
                        tracing::error!(study = %name, report.id = %hex::encode(id), "leader and helper disagree on a report");
                        rejected.push((id, why.index()));
                    }
                },
                Err(why) => rejected.push((id, why.index())),
            }
        }
    }
    let mut counts = [0u32; 5];
    for (_, r) in &rejected {
        if let Some(c) = counts.get_mut(*r) {
            *c += 1;
        }
    }
    let event = events::append(&LogEvent::Study {
        at: crate::Clock::System.now(),
        event: StudyEvent::ReportsAggregated {
            study: name.clone(),
            batch: job.batch,
            job: job.job_id,
            aggregated: u32::try_from(aggregated.len()).unwrap_or(u32::MAX),
            rejected: counts,
        },
    })?;
    let (delta, empty) = l.encoded_delta(&aggregate)?;
    let merge = |current: &[u8]| l.merge_encoded(current, &delta);
    let commit = JobCommit {
        job_id: job.job_id,
        batch: job.batch,
        aggregated: &aggregated,
        rejected: &rejected,
        helper_response: None,
    };
    match svc.store().commit_job(name, &commit, &empty, &merge, &event)? {
        CommitOutcome::Committed(idx) => {
            tracing::info!(study = %name, batch = job.batch, aggregated = aggregated.len(), rejected = rejected.len(), log.index = idx, "study job committed");
            Ok(job.reports.len())
        }
        other => {
            Err(ApiError::Internal(format!("study job {} not committed: {other:?}", hex::encode(job.job_id))))
        }
    }
}

/// Releases `batch`: prepares everything pending, charges and logs the
/// release, collects the helper's noisy share, adds the leader's noise and
/// stores the result. Refusals are typed and change nothing.
pub(crate) fn release(
    state: &AppState,
    svc: &StudyService,
    l: &LoadedStudy,
    batch: u64,
    analyst: medrelay_crypto::PrincipalId,
) -> Result<StudyRelease, ApiError> {
    let helper = svc.helper.as_ref().ok_or(ApiError::Internal("a leader without a helper".into()))?;
    let name = &l.stored.name;
    let _work = svc.work()?;
    drive_study(svc, l)?;
    let (epsilon, rho) = match l.noise.cost {
        medrelay_dp::PrivacyCost::Epsilon(e) => (e, 0.0),
        medrelay_dp::PrivacyCost::Rho(r) => (0.0, r),
    };
    let now = state.clock().now();
    let event = |reports: u64| -> Result<crate::store::LogAppend, StoreError> {
        events::append(&LogEvent::Study {
            at: now,
            event: StudyEvent::BatchReleased {
                study: name.clone(),
                batch,
                reports,
                epsilon,
                rho,
                analyst: Some(analyst),
            },
        })
        .map_err(|e| StoreError::Backend(e.to_string()))
    };
    let charged = match svc.store().charge_release(name, batch, l.def.min_batch_size(), &event)? {
        ChargeOutcome::Charged(s) | ChargeOutcome::Resumed(s) => s,
        ChargeOutcome::NotOpen => return Err(ApiError::NotFound("batch")),
        ChargeOutcome::AlreadyReleased => {
            return Err(ApiError::Refused {
                code: "already_released",
                message: format!("batch {batch} of study {name} was released before; a batch is released once"),
            })
        }
        ChargeOutcome::TooSmall => {
            return Err(ApiError::Refused {
                code: "batch_too_small",
                message: format!(
                    "batch {batch} of study {name} has fewer than the minimum of {} reports; nothing was released",
                    l.def.min_batch_size()
                ),
            })
        }
    };
    tracing::info!(study = %name, batch, analyst = %analyst, log.index = charged.release_log_index, "study release charged");
    let collect = CollectRequest {
        study: name.clone(),
        study_sha256: l.stored.sha256,
        batch,
        reports: charged.reports,
        checksum: charged.checksum,
    };
    let path = format!("/v1/aggregator/studies/{name}/batches/{batch}/collect");
    let answer = helper.call("POST", &path, &collect.encode(), MAX_COLLECT_BYTES as u64 + 64)?;
    let helper_share = CollectResponse::decode(&answer).map_err(|e| HelperError::Protocol(e.to_string()))?;
    if helper_share.batch != batch || helper_share.reports != charged.reports {
        return Err(HelperError::Protocol("the helper answered for another batch".into()).into());
    }
    let internal = |e: &dyn std::fmt::Display| ApiError::Internal(format!("study release: {e}"));
    let helper_agg =
        l.vdaf.decode_aggregate(&helper_share.share).map_err(|e| HelperError::Protocol(e.to_string()))?;
    let mut own = l.vdaf.decode_aggregate(&charged.aggregate).map_err(|e| internal(&e))?;
    let lens = medrelay_dp::study::Group::ALL.map(|g| l.encoding.group_len(g));
    let noise = l.noise.sample(lens).map_err(|e| internal(&e))?;
    l.vdaf.add_noise(&mut own, &noise).map_err(|e| internal(&e))?;
    let sums = l.vdaf.unshard(&own, &helper_agg, charged.reports).map_err(|e| internal(&e))?;
    let release = StudyRelease {
        study: name.clone(),
        study_sha256: hex::encode(l.stored.sha256),
        batch,
        sums: ReleasedSums { releases: 1, sums },
        noise: l.noise.clone(),
        rejected: rejected_map(&charged.rejected),
        log_index: charged.release_log_index,
    };
    let bytes = serde_json::to_vec(&release).map_err(|e| internal(&e))?;
    svc.store().complete_release(name, batch, &bytes)?;
    tracing::info!(study = %name, batch, "study batch released");
    Ok(release)
}

/// Rejection counts by reason code.
pub(crate) fn rejected_map(counts: &[u32; 5]) -> std::collections::BTreeMap<String, u32> {
    PrepError::ALL.iter().map(|r| (r.code().to_owned(), counts[r.index()])).collect()
}
