//! The patient's app: overview, records (search, read, download), import,
//! sharing (grants with the doctor's fingerprints, the scope picked from
//! the patient's own record types, and the key classes it exposes;
//! revocation), the verified access history, and research contributions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::time::{format_utc, now, parse_duration};
use medrelay_client::{extension_for, GrantSummary, Patient, RecordRow, SummaryPreview};
use medrelay_crypto::{GrantId, PrincipalId, RecordCategory, RecordId, SensitivityLabel};
use medrelay_policy::{Purpose, Scope};
use rand::RngCore as _;

use crate::analyst::{field_views, FieldView};
use crate::exposure::{exposed_classes, EXPOSURE_NOTE};
use crate::page::{self, blocking, Ctx, Flash, Layout, PageError, Problem};

/// The patient's navigation.
pub(crate) const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/records", "My records"),
    ("/import", "Import"),
    ("/grants", "Sharing"),
    ("/history", "Access history"),
    ("/research", "Research"),
];

/// The patient app's state.
pub(crate) struct PatientApp {
    pub(crate) patient: Arc<Patient>,
    /// Summaries shown for contribution, by schema: (nonce, preview). A
    /// contribution submits exactly what the person saw.
    previews: Mutex<BTreeMap<String, (String, SummaryPreview)>>,
    /// Doctor names looked up (verified directory entries).
    names: Mutex<BTreeMap<PrincipalId, String>>,
    /// Imports and uploads write the local record index one at a time.
    pub(crate) writes: Arc<Mutex<()>>,
    /// FHIR files read from the page, waiting for confirmation.
    pub(crate) staged: crate::import::Staging,
}

impl std::fmt::Debug for PatientApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientApp").finish_non_exhaustive()
    }
}

impl PatientApp {
    pub(crate) fn new(patient: Patient) -> Self {
        Self {
            patient: Arc::new(patient),
            previews: Mutex::new(BTreeMap::new()),
            names: Mutex::new(BTreeMap::new()),
            writes: Arc::new(Mutex::new(())),
            staged: crate::import::Staging::default(),
        }
    }

    fn client(&self) -> Arc<Patient> {
        Arc::clone(&self.patient)
    }

