//! The doctor's app: the patients who share records now, fetching a
//! patient's records (re-encrypted by the server, verified and decrypted
//! here), the chart built from them, single records and the whole chart as
//! a FHIR Bundle to download. Refetching after a revocation shows the
//! server's refusal, record by record.
//!
//! Fetched records stay in this process's memory (bodies zeroized when
//! dropped) until they are fetched again or the app quits; nothing is
//! written to disk unless the doctor downloads it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::time::{format_utc, now};
use medrelay_client::{extension_for, ClientError, Doctor, FetchedRecord, SharedPatient};
use medrelay_crypto::{PrincipalId, RecordId, Timestamp};
use medrelay_fhir::StoredEntry;
use serde_json::Value;

use crate::clinical::ClinicalChart;
use crate::jobs::Jobs;
use crate::page::{self, blocking, Ctx, Flash, Layout, PageError, Problem};
use crate::patient::{attachment, CategoryParts};

/// The doctor's navigation.
pub(crate) const NAV: &[(&str, &str)] = &[("/", "Patients"), ("/history", "My access history")];

/// What was fetched for one patient.
struct FetchedChart {
    name: String,
    at: Timestamp,
    /// The ids asked for (refetching asks for these again).
    asked: Vec<RecordId>,
    records: Vec<FetchedRecord>,
    denied: Vec<(RecordId, String)>,
    failed: Vec<(RecordId, String)>,
}

/// The doctor app's state.
pub(crate) struct DoctorApp {
    doctor: Arc<Doctor>,
    charts: Arc<Mutex<BTreeMap<PrincipalId, FetchedChart>>>,
}

impl std::fmt::Debug for DoctorApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoctorApp").finish_non_exhaustive()
    }
}

impl DoctorApp {
    pub(crate) fn new(doctor: Doctor) -> Self {
        Self { doctor: Arc::new(doctor), charts: Arc::new(Mutex::new(BTreeMap::new())) }
    }
}

/// Routes of the doctor app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/history", web::get().to(history))
        .route("/patients/{id}", web::get().to(chart))
        .route("/patients/{id}/fetch", web::post().to(fetch))
        .route("/patients/{id}/bundle", web::get().to(bundle))
        .route("/patients/{id}/records/{record}", web::get().to(record_file));
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(12).collect()
}

#[derive(Clone, Debug)]
struct PatientRow {
    id: String,
    name: String,
    scopes: Vec<(String, String)>,
    records: usize,
    fetched: bool,
}

#[derive(Template)]
#[template(path = "doctor_home.html")]
struct Home {
    layout: Layout,
    id: String,
    pre: String,
    signing: String,
    sharing: Vec<PatientRow>,
    earlier: Vec<(String, String, String)>,
}

async fn home(ctx: Ctx, app: web::Data<DoctorApp>) -> Result<HttpResponse, PageError> {
    let d = Arc::clone(&app.doctor);
    let (who, shared) = blocking(move || Ok((d.whoami(), d.shared()?))).await.map_err(ctx.fail())?;
    let charts = app.charts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let sharing_ids: BTreeSet<PrincipalId> = shared.iter().map(|p| p.patient).collect();
    let sharing = shared
        .iter()
        .map(|p| PatientRow {
            id: p.patient.to_string(),
            name: p.name.clone(),
            scopes: p.grants.iter().map(|g| (g.scope.clone(), format_utc(g.not_after))).collect(),
            records: p.records.len(),
            fetched: charts.contains_key(&p.patient),
        })
        .collect();
    let earlier = charts
        .iter()
        .filter(|(id, _)| !sharing_ids.contains(id))
        .map(|(id, c)| (id.to_string(), c.name.clone(), format_utc(c.at)))
        .collect();
    page::ok(&Home {
        layout: ctx.layout("Patients who share records with you"),
        id: who.id.to_string(),
        pre: who.pre_key_fingerprint.unwrap_or_default(),
        signing: who.signing_key_fingerprint,
        sharing,
        earlier,
    })
}

