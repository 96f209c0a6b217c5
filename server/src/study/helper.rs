//! The helper's routes (`/v1/aggregator/…`), reachable with the aggregator
//! token only:
//!
//! - `PUT /v1/aggregator/studies/{study}/jobs/{job}`: prepares a job's
//!   reports (replay check, window check, HPKE open, Prio3 verification with
//!   the leader's verifier share), sums the valid output shares into the
//!   batch and keeps the answer, in one durable transaction with a
//!   `study reports aggregated` entry in the helper's own log.
//! - `POST /v1/aggregator/studies/{study}/batches/{batch}/collect`: adds the
//!   helper's noise to its aggregate share and returns it, once, if the
//!   leader's report count and checksum match and the batch is big enough;
//!   logged with its cost before it leaves.

use actix_web::{web, HttpRequest, HttpResponse};
use medrelay_crypto::hpke::HpkeCiphertext;
use medrelay_dp::study::{AggregatorRole, Group, PrepError};
use medrelay_policy::{LogEvent, StudyEvent};
use sha2::{Digest, Sha256};

use super::protocol::{
    CollectRequest, CollectResponse, JobRequest, JobResponse, JobResult, MAX_JOB_BODY_BYTES,
};
use super::{check_study_name, LoadedStudy, StudyService};
use crate::log::events;
use crate::store::{CommitOutcome, HelperReleaseOutcome, JobCommit, StoreError};
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/aggregator/studies/{study}/jobs/{job}", web::put().to(job))
        .route("/aggregator/studies/{study}/batches/{batch}/collect", web::post().to(collect));
}

/// Reads a binary body of at most `limit` bytes (`413` beyond).
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt as _;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidParameter(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The helper's service, if this server is the helper and the request
/// carries the leader's token (every failure: the same `401`).
fn authorized<'a>(state: &'a AppState, req: &HttpRequest) -> Result<&'a StudyService, ApiError> {
    let svc = state
        .study_service()
        .filter(|s| s.role() == AggregatorRole::Helper)
        .ok_or(ApiError::NotFound("aggregator service"))?;
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if presented.len() > 512 || !svc.token.matches(presented.trim()) {
        tracing::warn!("aggregator request with a wrong token");
        return Err(ApiError::Unauthorized);
    }
    Ok(svc)
}

fn load(
    state: &AppState,
    svc: &StudyService,
    name: &str,
    sha: &[u8; 32],
) -> Result<std::sync::Arc<LoadedStudy>, ApiError> {
    let l = svc.load(state.store().as_ref(), name)?.ok_or(ApiError::NotFound("study"))?;
    if &l.stored.sha256 != sha {
        return Err(ApiError::Refused {
            code: "study_mismatch",
            message: format!("the leader's definition of study {name} differs from the one installed here"),
        });
    }
    Ok(l)
}

async fn job(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorized(&state, &req)?;
    let body = read_body(payload, MAX_JOB_BODY_BYTES).await?;
    let (name, job_hex) = path.into_inner();
    check_study_name(&name)?;
    let job_id: [u8; 16] = hex::decode(&job_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::InvalidParameter("job id must be 32 hex digits".into()))?;
    let st = state.clone();
    let answer = web::block(move || -> Result<Vec<u8>, ApiError> {
        let svc = authorized_blocking(&st)?;
        let request = JobRequest::decode(&body).map_err(|e| ApiError::field("job", e))?;
        if request.study != name || request.job_id != job_id {
            return Err(ApiError::field("job", "the body names another study or job than the path"));
        }
        let l = load(&st, svc, &name, &request.study_sha256)?;
        let request_hash: [u8; 32] = Sha256::digest(&body).into();
        if let Some((hash, response)) = svc.store().job_response(&name, &job_id)? {
            if hash == request_hash {
                return Ok(response);
            }
            return Err(ApiError::Refused {
                code: "job_conflict",
                message: "this job id was used for another job".into(),
            });
        }
        prepare_job(svc, &l, &request, request_hash)
    })
    .await??;
    Ok(HttpResponse::Ok().content_type("application/octet-stream").body(answer))
}

fn authorized_blocking(state: &AppState) -> Result<&StudyService, ApiError> {
    state
        .study_service()
        .filter(|s| s.role() == AggregatorRole::Helper)
        .ok_or(ApiError::NotFound("aggregator service"))
}

