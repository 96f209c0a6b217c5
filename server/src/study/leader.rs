//! The leader's study routes under `/v1/studies`:
//!
//! - `GET /studies`, `GET /studies/{name}`: any authenticated principal
//!   (patients check a definition against the log before contributing).
//! - `POST /studies/{name}/reports`: patients upload 1..=1000 encrypted
//!   reports; each is checked (format, study hash, window, the leader's
//!   share decrypts and has the right lengths, id not seen, the patient's
//!   quota) and stored for preparation, or refused with a typed code; one
//!   log entry counts both.
//! - `GET /studies/{name}/status`, `POST /studies/{name}/batches/{batch}/release`,
//!   `GET /studies/{name}/releases[/{batch}]`: analysts.

use actix_web::{web, HttpResponse};
use medrelay_dp::study::{AggregatorRole, PrepError, Report, MAX_REPORT_BYTES};
use medrelay_policy::{LogEvent, StudyEvent};
use medrelay_wire::study::{
    RefusedReport, ReleaseList, StudyInfo, StudyList, StudyRelease, StudyStatus, UploadReportsRequest,
    UploadReportsResponse, MAX_RELEASES_LISTED, MAX_REPORTS_PER_UPLOAD, MAX_STUDIES_LISTED,
    MAX_UPLOAD_BODY_BYTES,
};
use medrelay_wire::Role;

use super::{check_study_name, driver, LoadedStudy, StudyService};
use crate::error::json_error;
use crate::log::events;
use crate::store::{BatchState, BatchStatus, StoreError, UploadOutcome};
use crate::{ApiError, AppState, Auth, PatientAuth};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    let upload = web::JsonConfig::default()
        .limit(MAX_UPLOAD_BODY_BYTES)
        .error_handler(|e, _| json_error(e, MAX_UPLOAD_BODY_BYTES).into());
    cfg.route("/studies", web::get().to(list))
        .route("/studies/{name}", web::get().to(get))
        .service(
            web::resource("/studies/{name}/reports").app_data(upload).route(web::post().to(upload_reports)),
        )
        .route("/studies/{name}/status", web::get().to(status))
        .route("/studies/{name}/batches/{batch}/release", web::post().to(release))
        .route("/studies/{name}/releases", web::get().to(releases))
        .route("/studies/{name}/releases/{batch}", web::get().to(one_release));
}

fn leader(state: &AppState) -> Result<&StudyService, ApiError> {
    state
        .study_service()
        .filter(|s| s.role() == AggregatorRole::Leader)
        .ok_or(ApiError::NotFound("study service"))
}

fn loaded(state: &AppState, name: &str) -> Result<std::sync::Arc<LoadedStudy>, ApiError> {
    leader(state)?.load(state.store().as_ref(), name)?.ok_or(ApiError::NotFound("study"))
}

fn analyst(auth: Auth) -> Result<medrelay_crypto::PrincipalId, ApiError> {
    if auth.role == Role::Analyst {
        Ok(auth.principal)
    } else {
        Err(ApiError::WrongRole { needed: "analyst" })
    }
}

fn info(l: &LoadedStudy) -> Result<StudyInfo, ApiError> {
    Ok(StudyInfo {
        name: l.stored.name.clone(),
        schema: l.stored.schema.clone(),
        study_sha256: hex::encode(l.stored.sha256),
        definition: serde_json::from_slice(&l.stored.json)
            .map_err(|e| ApiError::Internal(format!("stored study json: {e}")))?,
        log_index: l.stored.log_index,
    })
}

async fn list(state: web::Data<AppState>, _auth: Auth) -> Result<HttpResponse, ApiError> {
    leader(&state)?;
    let st = state.clone();
    let studies = web::block(move || -> Result<Vec<StudyInfo>, ApiError> {
        let svc = leader(&st)?;
        let mut out = Vec::new();
        for s in svc.store().list_studies(MAX_STUDIES_LISTED)? {
            if let Some(l) = svc.load(st.store().as_ref(), &s.name)? {
                out.push(info(&l)?);
            }
        }
        Ok(out)
    })
    .await??;
    Ok(HttpResponse::Ok().json(StudyList { studies }))
}

async fn get(
    state: web::Data<AppState>,
    _auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_study_name(&name)?;
    let st = state.clone();
    let l = web::block(move || loaded(&st, &name)).await??;
    Ok(HttpResponse::Ok().json(info(&l)?))
}

