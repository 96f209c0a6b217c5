//! The auditor's app: the newest checkpoint verified against the pinned
//! log key and the checkpoint stored last time, the full audit's result
//! and anomalies, the log's growth over time, and the grants and accesses
//! the verified log records (with filters). One click re-verifies.
//!
//! Every figure comes from one [`medrelay_client::Auditor::review`]: one
//! download of the whole log, checked against the signed root, decoded
//! and replayed through the policy audit, exactly as `medrelay-auditor
//! verify` and `audit --full` do.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::time::{format_utc, now};
use medrelay_client::{accesses_in, grants_in, AccessItem, AuditGrant, Auditor, Filter, Review};
use medrelay_crypto::PrincipalId;

use crate::page::{self, Ctx, Flash, Layout, PageError, Problem};
use crate::svg::{Chart, Point, Series};

/// The auditor's navigation.
pub(crate) const NAV: &[(&str, &str)] =
    &[("/", "Verification"), ("/grants", "Grants"), ("/accesses", "Accesses")];

/// Most points of the growth chart.
const GROWTH_POINTS: usize = 160;

/// What the last review found, ready for the pages.
#[derive(Clone, Debug)]
struct Findings {
    at: String,
    origin: String,
    tree_size: u64,
    previous_size: Option<u64>,
    root: String,
    clean: bool,
    anomalies: Vec<(String, bool)>,
    counts: Vec<(String, u64)>,
    active_grants: u64,
    growth: Option<Chart>,
    grants: Vec<AuditGrant>,
    accesses: Vec<AccessItem>,
}

/// The last review: its findings, or why it failed.
type LastReview = Result<Findings, String>;

/// The auditor app's state.
pub(crate) struct AuditorApp {
    auditor: Arc<Auditor>,
    last: Mutex<Option<LastReview>>,
}

impl std::fmt::Debug for AuditorApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditorApp").finish_non_exhaustive()
    }
}

impl AuditorApp {
    pub(crate) fn new(auditor: Auditor) -> Self {
        Self { auditor: Arc::new(auditor), last: Mutex::new(None) }
    }

    /// Runs a review now and keeps its findings.
    async fn review(&self) -> Result<LastReview, Problem> {
        let a = Arc::clone(&self.auditor);
        let result = web::block(move || a.review(&mut |_| ())).await?;
        let last = result.map(|r| findings(&r)).map_err(|e| e.to_string());
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last.clone());
        Ok(last)
    }

    /// The kept findings, or a review now if there are none.
    async fn findings(&self) -> Result<LastReview, Problem> {
        let kept = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match kept {
            Some(last) => Ok(last),
            None => self.review().await,
        }
    }
}

fn growth_chart(review: &Review) -> Option<Chart> {
    let events = &review.log.events;
    let n = events.len();
    if n == 0 {
        return None;
    }
    let step = n.div_ceil(GROWTH_POINTS).max(1);
    let mut points: Vec<Point> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || i + 1 == n)
        .map(|(i, e)| Point { x: e.timestamp().unix_seconds() as f64 / 86_400.0, y: (i + 1) as f64 })
        .collect();
    points.dedup_by(|a, b| a.x == b.x && a.y == b.y);
    Chart::lines("log-growth", "Log size over time", "entries", &[Series { name: "entries".into(), points }])
        .map(Chart::without_dots)
}

fn findings(r: &Review) -> Findings {
    let everyone = Filter::default();
    Findings {
        at: format_utc(now()),
        origin: r.verify.origin.clone(),
        tree_size: r.verify.tree_size,
        previous_size: r.verify.previous_size,
        root: r.verify.root_hash.clone(),
        clean: r.audit.is_clean(),
        anomalies: r.audit.anomalies().iter().map(|a| (a.to_string(), a.kind().is_fatal())).collect(),
        counts: r.audit.counts().iter().map(|(k, v)| (crate::history::event_label(k).0, *v)).collect(),
        active_grants: r.audit.active_grants(),
        growth: growth_chart(r),
        grants: grants_in(&r.log.events, &everyone),
        accesses: accesses_in(&r.log.events, &everyone),
    }
}

/// Routes of the auditor app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/verify", web::post().to(verify))
        .route("/grants", web::get().to(grants))
        .route("/accesses", web::get().to(accesses));
}

#[derive(Template)]
#[template(path = "auditor_home.html")]
struct Home {
    layout: Layout,
    pinned_key: String,
    last: LastReview,
}

async fn home(ctx: Ctx, app: web::Data<AuditorApp>) -> Result<HttpResponse, PageError> {
    let last = app.findings().await.map_err(ctx.fail())?;
    page::ok(&Home {
        layout: ctx.layout("Audit log verification"),
        pinned_key: app.auditor.pinned_log_key().to_owned(),
        last,
    })
}

async fn verify(ctx: Ctx, app: web::Data<AuditorApp>) -> Result<HttpResponse, PageError> {
    let flash = match app.review().await.map_err(ctx.fail())? {
        Ok(f) if f.clean => Flash::ok(format!("Verified again: {} entries, no anomaly.", f.tree_size)),
        Ok(f) => Flash::problem(format!("Verified {} entries, but the audit found anomalies.", f.tree_size)),
        Err(e) => Flash::problem(format!("Verification failed: {e}")),
    };
    Ok(ctx.redirect_with("/", flash))
}