    /// Display names for doctor ids (looked up once each, verified).
    async fn doctor_names(&self, ids: BTreeSet<PrincipalId>) -> BTreeMap<PrincipalId, String> {
        let missing: Vec<PrincipalId> = {
            let known = self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.iter().filter(|id| !known.contains_key(id)).copied().collect()
        };
        if !missing.is_empty() {
            let p = self.client();
            let found = web::block(move || {
                missing
                    .into_iter()
                    .filter_map(|id| p.doctor(&id).ok().map(|d| (id, d.name)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(found);
        }
        let known = self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.into_iter().filter_map(|id| known.get(&id).map(|n| (id, n.clone()))).collect()
    }
}

/// `GET`/`POST` routes of the patient app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/records", web::get().to(records))
        .route("/records/{id}", web::get().to(record))
        .route("/records/{id}/download", web::get().to(download))
        .route("/grants", web::get().to(grants))
        .route("/grants", web::post().to(create_grant))
        .route("/grants/new", web::get().to(new_grant))
        .route("/grants/{id}/revoke", web::post().to(revoke))
        .route("/history", web::get().to(history))
        .route("/research", web::get().to(research))
        .route("/research/{schema}", web::get().to(preview))
        .route("/research/{schema}/contribute", web::post().to(contribute))
        .route("/research/{schema}/withdraw", web::post().to(withdraw))
        .route("/studies/{study}", web::get().to(study_preview))
        .route("/studies/{study}/contribute", web::post().to(study_contribute));
    crate::import::routes(cfg);
}

/// A record category's parts, read from its display form
/// (`Observation?category=laboratory,vital-signs#mental-health`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CategoryParts {
    pub(crate) resource_type: String,
    pub(crate) codes: Vec<String>,
    pub(crate) labels: Vec<String>,
}

impl CategoryParts {
    pub(crate) fn parse(text: &str) -> Self {
        let (main, labels) = match text.split_once('#') {
            Some((m, l)) => (m, l.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
            None => (text, Vec::new()),
        };
        let (rt, codes) = match main.split_once("?category=") {
            Some((rt, c)) => (rt, c.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
            None => (main, Vec::new()),
        };
        Self { resource_type: rt.to_owned(), codes, labels }
    }

    /// The category itself (for scope matching), if it is well formed.
    pub(crate) fn category(&self) -> Option<RecordCategory> {
        let labels: Vec<SensitivityLabel> = self.labels.iter().filter_map(|l| l.parse().ok()).collect();
        RecordCategory::new(&self.resource_type, self.codes.clone(), labels).ok()
    }
}

/// A record row for the tables.
#[derive(Clone, Debug)]
pub(crate) struct RecordView {
    id: String,
    short: String,
    parts: CategoryParts,
    key_class: String,
    added: String,
    source: String,
    size: String,
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(12).collect()
}

fn day(t: medrelay_crypto::Timestamp) -> String {
    format_utc(t).chars().take(10).collect()
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.0} kB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

impl RecordView {
    fn from_row(r: &RecordRow) -> Self {
        let parts = r.category.as_deref().map(CategoryParts::parse).unwrap_or_else(|| CategoryParts {
            resource_type: format!("({})", r.key_class),
            ..Default::default()
        });
        let source = r
            .source
            .as_deref()
            .map(|s| {
                // Show the file's name and the FHIR reference, not the full path.
                let (file, frag) = s.split_once('#').unwrap_or((s, ""));
                let name = std::path::Path::new(file).file_name().and_then(|n| n.to_str()).unwrap_or(file);
                if frag.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name} · {frag}")
                }
            })
            .unwrap_or_default();
        Self {
            id: r.record_id.to_string(),
            short: short(&r.record_id),
            parts,
            key_class: r.key_class.to_string(),
            added: day(r.created_at),
            source,
            size: size_text(r.size),
        }
    }

    fn matches(&self, q: &str) -> bool {
        let q = q.to_lowercase();
        self.id.contains(&q)
            || self.parts.resource_type.to_lowercase().contains(&q)
            || self.parts.codes.iter().any(|c| c.to_lowercase().contains(&q))
            || self.parts.labels.iter().any(|l| l.contains(&q))
            || self.source.to_lowercase().contains(&q)
    }
}

// ---------------------------------------------------------------- overview

#[derive(Template)]
#[template(path = "patient_home.html")]
struct Home {
    layout: Layout,
    id: String,
    signing: String,
    pre: String,
    server: String,
    records: usize,
    labelled: usize,
    types: usize,
    active_grants: usize,
}

async fn home(ctx: Ctx, app: web::Data<PatientApp>) -> Result<HttpResponse, PageError> {
    let p = app.client();
    let (who, rows, grants) =
        blocking(move || Ok((p.whoami(), p.records()?, p.grants()?))).await.map_err(ctx.fail())?;
    let views: Vec<RecordView> = rows.iter().map(RecordView::from_row).collect();
    let t = now();
    page::ok(&Home {
        layout: ctx.layout(format!("Hello, {}", who.name)),
        id: who.id.to_string(),
        signing: who.signing_key_fingerprint,
        pre: who.pre_key_fingerprint.unwrap_or_default(),
        server: who.server,
        records: views.len(),
        labelled: views.iter().filter(|v| !v.parts.labels.is_empty()).count(),
        types: views.iter().map(|v| v.parts.resource_type.as_str()).collect::<BTreeSet<_>>().len(),
        active_grants: grants.iter().filter(|g| g.active_at(t)).count(),
    })
}

// ----------------------------------------------------------------- records

#[derive(serde::Deserialize)]
struct RecordQuery {
    #[serde(default)]
    q: String,
    #[serde(default, rename = "type")]
    resource_type: String,
    #[serde(default)]
    label: String,
}

#[derive(Template)]
#[template(path = "patient_records.html")]
struct Records {
    layout: Layout,
    rows: Vec<RecordView>,
    total: usize,
    q: String,
    resource_type: String,
    label: String,
    types: Vec<(String, usize)>,
    labels: Vec<&'static str>,
}

async fn records(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    query: web::Query<RecordQuery>,
) -> Result<HttpResponse, PageError> {
    let p = app.client();
    let rows = blocking(move || p.records()).await.map_err(ctx.fail())?;
    let all: Vec<RecordView> = rows.iter().map(RecordView::from_row).collect();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for v in &all {
        *types.entry(v.parts.resource_type.clone()).or_default() += 1;
    }
    let q = query.q.trim().to_owned();
    let mut shown: Vec<RecordView> = all
        .iter()
        .filter(|v| q.is_empty() || v.matches(&q))
        .filter(|v| query.resource_type.is_empty() || v.parts.resource_type == query.resource_type)
        .filter(|v| match query.label.as_str() {
            "" => true,
            "any" => !v.parts.labels.is_empty(),
            "none" => v.parts.labels.is_empty(),
            l => v.parts.labels.iter().any(|x| x == l),
        })
        .cloned()
        .collect();
    shown.sort_by(|a, b| {
        (a.parts.resource_type.as_str(), a.source.as_str())
            .cmp(&(b.parts.resource_type.as_str(), b.source.as_str()))
    });
    page::ok(&Records {
        layout: ctx.layout("My records"),
        total: all.len(),
        rows: shown,
        q,
        resource_type: query.resource_type.clone(),
        label: query.label.clone(),
        types: types.into_iter().collect(),
        labels: SensitivityLabel::ALL.iter().map(|l| l.as_str()).collect(),
    })
}

#[derive(Template)]
#[template(path = "patient_record.html")]
struct RecordPage {
    layout: Layout,
    id: String,
    parts: CategoryParts,
    key_class: String,
    media_type: String,
    created: String,
    /// Pretty JSON for FHIR records; `None` for other files.
    json: Option<String>,
    size: usize,
}

fn record_id(ctx: &Ctx, text: &str) -> Result<RecordId, PageError> {
    text.parse().map_err(|_| ctx.fail()(Problem::not_found("no such record id")))
}

async fn record(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id = record_id(&ctx, &id)?;
    let p = app.client();
    let rec = blocking(move || p.read(&id)).await.map_err(ctx.fail())?;
    let h = &rec.header;
    let json = rec.is_fhir().then(|| String::from_utf8_lossy(&rec.export_bytes()).into_owned());
    page::ok(&RecordPage {
        layout: ctx.layout(format!("Record {}", short(&id))),
        id: id.to_string(),
        parts: CategoryParts::parse(&h.category().to_string()),
        key_class: h.key_class().to_string(),
        media_type: h.media_type().to_owned(),
        created: format_utc(h.created_at()),
        json,
        size: rec.body.len(),
    })
}

/// An attachment response (`Content-Disposition: attachment`).
pub(crate) fn attachment(name: String, media_type: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(media_type.to_owned())
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        })
        .body(body)
}

