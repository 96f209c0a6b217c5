//! The patient's import page: FHIR files chosen or dropped on the page are
//! read by this process (the browser hands them over on loopback), planned
//! and labelled by `medrelay-client` exactly as `medrelay-patient import
//! --dry-run` does, and shown — files, records, every sensitivity label and
//! why — before anything is encrypted. Only when the patient confirms are
//! the records encrypted and uploaded, with a progress page. Other
//! documents (PDF, images) are uploaded one at a time with a category and
//! labels, as `medrelay-patient upload` does.
//!
//! Staged files are held in memory (zeroized when dropped) until they are
//! uploaded, replaced or the app quits; at most [`MAX_STAGED`] imports are
//! kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_multipart::Multipart;
use actix_web::{web, HttpResponse};
use askama::Template;
use futures_util::StreamExt as _;
use medrelay_client::import::{
    ImportReport, ImportRequest, ShowLine as _, MAX_FHIR_FILE_BYTES, MAX_IMPORT_BYTES,
};
use medrelay_client::MAX_UPLOAD_BYTES;
use medrelay_crypto::SensitivityLabel;
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::jobs::Jobs;
use crate::page::{self, blocking, Ctx, Flash, Layout, PageError, Problem};
use crate::patient::PatientApp;

/// Imports kept staged at once.
const MAX_STAGED: usize = 2;
/// Most files in one import from the page.
const MAX_FILES: usize = 1_000;
/// Largest form field other than a file.
const MAX_FIELD_BYTES: usize = 4 * 1024;

/// Files read from the page, waiting for the patient's confirmation.
pub(crate) struct Staged {
    files: Vec<(String, Zeroizing<Vec<u8>>)>,
    labels: Vec<SensitivityLabel>,
}

impl Staged {
    /// The files as the client's import takes them.
    fn borrowed(&self) -> Vec<(String, &[u8])> {
        self.files.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect()
    }
}

/// The staged imports, by a random id.
#[derive(Default)]
pub(crate) struct Staging(Mutex<BTreeMap<String, Arc<Staged>>>);

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Staging(..)")
    }
}

impl Staging {
    fn put(&self, staged: Arc<Staged>) -> String {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while all.len() >= MAX_STAGED {
            let Some(first) = all.keys().next().cloned() else { break };
            all.remove(&first);
        }
        all.insert(id.clone(), staged);
        id
    }

    fn take(&self, id: &str) -> Option<Arc<Staged>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id)
    }
}

/// Routes of the import page.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/import", web::get().to(page_get))
        .route("/import", web::post().to(stage))
        .route("/import/{id}/upload", web::post().to(upload))
        .route("/upload", web::post().to(upload_document));
}

/// Document categories offered for other files.
const DOCUMENT_CATEGORIES: &[(&str, &str)] = &[
    ("clinical-note", "Clinical note or letter"),
    ("imaging", "Imaging (scan, X-ray, report)"),
    ("laboratory", "Laboratory report"),
    ("discharge-summary", "Discharge summary"),
    ("other", "Other"),
];

#[derive(Template)]
#[template(path = "patient_import.html")]
struct ImportPage {
    layout: Layout,
    labels: Vec<&'static str>,
    categories: &'static [(&'static str, &'static str)],
    max_mb: u64,
}

async fn page_get(ctx: Ctx) -> Result<HttpResponse, PageError> {
    page::ok(&ImportPage {
        layout: ctx.layout("Import records"),
        labels: SensitivityLabel::ALL.iter().map(|l| l.as_str()).collect(),
        categories: DOCUMENT_CATEGORIES,
        max_mb: MAX_IMPORT_BYTES / (1024 * 1024),
    })
}

/// What a multipart form held: files and the other fields.
#[derive(Default)]
struct Form {
    files: Vec<(String, Zeroizing<Vec<u8>>)>,
    fields: Vec<(String, String)>,
}