#[derive(serde::Deserialize)]
struct FilterQuery {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    doctor: String,
    #[serde(default)]
    outcome: String,
}

impl FilterQuery {
    fn filter(&self) -> Result<Filter, String> {
        let id = |what: &str, s: &str| -> Result<Option<PrincipalId>, String> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).map_err(|_| format!("the {what} id is not a valid id"))
        };
        Ok(Filter { patient: id("patient", &self.patient)?, doctor: id("doctor", &self.doctor)? })
    }
}

fn keeps(filter: &Filter, patient: Option<PrincipalId>, doctor: PrincipalId) -> bool {
    filter.patient.is_none_or(|p| patient == Some(p)) && filter.doctor.is_none_or(|d| d == doctor)
}

#[derive(Clone, Debug)]
struct GrantRow {
    id: String,
    patient: String,
    doctor: String,
    scope: String,
    purpose: String,
    until: String,
    revoked: String,
    signature_ok: bool,
    log_index: u64,
}

#[derive(Template)]
#[template(path = "auditor_grants.html")]
struct GrantsPage {
    layout: Layout,
    patient: String,
    doctor: String,
    problem: Option<String>,
    problem_title: &'static str,
    rows: Vec<GrantRow>,
    total: usize,
    tree_size: u64,
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(16).collect()
}

async fn loaded(ctx: &Ctx, app: &AuditorApp) -> Result<Findings, PageError> {
    match app.findings().await.map_err(ctx.fail())? {
        Ok(f) => Ok(f),
        Err(e) => Err(ctx.fail()(Problem {
            status: actix_web::http::StatusCode::BAD_GATEWAY,
            title: "Verification failed",
            message: e,
        })),
    }
}

async fn grants(
    ctx: Ctx,
    app: web::Data<AuditorApp>,
    q: web::Query<FilterQuery>,
) -> Result<HttpResponse, PageError> {
    let f = loaded(&ctx, &app).await?;
    let (filter, problem) = match q.filter() {
        Ok(filter) => (filter, None),
        Err(p) => (Filter::default(), Some(p)),
    };
    let rows: Vec<GrantRow> = f
        .grants
        .iter()
        .filter(|g| keeps(&filter, Some(g.patient), g.doctor))
        .rev()
        .map(|g| GrantRow {
            id: g.grant_id.to_string(),
            patient: short(&g.patient),
            doctor: short(&g.doctor),
            scope: g.scope.clone(),
            purpose: g.purpose.clone(),
            until: format_utc(g.not_after),
            revoked: g.revoked_at.map(format_utc).unwrap_or_default(),
            signature_ok: g.signature_valid,
            log_index: g.log_index,
        })
        .collect();
    page::ok(&GrantsPage {
        layout: ctx.layout("Grants in the log"),
        patient: q.patient.trim().to_owned(),
        doctor: q.doctor.trim().to_owned(),
        problem,
        problem_title: "Filter not applied",
        rows,
        total: f.grants.len(),
        tree_size: f.tree_size,
    })
}

#[derive(Clone, Debug)]
struct AccessRow {
    index: u64,
    at: String,
    served: bool,
    doctor: String,
    patient: String,
    record: String,
    detail: String,
    /// Identical refusals this entry stands for (coalesced by the server).
    count: u32,
}

#[derive(Template)]
#[template(path = "auditor_accesses.html")]
struct AccessesPage {
    layout: Layout,
    patient: String,
    doctor: String,
    outcome: String,
    problem: Option<String>,
    problem_title: &'static str,
    rows: Vec<AccessRow>,
    served: u64,
    denied: u64,
    tree_size: u64,
}

async fn accesses(
    ctx: Ctx,
    app: web::Data<AuditorApp>,
    q: web::Query<FilterQuery>,
) -> Result<HttpResponse, PageError> {
    let f = loaded(&ctx, &app).await?;
    let (filter, problem) = match q.filter() {
        Ok(filter) => (filter, None),
        Err(p) => (Filter::default(), Some(p)),
    };
    let kept: Vec<&AccessItem> = f.accesses.iter().filter(|a| keeps(&filter, a.patient, a.doctor)).collect();
    let rows = kept
        .iter()
        .filter(|a| q.outcome.is_empty() || a.outcome == q.outcome)
        .rev()
        .map(|a| AccessRow {
            index: a.index,
            at: format_utc(a.at),
            served: a.outcome == "served",
            doctor: short(&a.doctor),
            patient: a.patient.map(|p| short(&p)).unwrap_or_else(|| "–".into()),
            record: short(&a.record),
            detail: a.detail.clone(),
            count: a.count,
        })
        .collect();
    page::ok(&AccessesPage {
        layout: ctx.layout("Accesses in the log"),
        patient: q.patient.trim().to_owned(),
        doctor: q.doctor.trim().to_owned(),
        outcome: q.outcome.clone(),
        problem,
        problem_title: "Filter not applied",
        served: kept.iter().filter(|a| a.outcome == "served").map(|a| u64::from(a.count.max(1))).sum(),
        denied: kept.iter().filter(|a| a.outcome == "denied").map(|a| u64::from(a.count.max(1))).sum(),
        rows,
        tree_size: f.tree_size,
    })
}