async fn download(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id = record_id(&ctx, &id)?;
    let p = app.client();
    let rec = blocking(move || p.read(&id)).await.map_err(ctx.fail())?;
    let name = format!("{id}.{}", extension_for(rec.header.media_type()));
    let media = if rec.is_fhir() { "application/fhir+json" } else { "application/octet-stream" };
    Ok(attachment(name, media, rec.export_bytes().to_vec()))
}

// ------------------------------------------------------------------ grants

#[derive(Clone, Debug)]
struct GrantView {
    id: String,
    short_id: String,
    doctor: String,
    doctor_id: String,
    scope: Vec<String>,
    purpose: String,
    created: String,
    until: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "patient_grants.html")]
struct Grants {
    layout: Layout,
    grants: Vec<GrantView>,
}

fn grant_state(g: &GrantSummary, t: medrelay_crypto::Timestamp) -> &'static str {
    if g.revoked {
        "revoked"
    } else if g.active_at(t) {
        "active"
    } else if t < g.not_before {
        "not yet valid"
    } else {
        "expired"
    }
}

async fn grants(ctx: Ctx, app: web::Data<PatientApp>) -> Result<HttpResponse, PageError> {
    let p = app.client();
    let mut list = blocking(move || p.grants()).await.map_err(ctx.fail())?;
    let names = app.doctor_names(list.iter().map(|g| g.doctor).collect()).await;
    list.sort_by_key(|g| std::cmp::Reverse(g.created_at));
    let t = now();
    let grants = list
        .iter()
        .map(|g| GrantView {
            id: g.grant_id.to_string(),
            short_id: short(&g.grant_id),
            doctor: names.get(&g.doctor).cloned().unwrap_or_else(|| "(unknown doctor)".into()),
            doctor_id: short(&g.doctor),
            scope: g.scope.split(',').map(str::to_owned).collect(),
            purpose: g.purpose.clone(),
            created: day(g.created_at),
            until: format_utc(g.not_after),
            state: grant_state(g, t),
        })
        .collect();
    page::ok(&Grants { layout: ctx.layout("Sharing with doctors"), grants })
}

async fn revoke(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id: GrantId = id.parse().map_err(|_| ctx.fail()(Problem::not_found("no such grant id")))?;
    let p = app.client();
    let receipt = blocking(move || p.revoke(&id)).await.map_err(ctx.fail())?;
    Ok(ctx.redirect_with(
        "/grants",
        Flash::ok(format!(
            "Grant {} is revoked (audit log entry {}). The doctor can no longer fetch anything with it.",
            short(&receipt.grant_id),
            receipt.log_index
        )),
    ))
}