async fn history(ctx: Ctx, app: web::Data<DoctorApp>) -> Result<HttpResponse, PageError> {
    let d = Arc::clone(&app.doctor);
    let h = blocking(move || d.history(&mut |_| ())).await.map_err(ctx.fail())?;
    crate::history::page(&ctx, "My access history", crate::history::Audience::Doctor, &h, &BTreeMap::new())
}

#[derive(Clone, Debug)]
struct FileRow {
    id: String,
    short: String,
    parts: CategoryParts,
    media_type: String,
}

#[derive(Template)]
#[template(path = "doctor_chart.html")]
struct ChartPage {
    layout: Layout,
    patient_id: String,
    name: String,
    /// `None`: not fetched yet in this session.
    fetched_at: Option<String>,
    chart: ClinicalChart,
    files: Vec<FileRow>,
    refusals: Vec<(String, usize)>,
    failed: Vec<(String, String)>,
    /// What the patient shares now (`None` if no active grant).
    shared: Option<SharedPatient>,
    shared_records: Vec<FileRow>,
    scopes: Vec<(String, String)>,
}

fn patient_id(ctx: &Ctx, s: &str) -> Result<PrincipalId, PageError> {
    s.parse().map_err(|_| ctx.fail()(Problem::not_found("no such patient id")))
}