fn prepare_job(
    svc: &StudyService,
    l: &LoadedStudy,
    request: &JobRequest,
    request_hash: [u8; 32],
) -> Result<Vec<u8>, ApiError> {
    let name = &l.stored.name;
    let ids: Vec<[u8; 16]> = request.reports.iter().map(|r| r.id).collect();
    let seen = svc.store().seen_reports(name, &ids)?;
    let mut results = Vec::with_capacity(ids.len());
    let mut aggregate = l.vdaf.aggregate_init();
    let mut aggregated = Vec::new();
    let mut rejected = Vec::new();
    // Replays (seen before, or twice in this job) first, in order; then
    // every report is prepared on its own, in parallel.
    let mut in_job = std::collections::HashSet::new();
    let work: Vec<(&super::protocol::JobReport, bool)> =
        request.reports.iter().zip(seen).map(|(r, seen)| (r, seen || !in_job.insert(r.id))).collect();
    let outcomes = super::par_map(&work, |(r, replayed)| -> Result<_, PrepError> {
        if *replayed {
            return Err(PrepError::Replayed);
        }
        if !l.def.in_window(r.time) {
            return Err(PrepError::OutsideWindow);
        }
        let report = medrelay_dp::study::Report {
            id: medrelay_dp::study::ReportId(r.id),
            time: r.time,
            study_sha256: l.stored.sha256,
            public_share: r.public_share.clone(),
            leader_share: HpkeCiphertext { enc: [0; 32], ciphertext: Vec::new() },
            helper_share: HpkeCiphertext { enc: r.helper_enc, ciphertext: r.helper_ciphertext.clone() },
        };
        let share = report.open_share(AggregatorRole::Helper, &svc.hpke)?;
        let (state, own) =
            l.vdaf.verify_init(&l.verify_key, AggregatorRole::Helper, &r.id, &r.public_share, &share)?;
        let message = l.vdaf.verifier_message(&state, &r.leader_verifier, &own)?;
        let out = l.vdaf.finish(state, &message)?;
        Ok((message, out))
    });
    for ((r, _), outcome) in work.iter().zip(outcomes) {
        match outcome {
            Ok((message, out)) => {
                l.vdaf.accumulate(&mut aggregate, &out).map_err(|e| ApiError::Internal(e.to_string()))?;
                aggregated.push(r.id);
                results.push((r.id, JobResult::Continue(message)));
            }
            Err(why) => {
                rejected.push((r.id, why.index()));
                results.push((r.id, JobResult::Reject(why)));
            }
        }
    }
    let response = JobResponse { job_id: request.job_id, results }.encode();
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
            batch: request.batch,
            job: request.job_id,
            aggregated: u32::try_from(aggregated.len()).unwrap_or(u32::MAX),
            rejected: counts,
        },
    })?;
    let (delta, empty) = l.encoded_delta(&aggregate)?;
    let merge = |current: &[u8]| l.merge_encoded(current, &delta);
    let commit = JobCommit {
        job_id: request.job_id,
        batch: request.batch,
        aggregated: &aggregated,
        rejected: &rejected,
        helper_response: Some((request_hash, &response)),
    };
    match svc.store().commit_job(name, &commit, &empty, &merge, &event)? {
        CommitOutcome::Committed(idx) => {
            tracing::info!(study = %name, batch = request.batch, aggregated = aggregated.len(), rejected = rejected.len(), log.index = idx, "study job aggregated");
            Ok(response)
        }
        CommitOutcome::BatchClosed => Err(ApiError::Refused {
            code: "batch_collected",
            message: format!(
                "batch {} of study {name} was already released; it takes no more reports",
                request.batch
            ),
        }),
        CommitOutcome::Replayed => Err(ApiError::Refused {
            code: "job_conflict",
            message: "a report of this job was aggregated by another job meanwhile; retry".into(),
        }),
    }
}

async fn collect(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, u64)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorized(&state, &req)?;
    let body = read_body(payload, 4096).await?;
    let (name, batch) = path.into_inner();
    check_study_name(&name)?;
    let st = state.clone();
    let answer = web::block(move || -> Result<Vec<u8>, ApiError> {
        let svc = authorized_blocking(&st)?;
        let request = CollectRequest::decode(&body).map_err(|e| ApiError::field("collect", e))?;
        if request.study != name || request.batch != batch {
            return Err(ApiError::field("collect", "the body names another study or batch than the path"));
        }
        let l = load(&st, svc, &name, &request.study_sha256)?;
        let (epsilon, rho) = match l.noise.cost {
            medrelay_dp::PrivacyCost::Epsilon(e) => (e, 0.0),
            medrelay_dp::PrivacyCost::Rho(r) => (0.0, r),
        };
        let event = events::append(&LogEvent::Study {
            at: st.clock().now(),
            event: StudyEvent::BatchReleased {
                study: name.clone(),
                batch,
                reports: request.reports,
                epsilon,
                rho,
                analyst: None,
            },
        })?;
        let lens = Group::ALL.map(|g| l.encoding.group_len(g));
        let noisy = |aggregate: &[u8]| -> Result<Vec<u8>, StoreError> {
            let bad = |e: &dyn std::fmt::Display| StoreError::Backend(format!("noisy share: {e}"));
            let mut a = l.vdaf.decode_aggregate(aggregate).map_err(|e| bad(&e))?;
            let noise = l.noise.sample(lens).map_err(|e| bad(&e))?;
            l.vdaf.add_noise(&mut a, &noise).map_err(|e| bad(&e))?;
            l.vdaf.encode_aggregate(&a).map_err(|e| bad(&e))
        };
        let check = crate::store::CollectCheck {
            batch,
            reports: request.reports,
            checksum: request.checksum,
            min_reports: l.def.min_batch_size(),
        };
        let outcome = svc.store().helper_release(&name, &check, &noisy, &event)?;
        match outcome {
            HelperReleaseOutcome::Released(share) => {
                tracing::info!(study = %name, batch, "study batch share released to the leader");
                Ok(CollectResponse { batch, reports: request.reports, share }.encode())
            }
            HelperReleaseOutcome::Mismatch => Err(ApiError::Refused {
                code: "batch_mismatch",
                message: format!(
                    "batch {batch}: the leader's report count or checksum differs from the helper's"
                ),
            }),
            HelperReleaseOutcome::TooSmall => Err(ApiError::Refused {
                code: "batch_too_small",
                message: format!("batch {batch} has fewer than {} reports here", l.def.min_batch_size()),
            }),
        }
    })
    .await??;
    Ok(HttpResponse::Ok().content_type("application/octet-stream").body(answer))
}