/// What the grant form asks for (also its query string).
#[derive(Clone, Debug, Default)]
struct GrantForm {
    doctor: String,
    items: BTreeSet<String>,
    labels: BTreeSet<String>,
    expires: String,
    purpose: String,
    review: bool,
    confirmed: bool,
}

impl GrantForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut f = GrantForm { expires: "30d".into(), purpose: "treatment".into(), ..Default::default() };
        for (k, v) in pairs {
            match k.as_str() {
                "doctor" => f.doctor = v.trim().to_owned(),
                "item" if !v.is_empty() => {
                    f.items.insert(v.clone());
                }
                "label" if !v.is_empty() => {
                    f.labels.insert(v.clone());
                }
                "expires" => f.expires = v.clone(),
                "purpose" => f.purpose = v.clone(),
                "review" => f.review = true,
                "confirmed" => f.confirmed = v == "yes",
                _ => {}
            }
        }
        f
    }

    /// The scope text: a type picked whole drops its narrower picks.
    fn scope_text(&self) -> String {
        let whole: BTreeSet<&str> =
            self.items.iter().filter(|i| !i.contains('?')).map(String::as_str).collect();
        let mut parts: Vec<String> = self
            .items
            .iter()
            .filter(|i| match i.split_once('?') {
                Some((rt, _)) => !whole.contains(rt),
                None => true,
            })
            .cloned()
            .collect();
        parts.extend(self.labels.iter().map(|l| format!("sensitive:{l}")));
        parts.join(",")
    }

    fn checked_item(&self, item: &str) -> bool {
        self.items.contains(item)
    }

    fn checked_label(&self, label: &str) -> bool {
        self.labels.contains(label)
    }
}

/// One pickable scope item.
#[derive(Clone, Debug)]
struct Pick {
    item: String,
    label: String,
    count: usize,
}

/// Resource types offered even before any record of them is imported.
const COMMON_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Immunization",
    "MedicationRequest",
    "Observation",
    "Procedure",
];

/// Pickable items from the patient's own records (with counts), plus the
/// common types.
fn picks(rows: &[RecordView]) -> Vec<(String, Pick, Vec<Pick>)> {
    let mut types: BTreeMap<String, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for t in COMMON_TYPES {
        types.entry((*t).to_owned()).or_default();
    }
    for r in rows {
        if r.parts.resource_type.starts_with('(') {
            continue;
        }
        let e = types.entry(r.parts.resource_type.clone()).or_default();
        e.0 += 1;
        for c in &r.parts.codes {
            *e.1.entry(c.clone()).or_default() += 1;
        }
    }
    types
        .into_iter()
        .map(|(rt, (n, codes))| {
            let whole = Pick { item: rt.clone(), label: format!("All {rt}"), count: n };
            let narrower = codes
                .into_iter()
                .map(|(code, count)| Pick { item: format!("{rt}?category={code}"), label: code, count })
                .collect();
            (rt, whole, narrower)
        })
        .collect()
}

/// A doctor as shown for confirmation.
#[derive(Clone, Debug)]
struct DoctorCard {
    name: String,
    id: String,
    signing: String,
    pre: String,
}