async fn chart(
    ctx: Ctx,
    app: web::Data<DoctorApp>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let pid = patient_id(&ctx, &id)?;
    let d = Arc::clone(&app.doctor);
    let shared = match blocking(move || d.shared_by(&pid)).await {
        Ok(s) => Some(s),
        Err(p) if p.status == actix_web::http::StatusCode::BAD_REQUEST => None,
        Err(p) => return Err(ctx.fail()(p)),
    };
    let charts = app.charts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let fetched = charts.get(&pid);
    if shared.is_none() && fetched.is_none() {
        return Err(ctx.fail()(Problem::not_found(
            "this patient shares nothing with you now, and nothing was fetched in this session",
        )));
    }
    let name = shared
        .as_ref()
        .map(|s| s.name.clone())
        .or_else(|| fetched.map(|f| f.name.clone()))
        .unwrap_or_default();
    let (chart, files, refusals, failed, fetched_at) = match fetched {
        Some(f) => {
            let resources: Vec<Value> =
                f.records.iter().filter_map(|r| r.record.fhir_entry().ok()).map(|e| e.resource).collect();
            let files = f
                .records
                .iter()
                .map(|r| {
                    let h = &r.record.header;
                    FileRow {
                        id: h.record_id().to_string(),
                        short: short(&h.record_id()),
                        parts: CategoryParts::parse(&h.category().to_string()),
                        media_type: h.media_type().to_owned(),
                    }
                })
                .collect();
            let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
            for (_, code) in &f.denied {
                *by_code.entry(code.clone()).or_default() += 1;
            }
            let failed = f.failed.iter().map(|(id, why)| (short(id), why.clone())).collect();
            (
                ClinicalChart::build(&resources),
                files,
                by_code.into_iter().collect(),
                failed,
                Some(format_utc(f.at)),
            )
        }
        None => (ClinicalChart::default(), Vec::new(), Vec::new(), Vec::new(), None),
    };
    let shared_records = shared
        .as_ref()
        .map(|s| {
            s.records
                .iter()
                .map(|r| FileRow {
                    id: r.record_id.to_string(),
                    short: short(&r.record_id),
                    parts: CategoryParts::parse(&r.category),
                    media_type: r.media_type.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let scopes = shared
        .as_ref()
        .map(|s| s.grants.iter().map(|g| (g.scope.clone(), format_utc(g.not_after))).collect())
        .unwrap_or_default();
    page::ok(&ChartPage {
        layout: ctx.layout(if name.is_empty() { "Chart".to_owned() } else { format!("Chart of {name}") }),
        patient_id: pid.to_string(),
        name,
        fetched_at,
        chart,
        files,
        refusals,
        failed,
        shared,
        shared_records,
        scopes,
    })
}

async fn fetch(
    ctx: Ctx,
    app: web::Data<DoctorApp>,
    jobs: web::Data<Jobs>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let pid = patient_id(&ctx, &id)?;
    let earlier: Vec<RecordId> = app
        .charts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&pid)
        .map(|c| c.asked.clone())
        .unwrap_or_default();
    let earlier_name = app
        .charts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&pid)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let d = Arc::clone(&app.doctor);
    let charts = Arc::clone(&app.charts);
    let page = format!("/patients/{pid}");
    let next = page.clone();
    let job = jobs
        .start("Fetching records".into(), "records verified and decrypted", move |job| {
            // What is shared now, plus whatever was fetched before (asking
            // again for those shows a revocation as the server's refusal).
            let (name, mut ids) = match d.shared_by(&pid) {
                Ok(s) => (s.name, s.records.iter().map(|r| r.record_id).collect::<Vec<_>>()),
                Err(ClientError::Invalid(_)) if !earlier.is_empty() => (earlier_name, Vec::new()),
                Err(e) => return Err(e),
            };
            let mut seen: BTreeSet<RecordId> = ids.iter().copied().collect();
            ids.extend(earlier.into_iter().filter(|id| seen.insert(*id)));
            let report = d.fetch_many(&pid, &ids, &mut |p| job.progress(p))?;
            let flash = if report.fetched.is_empty() && !report.denied.is_empty() {
                Flash::problem(format!(
                    "The server refused all {} records ({}).",
                    report.denied.len(),
                    report.denied.first().map(|(_, c)| c.as_str()).unwrap_or_default()
                ))
            } else {
                Flash::ok(format!(
                    "{} records fetched, verified against the patient's signature and decrypted here{}.",
                    report.fetched.len(),
                    if report.denied.is_empty() {
                        String::new()
                    } else {
                        format!("; {} refused", report.denied.len())
                    }
                ))
            };
            charts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
                pid,
                FetchedChart {
                    name,
                    at: now(),
                    asked: ids,
                    records: report.fetched,
                    denied: report.denied,
                    failed: report.failed,
                },
            );
            Ok((next, flash))
        })
        .map_err(ctx.fail())?;
    let _ = page;
    Ok(page::redirect(&job))
}

async fn bundle(
    ctx: Ctx,
    app: web::Data<DoctorApp>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let pid = patient_id(&ctx, &id)?;
    let entries: Vec<StoredEntry> = {
        let charts = app.charts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = charts
            .get(&pid)
            .ok_or_else(|| ctx.fail()(Problem::not_found("fetch this patient's records first")))?;
        c.records.iter().filter_map(|r| r.record.fhir_entry().ok()).collect()
    };
    // The same Bundle `medrelay-doctor fetch-all` writes.
    let (bundle, _unresolved) = app.doctor.chart_bundle(&pid, &entries);
    let mut body = serde_json::to_vec_pretty(&bundle)
        .map_err(|e| ctx.fail()(Problem::bad_request(format!("the Bundle does not serialize: {e}"))))?;
    body.push(b'\n');
    Ok(attachment(format!("chart-{}.json", short(&pid)), "application/fhir+json", body))
}

async fn record_file(
    ctx: Ctx,
    app: web::Data<DoctorApp>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (pid, rid) = path.into_inner();
    let pid = patient_id(&ctx, &pid)?;
    let rid: RecordId = rid.parse().map_err(|_| ctx.fail()(Problem::not_found("no such record id")))?;
    let charts = app.charts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let r = charts
        .get(&pid)
        .and_then(|c| c.records.iter().find(|r| r.record.header.record_id() == rid))
        .ok_or_else(|| ctx.fail()(Problem::not_found("that record was not fetched in this session")))?;
    let name = format!("{rid}.{}", extension_for(r.record.header.media_type()));
    let media = if r.record.is_fhir() { "application/fhir+json" } else { "application/octet-stream" };
    Ok(attachment(name, media, r.record.export_bytes().to_vec()))
}