async fn upload_reports(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    name: web::Path<String>,
    body: web::Json<UploadReportsRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_study_name(&name)?;
    let reports = body.into_inner().reports;
    if reports.is_empty() || reports.len() > MAX_REPORTS_PER_UPLOAD {
        return Err(ApiError::field("reports", format!("send 1 to {MAX_REPORTS_PER_UPLOAD} reports")));
    }
    let st = state.clone();
    let now = state.clock().now();
    let resp = web::block(move || -> Result<UploadReportsResponse, ApiError> {
        let svc = leader(&st)?;
        let l = loaded(&st, &name)?;
        let mut refused = Vec::new();
        let mut candidates = Vec::with_capacity(reports.len());
        let mut positions = Vec::with_capacity(reports.len());
        for (index, blob) in reports.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let refuse = |id: Option<[u8; 16]>, code: &str| RefusedReport { index, report_id: id.map(hex::encode), code: code.to_owned() };
            let bytes = blob.into_bytes();
            if bytes.len() > MAX_REPORT_BYTES {
                refused.push(refuse(None, "malformed_report"));
                continue;
            }
            let Ok(report) = Report::decode(&bytes) else {
                refused.push(refuse(None, "malformed_report"));
                continue;
            };
            let id = Some(report.id.0);
            if report.study_sha256 != l.stored.sha256 {
                refused.push(refuse(id, "wrong_study"));
                continue;
            }
            // Times are rounded down to the hour: one more hour of skew.
            if !l.def.in_window(report.time) || report.time > now.unix_seconds() + 3600 {
                refused.push(refuse(id, PrepError::OutsideWindow.code()));
                continue;
            }
            let checked = report
                .open_share(AggregatorRole::Leader, &svc.hpke)
                .and_then(|share| l.vdaf.check_shares(AggregatorRole::Leader, &report.public_share, &share));
            if let Err(why) = checked {
                refused.push(refuse(id, why.code()));
                continue;
            }
            candidates.push((report.id.0, bytes));
            positions.push(index);
        }
        let refused_before = u32::try_from(refused.len()).unwrap_or(u32::MAX);
        let event = |accepted: u32, refused: u32| {
            events::append(&LogEvent::Study {
                at: now,
                event: StudyEvent::ReportsUploaded { patient, study: name.clone(), accepted, refused },
            })
            .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let quota = l.def.reports_per_patient();
        let (outcomes, log_index) = svc.store().upload_reports(&name, &patient, quota, &candidates, refused_before, &event)?;
        let mut accepted = 0u32;
        for ((index, (id, _)), outcome) in positions.iter().zip(&candidates).zip(outcomes) {
            let code = match outcome {
                UploadOutcome::Accepted => {
                    accepted += 1;
                    continue;
                }
                UploadOutcome::Replayed => "replayed",
                UploadOutcome::OverQuota => "over_quota",
            };
            refused.push(RefusedReport { index: *index, report_id: Some(hex::encode(id)), code: code.to_owned() });
        }
        refused.sort_by_key(|r| r.index);
        tracing::info!(principal.id = %patient, study = %name, accepted, refused = refused.len(), log.index = log_index, "study reports uploaded");
        Ok(UploadReportsResponse { study: name, accepted, refused, log_index })
    })
    .await??;
    Ok(HttpResponse::Ok().json(resp))
}

/// The preamble of an analyst's read of one study: the role and the name
/// are checked, then `read` runs on the blocking pool with the leader's
/// service, the loaded study (`NotFound` if there is none) and the batches
/// released so far (at most [`MAX_RELEASES_LISTED`], by number).
async fn analyst_read<T: Send + 'static>(
    state: web::Data<AppState>,
    auth: Auth,
    name: String,
    read: impl FnOnce(&StudyService, &LoadedStudy, String, Vec<(u64, BatchState)>) -> Result<T, ApiError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    analyst(auth)?;
    check_study_name(&name)?;
    web::block(move || {
        let svc = leader(&state)?;
        let l = loaded(&state, &name)?;
        let released = svc
            .store()
            .list_batches(&name, MAX_RELEASES_LISTED)?
            .into_iter()
            .filter(|(_, b)| b.status == BatchStatus::Released)
            .collect();
        read(svc, &l, name, released)
    })
    .await?
}

async fn status(
    state: web::Data<AppState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = analyst_read(state, auth, name.into_inner(), |svc, l, name, released| {
        let open = svc.store().open_batch(&name)?;
        let reports = svc.store().get_batch(&name, open)?.map_or(0, |b| b.reports);
        let released = released.into_iter().map(|(n, _)| n).collect();
        Ok(StudyStatus { study: name, open_batch: open, ready: reports >= l.def.min_batch_size(), released })
    })
    .await?;
    Ok(HttpResponse::Ok().json(status))
}

async fn release(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let analyst = analyst(auth)?;
    let (name, batch) = path.into_inner();
    check_study_name(&name)?;
    let st = state.clone();
    let n = name.clone();
    let result = web::block(move || {
        let svc = leader(&st)?;
        let l = loaded(&st, &n)?;
        driver::release(&st, svc, &l, batch, analyst)
    })
    .await?;
    match result {
        Ok(r) => Ok(HttpResponse::Ok().json(r)),
        Err(e) => {
            tracing::info!(principal.id = %analyst, study = %name, batch, error.code = e.code(), "study release refused");
            Err(e)
        }
    }
}

fn stored_release(bytes: &[u8]) -> Result<StudyRelease, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Internal(format!("stored release: {e}")))
}

async fn releases(
    state: web::Data<AppState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let list = analyst_read(state, auth, name.into_inner(), |_, _, _, released| {
        let releases = released.iter().map(|(_, b)| stored_release(&b.release)).collect::<Result<_, _>>()?;
        Ok(ReleaseList { releases })
    })
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

async fn one_release(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    analyst(auth)?;
    let (name, batch) = path.into_inner();
    check_study_name(&name)?;
    let st = state.clone();
    let r = web::block(move || -> Result<StudyRelease, ApiError> {
        let svc = leader(&st)?;
        loaded(&st, &name)?;
        match svc.store().get_batch(&name, batch)? {
            Some(b) if b.status == BatchStatus::Released => stored_release(&b.release),
            _ => Err(ApiError::NotFound("release")),
        }
    })
    .await??;
    Ok(HttpResponse::Ok().json(r))
}