/// The review of a grant before it is signed.
#[derive(Clone, Debug)]
struct GrantReview {
    doctor: DoctorCard,
    scope: String,
    /// Every key class the grant exposes, with what it holds.
    classes: Vec<(String, &'static str)>,
    /// What those classes mean under collusion.
    exposure_note: &'static str,
    covered: usize,
    excluded_sensitive: usize,
    labels: Vec<String>,
    until: String,
    purpose: String,
}

#[derive(Template)]
#[template(path = "patient_grant_new.html")]
struct NewGrant {
    layout: Layout,
    form: GrantForm,
    picks: Vec<(String, Pick, Vec<Pick>)>,
    labels: Vec<(&'static str, usize)>,
    durations: &'static [(&'static str, &'static str)],
    purposes: &'static [(&'static str, &'static str)],
    review: Option<GrantReview>,
    problem: Option<String>,
    problem_title: &'static str,
}

const DURATIONS: &[(&str, &str)] =
    &[("1d", "1 day"), ("7d", "1 week"), ("30d", "30 days"), ("90d", "90 days"), ("365d", "1 year")];
const PURPOSES: &[(&str, &str)] = &[
    ("treatment", "Treatment"),
    ("emergency", "Emergency"),
    ("care-management", "Care management"),
    ("research", "Research"),
    ("patient-request", "At my request"),
];

/// The review's rows of key classes: (class, what it holds).
fn class_rows(scope: &Scope) -> Vec<(String, &'static str)> {
    exposed_classes(scope).into_iter().map(|(c, text)| (c.to_string(), text)).collect()
}

/// Checks a grant form: the doctor (verified directory entry), the scope,
/// the duration and purpose. Returns the review, or the one problem.
async fn review_grant(
    app: &PatientApp,
    form: &GrantForm,
    rows: &[RecordView],
) -> Result<(GrantReview, Scope, u64, Purpose, medrelay_client::transparency::VerifiedPrincipal), String> {
    let doctor: PrincipalId = form
        .doctor
        .parse()
        .map_err(|_| "The doctor id is not valid: it is the 64-character id your doctor reads from `medrelay-doctor whoami`.".to_owned())?;
    let text = form.scope_text();
    if text.is_empty() {
        return Err("Pick at least one kind of record to share.".into());
    }
    let scope: Scope = text.parse().map_err(|e| format!("That selection is not a valid scope: {e}"))?;
    if scope.entries().next().is_none() {
        return Err("Pick at least one kind of record, not only sensitive labels.".into());
    }
    let secs = parse_duration(&form.expires).map_err(|e| e.to_string())?;
    let purpose: Purpose = form.purpose.parse().map_err(|_| "Pick a purpose.".to_owned())?;
    let p = app.client();
    let d = web::block(move || p.doctor(&doctor))
        .await
        .map_err(|_| "the app is busy; try again".to_owned())?
        .map_err(|e| e.to_string())?;
    let pre = d.doctor_key().map_err(|e| e.to_string())?.fingerprint().to_string();
    app.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(d.id, d.name.clone());
    let mut covered = 0;
    let mut excluded_sensitive = 0;
    for r in rows {
        let Some(cat) = r.parts.category() else { continue };
        if scope.matches(&cat) {
            covered += 1;
        } else if !cat.sensitivity().is_empty() {
            let plain = RecordCategory::new(cat.resource_type(), cat.codes().to_vec(), []).ok();
            if plain.is_some_and(|c| scope.matches(&c)) {
                excluded_sensitive += 1;
            }
        }
    }
    let review = GrantReview {
        doctor: DoctorCard {
            name: d.name.clone(),
            id: d.id.to_string(),
            signing: d.signing_key.fingerprint().to_string(),
            pre,
        },
        scope: scope.to_string(),
        classes: class_rows(&scope),
        exposure_note: EXPOSURE_NOTE,
        covered,
        excluded_sensitive,
        labels: scope.included_labels().iter().map(|l| l.to_string()).collect(),
        until: format_utc(now().plus_seconds(secs)),
        purpose: purpose.to_string(),
    };
    Ok((review, scope, secs, purpose, d))
}

async fn patient_rows(ctx: &Ctx, app: &PatientApp) -> Result<Vec<RecordView>, PageError> {
    let p = app.client();
    let rows = blocking(move || p.records()).await.map_err(ctx.fail())?;
    Ok(rows.iter().map(RecordView::from_row).collect())
}

fn label_counts(rows: &[RecordView]) -> Vec<(&'static str, usize)> {
    SensitivityLabel::ALL
        .iter()
        .map(|l| (l.as_str(), rows.iter().filter(|r| r.parts.labels.iter().any(|x| x == l.as_str())).count()))
        .collect()
}

async fn new_grant(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let form = GrantForm::from_pairs(&query);
    let rows = patient_rows(&ctx, &app).await?;
    let (review, problem) = if form.review {
        match review_grant(&app, &form, &rows).await {
            Ok((review, ..)) => (Some(review), None),
            Err(problem) => (None, Some(problem)),
        }
    } else {
        (None, None)
    };
    page::ok(&NewGrant {
        layout: ctx.layout("Share records with a doctor"),
        picks: picks(&rows),
        labels: label_counts(&rows),
        durations: DURATIONS,
        purposes: PURPOSES,
        form,
        review,
        problem,
        problem_title: "Check the form",
    })
}

async fn create_grant(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let form = GrantForm::from_pairs(&body);
    let rows = patient_rows(&ctx, &app).await?;
    let reviewed = review_grant(&app, &form, &rows).await;
    let (review, scope, secs, purpose, doctor) = match reviewed {
        Ok(r) if form.confirmed => r,
        other => {
            let problem = match other {
                Err(p) => p,
                Ok(_) => "Confirm that you compared the fingerprints with your doctor.".into(),
            };
            let review = review_grant(&app, &form, &rows).await.ok().map(|r| r.0);
            return Ok(page::html(
                actix_web::http::StatusCode::BAD_REQUEST,
                &NewGrant {
                    layout: ctx.layout("Share records with a doctor"),
                    picks: picks(&rows),
                    labels: label_counts(&rows),
                    durations: DURATIONS,
                    purposes: PURPOSES,
                    form,
                    review,
                    problem: Some(problem),
                    problem_title: "Not shared",
                },
            ));
        }
    };
    let p = app.client();
    let g = blocking(move || p.grant(&doctor, &scope, secs, purpose)).await.map_err(ctx.fail())?;
    Ok(ctx.redirect_with(
        "/grants",
        Flash::ok(format!(
            "{} can now read {} ({} of your records) until {}.",
            review.doctor.name,
            g.scope,
            review.covered,
            format_utc(g.not_after)
        )),
    ))
}

// ----------------------------------------------------------------- history

async fn history(ctx: Ctx, app: web::Data<PatientApp>) -> Result<HttpResponse, PageError> {
    let p = app.client();
    let h = blocking(move || p.history(&mut |_| ())).await.map_err(ctx.fail())?;
    let names = app.doctor_names(h.items.iter().filter_map(|i| i.doctor).collect()).await;
    crate::history::page(&ctx, "Access history", crate::history::Audience::Patient, &h, &names)
}

// ---------------------------------------------------------------- research

#[derive(Clone, Debug)]
struct SchemaView {
    name: String,
    description: String,
    fields: Vec<FieldView>,
    stored: Option<Vec<(String, String)>>,
}

/// A private study (two aggregators), as listed on the research page.
#[derive(Clone, Debug)]
struct StudyView {
    name: String,
    schema: String,
    description: String,
    min_batch_size: u64,
}

#[derive(Template)]
#[template(path = "patient_research.html")]
struct Research {
    layout: Layout,
    schemas: Vec<SchemaView>,
    studies: Vec<StudyView>,
}

/// The private studies this server leads; none when it is not a study
/// leader (its `404 not_found` on `GET /v1/studies`).
fn studies_or_none(
    p: &Patient,
) -> Result<Vec<medrelay_wire::study::StudyInfo>, medrelay_client::ClientError> {
    match p.studies() {
        Err(medrelay_client::ClientError::Server { status: 404, .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// Where the previews of private studies are kept (schema names have no
/// `:`, so the two kinds never share a key).
fn study_key(study: &str) -> String {
    format!("study:{study}")
}

/// The preview kept under `key`, taken (once) only if `nonce` is the one
/// the page showed with it.
fn take_preview(app: &PatientApp, key: &str, nonce: &str) -> Option<SummaryPreview> {
    let mut previews = app.previews.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match previews.get(key) {
        Some((shown, _)) if shown == nonce => previews.remove(key).map(|(_, p)| p),
        _ => None,
    }
}

fn value_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "(unknown)".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

async fn research(ctx: Ctx, app: web::Data<PatientApp>) -> Result<HttpResponse, PageError> {
    let p = app.client();
    let (schemas, studies) = blocking(move || {
        let mut out = Vec::new();
        for info in p.schemas()? {
            let stored = p.stored_summary(&info.name)?;
            out.push((info, stored));
        }
        Ok((out, studies_or_none(&p)?))
    })
    .await
    .map_err(ctx.fail())?;
    let studies = studies
        .into_iter()
        .map(|info| {
            let field = |k: &str| info.definition.get(k).cloned();
            StudyView {
                description: field("description")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                min_batch_size: field("min_batch_size").and_then(|v| v.as_u64()).unwrap_or(0),
                name: info.name,
                schema: info.schema,
            }
        })
        .collect();
    let schemas = schemas
        .into_iter()
        .map(|(info, stored)| SchemaView {
            fields: field_views(&info),
            name: info.name,
            description: info.description,
            stored: stored
                .map(|doc| doc.values.iter().map(|(k, v)| (k.clone(), value_text(v.as_ref()))).collect()),
        })
        .collect();
    page::ok(&Research { layout: ctx.layout("Help research, privately"), schemas, studies })
}

#[derive(Template)]
#[template(path = "patient_summary.html")]
struct PreviewPage {
    layout: Layout,
    rows: Vec<(String, String, String, bool)>,
    records_used: usize,
    clamped: Vec<String>,
    nonce: String,
    /// Where "send" posts.
    action: String,
    /// For a private study: its minimum batch size (the page says how the
    /// summary travels).
    study_min_batch: Option<u64>,
}

/// The rows of a summary preview: (field, meaning, value, clamped).
fn preview_rows(
    preview: &SummaryPreview,
    info: Option<&medrelay_wire::dp::SchemaInfo>,
) -> Vec<(String, String, String, bool)> {
    let descriptions: BTreeMap<String, String> = info
        .map(|i| field_views(i).into_iter().map(|f| (f.name, f.description)).collect())
        .unwrap_or_default();
    preview
        .doc
        .values
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                descriptions.get(k).cloned().unwrap_or_default(),
                value_text(v.as_ref()),
                preview.clamped.contains(k),
            )
        })
        .collect()
}

fn new_nonce() -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    hex::encode(nonce)
}

async fn preview(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    schema: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let schema = schema.into_inner();
    let p = app.client();
    let name = schema.clone();
    let (preview, info) = blocking(move || {
        let info = p.schemas()?.into_iter().find(|s| s.name == name);
        Ok((p.summary(&name)?, info))
    })
    .await
    .map_err(ctx.fail())?;
    let nonce = new_nonce();
    let page = PreviewPage {
        layout: ctx.layout(format!("Your summary for {schema}")),
        rows: preview_rows(&preview, info.as_ref()),
        records_used: preview.records_used,
        clamped: preview.clamped.clone(),
        nonce: nonce.clone(),
        action: format!("/research/{}/contribute", crate::page::url_part(&schema)),
        study_min_batch: None,
    };
    app.previews.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(schema, (nonce, preview));
    page::ok(&page)
}

/// A private study's summary, derived here for the study's schema after
/// the study is checked against the signed log.
async fn study_preview(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    study: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let study = study.into_inner();
    let p = app.client();
    let name = study.clone();
    let (preview, info, min_batch, description) = blocking(move || {
        let verified = p.study(&name)?;
        let def = verified.definition();
        let schema = def.schema().to_owned();
        let info = p.schemas()?.into_iter().find(|s| s.name == schema);
        Ok((p.summary(&schema)?, info, def.min_batch_size(), def.description().to_owned()))
    })
    .await
    .map_err(ctx.fail())?;
    let nonce = new_nonce();
    let page = PreviewPage {
        layout: ctx.layout(format!("Private study {study}: {description}")),
        rows: preview_rows(&preview, info.as_ref()),
        records_used: preview.records_used,
        clamped: preview.clamped.clone(),
        nonce: nonce.clone(),
        action: format!("/studies/{}/contribute", crate::page::url_part(&study)),
        study_min_batch: Some(min_batch),
    };
    app.previews
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(study_key(&study), (nonce, preview));
    page::ok(&page)
}

/// Sends the summary shown on [`study_preview`] as one report: two
/// encrypted secret shares, one per aggregator (the study checked again).
async fn study_contribute(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    study: web::Path<String>,
    form: web::Form<NonceForm>,
) -> Result<HttpResponse, PageError> {
    let study = study.into_inner();
    let preview = take_preview(&app, &study_key(&study), &form.nonce);
    let Some(preview) = preview else {
        return Ok(ctx.redirect_with(
            &format!("/studies/{}", crate::page::url_part(&study)),
            Flash::problem("That summary is no longer the one on screen; look at it again before sending."),
        ));
    };
    let p = app.client();
    let name = study.clone();
    let resp = blocking(move || {
        let verified = p.study(&name)?;
        if verified.definition().schema() != preview.schema {
            return Err(medrelay_client::ClientError::Invalid(
                "the study changed since its summary was shown; look at it again".into(),
            ));
        }
        p.study_contribute(&verified, &preview)
    })
    .await
    .map_err(ctx.fail())?;
    Ok(ctx.redirect_with(
        "/research",
        Flash::ok(format!(
            "Your report for study {} was sent as two encrypted shares (audit log entry {}). \
             Neither aggregator can read it; analysts get only noisy totals of whole batches.",
            resp.study, resp.log_index
        )),
    ))
}

#[derive(serde::Deserialize)]
struct NonceForm {
    nonce: String,
}

async fn contribute(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    schema: web::Path<String>,
    form: web::Form<NonceForm>,
) -> Result<HttpResponse, PageError> {
    let schema = schema.into_inner();
    let preview = take_preview(&app, &schema, &form.nonce);
    let Some(preview) = preview else {
        return Ok(ctx.redirect_with(
            &format!("/research/{}", crate::page::url_part(&schema)),
            Flash::problem("That summary is no longer the one on screen; look at it again before sending."),
        ));
    };
    let p = app.client();
    let receipt = blocking(move || p.contribute(&preview)).await.map_err(ctx.fail())?;
    Ok(ctx.redirect_with(
        "/research",
        Flash::ok(format!(
            "Your summary for {} was sent (audit log entry {}). Analysts only ever get noisy totals over many patients.",
            receipt.schema, receipt.log_index
        )),
    ))
}

async fn withdraw(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    schema: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let schema = schema.into_inner();
    let p = app.client();
    let receipt = blocking(move || p.withdraw(&schema)).await.map_err(ctx.fail())?;
    Ok(ctx.redirect_with(
        "/research",
        Flash::ok(format!(
            "Your summary for {} was deleted (audit log entry {}); later answers no longer include it.",
            receipt.schema, receipt.log_index
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_text_splits_into_parts() {
        let p = CategoryParts::parse("Observation?category=laboratory,vital-signs#mental-health,genetics");
        assert_eq!(p.resource_type, "Observation");
        assert_eq!(p.codes, ["laboratory", "vital-signs"]);
        assert_eq!(p.labels, ["mental-health", "genetics"]);
        let cat = p.category().expect("category");
        assert_eq!(cat.to_string(), "Observation?category=laboratory,vital-signs#mental-health,genetics");
        let p = CategoryParts::parse("Condition");
        assert_eq!((p.resource_type.as_str(), p.codes.len(), p.labels.len()), ("Condition", 0, 0));
        assert!(CategoryParts::parse("bad type").category().is_none());
    }

    fn review_page(scope: &str) -> String {
        let scope: Scope = scope.parse().expect("scope");
        let review = GrantReview {
            doctor: DoctorCard {
                name: "Dr Grey".into(),
                id: "ab".repeat(32),
                signing: "SHA256:signing".into(),
                pre: "SHA256:pre".into(),
            },
            scope: scope.to_string(),
            classes: class_rows(&scope),
            exposure_note: EXPOSURE_NOTE,
            covered: 3,
            excluded_sensitive: 0,
            labels: scope.included_labels().iter().map(|l| l.to_string()).collect(),
            until: "2026-12-31 00:00 UTC".into(),
            purpose: "treatment".into(),
        };
        let page = NewGrant {
            layout: Layout {
                app: "Patient",
                user: "Alpha".into(),
                user_id: "ab12".into(),
                page: "Share records with a doctor".into(),
                nav: Vec::new(),
                csrf: "token".into(),
                flash: None,
            },
            form: GrantForm::default(),
            picks: Vec::new(),
            labels: Vec::new(),
            durations: DURATIONS,
            purposes: PURPOSES,
            review: Some(review),
            problem: None,
            problem_title: "Check the form",
        };
        page.render().expect("render")
    }

    /// The text of the element with `id` (up to its closing tag).
    fn element<'a>(html: &'a str, id: &str, close: &str) -> &'a str {
        let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("#{id} in {html}"));
        let end = html[start..].find(close).expect("closing tag");
        &html[start..start + end]
    }

    #[test]
    fn the_grant_review_lists_every_exposed_class_and_what_it_means() {
        // Vital signs: the general class only (review finding F6).
        let html = review_page("Observation?category=vital-signs");
        let classes = element(&html, "review-classes", "</ul>");
        assert_eq!(classes.matches("<li>").count(), 1, "{classes}");
        assert!(classes.contains("<strong>general</strong>: general records"), "{classes}");
        assert!(html.contains("Key classes this grant exposes (1)"), "{html}");
        let note = element(&html, "review-exposure", "</p>");
        assert!(note.contains("could read every record of these classes"), "{note}");
        assert!(note.contains("even after you revoke"), "{note}");
        // Every class of a wider scope, labels included, in class order.
        let html = review_page("Condition,MedicationRequest,sensitive:mental-health");
        let classes = element(&html, "review-classes", "</ul>");
        let names: Vec<&str> =
            classes.split("<strong>").skip(1).map(|s| s.split("</strong>").next().expect("name")).collect();
        assert_eq!(names, ["general", "laboratory", "imaging", "medications", "mental-health"]);
        assert!(html.contains("Key classes this grant exposes (5)"), "{html}");
    }

    #[test]
    fn the_scope_drops_narrower_picks_of_a_whole_type() {
        let pairs: Vec<(String, String)> = [
            ("doctor", " abc "),
            ("item", "Observation?category=laboratory"),
            ("item", "Observation"),
            ("item", "Condition?category=problem-list-item"),
            ("label", "mental-health"),
            ("expires", "7d"),
            ("review", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let f = GrantForm::from_pairs(&pairs);
        assert_eq!(f.doctor, "abc");
        assert!(f.review && !f.confirmed);
        let scope: Scope = f.scope_text().parse().expect("scope");
        assert_eq!(
            scope.to_string(),
            "Condition?category=problem-list-item,Observation,sensitive:mental-health"
        );
        assert!(
            f.checked_item("Observation") && f.checked_label("mental-health") && !f.checked_label("genetics")
        );
    }
}