/// Reads a multipart form with limits: per file, in all, number of files.
async fn read_form(mut mp: Multipart, per_file: u64, total: u64) -> Result<Form, Problem> {
    let mut form = Form::default();
    let mut sum: u64 = 0;
    while let Some(field) = mp.next().await {
        let mut field =
            field.map_err(|e| Problem::bad_request(format!("the form could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_owned);
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| Problem::bad_request(format!("the upload was cut: {e}")))?;
            sum += chunk.len() as u64;
            let limit = if file_name.is_some() { per_file } else { MAX_FIELD_BYTES as u64 };
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(Problem::bad_request(match &file_name {
                    Some(f) => format!("{f} is larger than {} MB", limit / (1024 * 1024)),
                    None => format!("the form field {name} is too long"),
                }));
            }
            if sum > total {
                return Err(Problem::bad_request(format!(
                    "the files add up to more than {} MB: import them in parts",
                    total / (1024 * 1024)
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        match file_name {
            // A file input left empty sends one nameless, empty part.
            Some(f) if f.is_empty() && bytes.is_empty() => {}
            Some(f) => {
                if form.files.len() == MAX_FILES {
                    return Err(Problem::bad_request(format!("at most {MAX_FILES} files at once")));
                }
                // Only the file's own name, never a client-side path.
                let base = f.rsplit(['/', '\\']).next().unwrap_or_default().to_owned();
                form.files.push((base, bytes));
            }
            None => form.fields.push((name, String::from_utf8_lossy(&bytes).into_owned())),
        }
    }
    Ok(form)
}

fn labels_in(fields: &[(String, String)]) -> Result<Vec<SensitivityLabel>, Problem> {
    fields
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, v)| v.parse().map_err(|_| Problem::bad_request(format!("unknown label {v:?}"))))
        .collect()
}

/// One file of the review.
#[derive(Clone, Debug)]
struct FileView {
    name: String,
    error: Option<String>,
    resources: usize,
    records: usize,
    present: usize,
    notes: Vec<String>,
}

/// One label of the review.
#[derive(Clone, Debug)]
struct LabelView {
    label: String,
    records: usize,
    direct: usize,
    example: String,
    why: String,
}

fn file_views(report: &ImportReport) -> Vec<FileView> {
    report
        .files
        .iter()
        .map(|f| {
            let name = f.path.display().to_string();
            match &f.outcome {
                Ok(o) => FileView {
                    name,
                    error: None,
                    resources: o.resources,
                    records: o.records,
                    present: o.already_present.len(),
                    notes: o
                        .skipped
                        .iter()
                        .map(|s| s.line())
                        .chain(o.duplicates.iter().map(|d| d.line()))
                        .chain(o.problems.iter().map(|p| p.line()))
                        .chain(o.warnings.iter().cloned())
                        .collect(),
                },
                Err(e) => FileView {
                    name,
                    error: Some(e.to_string()),
                    resources: 0,
                    records: 0,
                    present: 0,
                    notes: Vec::new(),
                },
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "patient_import_review.html")]
struct Review {
    layout: Layout,
    id: String,
    files: Vec<FileView>,
    labels: Vec<LabelView>,
    labelled: Vec<(String, String, Vec<String>)>,
    extra_labels: Vec<String>,
    records: usize,
    failed: usize,
}

async fn stage(ctx: Ctx, app: web::Data<PatientApp>, mp: Multipart) -> Result<HttpResponse, PageError> {
    let form = read_form(mp, MAX_FHIR_FILE_BYTES, MAX_IMPORT_BYTES).await.map_err(ctx.fail())?;
    if form.files.is_empty() {
        return Ok(ctx.redirect_with("/import", Flash::problem("Choose or drop at least one FHIR file.")));
    }
    let labels = labels_in(&form.fields).map_err(ctx.fail())?;
    let staged = Staged { files: form.files, labels };
    let staged = Arc::new(staged);
    let p = Arc::clone(&app.patient);
    let s = Arc::clone(&staged);
    let report = blocking(move || {
        let request = ImportRequest { dry_run: true, labels: s.labels.clone(), ..ImportRequest::default() };
        p.import_bytes(&s.borrowed(), &request, &mut |_| ())
    })
    .await
    .map_err(ctx.fail())?;
    let review = Review {
        layout: ctx.layout("Check before uploading"),
        id: String::new(),
        files: file_views(&report),
        labels: report
            .labels
            .iter()
            .map(|l| LabelView {
                label: l.label.to_string(),
                records: l.records,
                direct: l.direct,
                example: l.example.clone(),
                why: l.example_why.clone(),
            })
            .collect(),
        labelled: report
            .labelled
            .iter()
            .map(|l| (l.resource.clone(), l.file.display().to_string(), l.reasons.clone()))
            .collect(),
        extra_labels: staged.labels.iter().map(|l| l.to_string()).collect(),
        records: report.records(),
        failed: report.failed(),
    };
    let id = app.staged.put(staged);
    page::ok(&Review { id, ..review })
}

async fn upload(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    jobs: web::Data<Jobs>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let Some(staged) = app.staged.take(&id) else {
        return Ok(ctx.redirect_with(
            "/import",
            Flash::problem(
                "Those files are no longer staged (the app keeps the last two); choose them again.",
            ),
        ));
    };
    let p = Arc::clone(&app.patient);
    let writes = Arc::clone(&app.writes);
    let job = jobs
        .start("Encrypting and uploading".into(), "records encrypted and uploaded", move |job| {
            let _one_at_a_time = writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let request = ImportRequest { labels: staged.labels.clone(), ..ImportRequest::default() };
            let report = p.import_bytes(&staged.borrowed(), &request, &mut |pr| job.progress(pr))?;
            let flash = if report.failed() == 0 {
                Flash::ok(format!(
                    "{} records encrypted and uploaded, {} were already there.",
                    report.uploaded(),
                    report.already_present()
                ))
            } else {
                let refused: Vec<String> = report
                    .files
                    .iter()
                    .filter(|f| f.outcome.is_err())
                    .map(|f| f.path.display().to_string())
                    .collect();
                Flash::problem(format!(
                    "{} records encrypted and uploaded, {} were already there; refused: {}.",
                    report.uploaded(),
                    report.already_present(),
                    refused.join(", ")
                ))
            };
            Ok(("/records".to_owned(), flash))
        })
        .map_err(ctx.fail())?;
    Ok(page::redirect(&job))
}

async fn upload_document(
    ctx: Ctx,
    app: web::Data<PatientApp>,
    mp: Multipart,
) -> Result<HttpResponse, PageError> {
    let form = read_form(mp, MAX_UPLOAD_BYTES, MAX_UPLOAD_BYTES + MAX_FIELD_BYTES as u64 * 8)
        .await
        .map_err(ctx.fail())?;
    let Some((name, bytes)) = form.files.into_iter().next() else {
        return Ok(ctx.redirect_with("/import", Flash::problem("Choose a file to upload.")));
    };
    let labels = labels_in(&form.fields).map_err(ctx.fail())?;
    let category = form
        .fields
        .iter()
        .find(|(k, _)| k == "category")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "other".into());
    let p = Arc::clone(&app.patient);
    let writes = Arc::clone(&app.writes);
    let shown = name.clone();
    let stored = blocking(move || {
        let _one_at_a_time = writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        p.upload_bytes(&name, &bytes, &category, &labels)
    })
    .await
    .map_err(ctx.fail())?;
    let flash = match stored {
        Some(id) => Flash::ok(format!("{shown} was encrypted and uploaded as record {id}.")),
        None => Flash::ok(format!("{shown} was already uploaded.")),
    };
    Ok(ctx.redirect_with("/records", flash))
}
