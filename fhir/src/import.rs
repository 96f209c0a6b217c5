//! Planning an import: every file read, every resource given an id, a
//! category and its labels (propagation over the whole import included),
//! before anything is encrypted. The client then encrypts and uploads the
//! plan's records.
//!
//! # Inputs
//!
//! A file is a single resource, a Bundle of any type (collection,
//! transaction, batch, document — the International Patient Summary is one
//! —, message, searchset, history, and their responses, with nested Bundles
//! read recursively up to [`MAX_BUNDLE_NESTING`] deep), or FHIR Bulk Data
//! NDJSON (one resource per line, `.ndjson`).
//!
//! # Outcomes per resource
//!
//! - a **record**: any FHIR R4 type that can carry a person's data
//!   ([`crate::types`]);
//! - **skipped** with a reason: conformance, terminology and knowledge
//!   resources (not patient data), and Bundle entries without a resource
//!   (`GET`/`DELETE` requests);
//! - a **duplicate** of an earlier resource of the import (same type and
//!   id): reported, not fatal; the first is kept;
//! - a **problem** (not a resource, unknown type, invalid id, too large):
//!   reported with where and why, and skipped; with `strict` the whole file
//!   is refused instead.
//!
//! Whole-file errors (not JSON, duplicate keys, too deep, too many entries,
//! see [`crate::json`]) refuse the file: nothing of it is imported.

use std::collections::{BTreeMap, HashMap};

use medrelay_crypto::{PrincipalId, RecordCategory, RecordId, SensitivityLabel};
use serde_json::Value;

use crate::category::categorize;
use crate::entry::{StoredEntry, MAX_RESOURCE_BYTES};
use crate::error::{EntryProblem, FhirError, Location, ProblemKind};
use crate::ids::{assign_id, fhir_record_id, is_valid_id, IdOrigin};
use crate::json::{parse_strict, MAX_ENTRIES};
use crate::labels::{direct_labels, LabelReason, Why};
use crate::propagate::{propagate, Node};
use crate::sls::LabelTable;
use crate::types::{classify, NotPatientData, TypeClass};

/// Most Bundles inside Bundles (a batch-response holding searchsets is 2).
pub const MAX_BUNDLE_NESTING: usize = 4;

/// How a file's bytes are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document: a resource or a Bundle.
    Json,
    /// FHIR Bulk Data NDJSON: one resource per line.
    Ndjson,
}

impl Format {
    /// By file name: `.ndjson` (and `.jsonl`) are NDJSON, everything else
    /// one JSON document.
    pub fn for_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            Format::Ndjson
        } else {
            Format::Json
        }
    }
}

/// One file to import.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// Its name, for reports.
    pub name: &'a str,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Its layout.
    pub format: Format,
}

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Refuse a file whole if any entry of it has a problem.
    pub strict: bool,
    /// Labels the patient adds to every record of the import.
    pub extra_labels: Vec<SensitivityLabel>,
}

/// Why a resource was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Not patient data.
    NotPatientData(NotPatientData),
    /// A Bundle entry without a resource (a `GET` or `DELETE` request, or a
    /// response without a body).
    NoResource {
        /// `request.method`, if any.
        method: Option<String>,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotPatientData(k) => write!(f, "{k}, not patient data"),
            SkipReason::NoResource { method: Some(m) } => write!(f, "entry without a resource ({m} request)"),
            SkipReason::NoResource { method: None } => f.write_str("entry without a resource"),
        }
    }
}

/// A skipped resource or entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where.
    pub at: Location,
    /// Its `resourceType` (empty for an entry without a resource).
    pub resource_type: String,
    /// Why.
    pub reason: SkipReason,
}

/// A resource whose type and id an earlier one of the import already had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// Where.
    pub at: Location,
    /// `Type/id`.
    pub reference: String,
    /// The file of the one kept.
    pub first_file: usize,
    /// Where the kept one is.
    pub first_at: Location,
    /// Whether the two are the same JSON value.
    pub identical: bool,
}

/// What happened to one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    /// The file's name.
    pub name: String,
    /// Set if the file was refused whole (nothing of it is in the plan).
    pub error: Option<FhirError>,
    /// Resources found (records, duplicates, skipped, problems).
    pub resources: usize,
    /// Records planned from this file.
    pub records: usize,
    /// Resources and entries skipped, with the reason.
    pub skipped: Vec<Skipped>,
    /// Duplicates (not imported again).
    pub duplicates: Vec<Duplicate>,
    /// Entries with problems (skipped, or the file refused under `strict`).
    pub problems: Vec<EntryProblem>,
    /// Warnings (several Patient resources, …).
    pub warnings: Vec<String>,
}

/// One resource to encrypt and upload.
#[derive(Clone, Debug)]
pub struct PlannedRecord {
    /// Index of its file in the import.
    pub file: usize,
    /// Where in the file.
    pub at: Location,
    /// `resourceType`.
    pub resource_type: String,
    /// `id` (as given, or assigned).
    pub id: String,
    /// Set if the importer assigned the id.
    pub assigned_id: Option<IdOrigin>,
    /// The entry's `fullUrl`.
    pub full_url: Option<String>,
    /// Category, labels included (the record header's).
    pub category: RecordCategory,
    /// Why each label is there.
    pub reasons: Vec<LabelReason>,
    /// The record body: a [`StoredEntry`].
    pub body: Vec<u8>,
}

impl PlannedRecord {
    /// Its record id for `owner`.
    pub fn record_id(&self, owner: &PrincipalId) -> RecordId {
        fhir_record_id(owner, &self.resource_type, &self.id)
    }

    /// `Type/id`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

/// The plan of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportPlan {
    /// One report per source, in order.
    pub files: Vec<FileReport>,
    /// The records, in file and entry order.
    pub records: Vec<PlannedRecord>,
}

/// One label over the whole import: how many records, and one example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSummary {
    /// The label.
    pub label: SensitivityLabel,
    /// Records carrying it.
    pub records: usize,
    /// Of those, labelled by their own content (codes, meta.security,
    /// `--label`); the rest through references.
    pub direct: usize,
    /// `Type/id` of an example.
    pub example: String,
    /// Why the example has it.
    pub example_why: String,
}

impl ImportPlan {
    /// Files refused whole.
    pub fn failed_files(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_some()).count()
    }

    /// Entry problems over all files.
    pub fn problems(&self) -> usize {
        self.files.iter().map(|f| f.problems.len()).sum()
    }

    /// One line per label: count and an example (a directly labelled one
    /// when there is one).
    pub fn label_summary(&self) -> Vec<LabelSummary> {
        let mut out: BTreeMap<SensitivityLabel, LabelSummary> = BTreeMap::new();
        for r in &self.records {
            for &label in r.category.sensitivity() {
                let Some(why) = r.reasons.iter().find(|x| x.label == label) else { continue };
                let direct = !matches!(why.why, Why::Reference { .. });
                let s = out.entry(label).or_insert_with(|| LabelSummary {
                    label,
                    records: 0,
                    direct: 0,
                    example: r.reference(),
                    example_why: why.why.to_string(),
                });
                s.records += 1;
                if direct {
                    if s.direct == 0 {
                        s.example = r.reference();
                        s.example_why = why.why.to_string();
                    }
                    s.direct += 1;
                }
            }
        }
        out.into_values().collect()
    }
}

/// A resource found in a file, before ids and labels.
struct Candidate {
    file: usize,
    at: Location,
    resource_type: String,
    full_url: Option<String>,
    resource: Value,
}

struct Reader<'r> {
    file: usize,
    report: &'r mut FileReport,
    out: Vec<Candidate>,
}

impl Reader<'_> {
    fn problem(&mut self, at: &Location, kind: ProblemKind) {
        self.report.resources += 1;
        self.report.problems.push(EntryProblem { at: at.clone(), kind });
    }

    /// Reads one resource (or Bundle) found at `at`.
    fn read(
        &mut self,
        value: Value,
        at: Location,
        full_url: Option<String>,
        nesting: usize,
    ) -> Result<(), FhirError> {
        let Some(rt) = value.get("resourceType").and_then(Value::as_str).map(str::to_owned) else {
            self.problem(&at, ProblemKind::NotAResource);
            return Ok(());
        };
        match classify(&rt) {
            None => {
                let shown: String = rt.chars().take(64).collect();
                self.problem(&at, ProblemKind::UnknownType(shown));
            }
            Some(TypeClass::NotPatientData(k)) => {
                self.report.resources += 1;
                self.report.skipped.push(Skipped {
                    at,
                    resource_type: rt,
                    reason: SkipReason::NotPatientData(k),
                });
            }
            Some(TypeClass::Bundle) => self.read_bundle(value, &at, nesting)?,
            Some(TypeClass::Record(_)) => {
                self.report.resources += 1;
                self.out.push(Candidate {
                    file: self.file,
                    at,
                    resource_type: rt,
                    full_url,
                    resource: value,
                });
            }
        }
        Ok(())
    }

    fn read_bundle(&mut self, bundle: Value, at: &Location, nesting: usize) -> Result<(), FhirError> {
        if nesting >= MAX_BUNDLE_NESTING {
            return Err(FhirError::BundleNesting { at: at.to_string(), limit: MAX_BUNDLE_NESTING });
        }
        let Value::Object(mut bundle) = bundle else { return Ok(()) };
        let entries = match bundle.remove("entry") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        for (i, entry) in entries.into_iter().enumerate() {
            let here = at.entry(i);
            let Value::Object(mut entry) = entry else {
                self.problem(&here, ProblemKind::MalformedEntry("not a JSON object"));
                continue;
            };
            let full_url = match entry.remove("fullUrl") {
                None => None,
                Some(Value::String(u)) => Some(u),
                Some(_) => {
                    self.problem(&here, ProblemKind::MalformedEntry("fullUrl is not a string"));
                    continue;
                }
            };
            match entry.remove("resource") {
                Some(resource) => self.read(resource, here, full_url, nesting + 1)?,
                None => {
                    let method = entry
                        .get("request")
                        .and_then(|r| r.get("method"))
                        .and_then(Value::as_str)
                        .map(|m| m.chars().take(16).collect());
                    self.report.skipped.push(Skipped {
                        at: here,
                        resource_type: String::new(),
                        reason: SkipReason::NoResource { method },
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads one source into candidates, or refuses it.
fn read_source(file: usize, src: &Source<'_>, report: &mut FileReport) -> Result<Vec<Candidate>, FhirError> {
    let mut r = Reader { file, report, out: Vec::new() };
    match src.format {
        Format::Json => {
            let v = parse_strict(src.bytes).map_err(|e| e.into_fhir())?;
            r.read(v, Location::default(), None, 0)?;
        }
        Format::Ndjson => {
            let mut lines = 0usize;
            for (n, line) in src.bytes.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines += 1;
                if lines > MAX_ENTRIES {
                    return Err(FhirError::TooManyLines { limit: MAX_ENTRIES });
                }
                let at = Location { line: Some(n + 1), ..Location::default() };
                match parse_strict(line) {
                    Ok(v) => r.read(v, at, None, 0)?,
                    Err(e) => {
                        let at = Location { line: Some(n + 1), path: e.at };
                        r.problem(&at, ProblemKind::Json(e.reason));
                    }
                }
            }
        }
    }
    Ok(r.out)
}

/// A candidate with its id settled.
struct Identified {
    c: Candidate,
    id: String,
    assigned: Option<IdOrigin>,
    /// Canonical JSON, for duplicate comparison and size.
    canonical: Vec<u8>,
}

fn identify(c: Candidate) -> Result<Identified, EntryProblem> {
    let mut c = c;
    let (id, assigned) = match c.resource.get("id") {
        Some(Value::String(id)) if is_valid_id(id) => (id.clone(), None),
        Some(other) => {
            let shown = match other {
                Value::String(s) => s.chars().take(80).collect(),
                v => v.to_string().chars().take(80).collect(),
            };
            let kind = ProblemKind::InvalidId { resource_type: c.resource_type.clone(), id: shown };
            return Err(EntryProblem { at: c.at, kind });
        }
        None => {
            let (id, origin) = assign_id(&c.resource_type, c.full_url.as_deref(), &c.resource);
            if let Value::Object(o) = &mut c.resource {
                o.insert("id".into(), Value::String(id.clone()));
            }
            (id, Some(origin))
        }
    };
    let canonical = serde_json::to_vec(&c.resource).unwrap_or_default();
    if canonical.len() > MAX_RESOURCE_BYTES {
        let kind = ProblemKind::TooLarge {
            resource_type: c.resource_type.clone(),
            size: canonical.len(),
            limit: MAX_RESOURCE_BYTES,
        };
        return Err(EntryProblem { at: c.at, kind });
    }
    Ok(Identified { c, id, assigned, canonical })
}

/// Plans the import of `sources` (see the module docs). Pure: bytes in,
/// records out.
pub fn plan_import(sources: &[Source<'_>], options: &ImportOptions) -> ImportPlan {
    plan_import_with(LabelTable::embedded(), sources, options)
}

/// [`plan_import`] with another label table (tests).
pub fn plan_import_with(table: &LabelTable, sources: &[Source<'_>], options: &ImportOptions) -> ImportPlan {
    let mut files: Vec<FileReport> = Vec::with_capacity(sources.len());
    let mut kept: Vec<Identified> = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (fi, src) in sources.iter().enumerate() {
        let mut report = FileReport { name: src.name.to_owned(), ..FileReport::default() };
        let candidates = match read_source(fi, src, &mut report) {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(e);
                files.push(report);
                continue;
            }
        };
        let mut mine = Vec::with_capacity(candidates.len());
        for c in candidates {
            match identify(c) {
                Ok(i) => mine.push(i),
                Err(p) => report.problems.push(p),
            }
        }
        report.problems.sort_by(|a, b| a.at.cmp(&b.at));
        if options.strict && !report.problems.is_empty() {
            let count = report.problems.len();
            let first = Box::new(report.problems[0].clone());
            report.error = Some(FhirError::Strict { count, first });
            files.push(report);
            continue;
        }
        // Duplicates, within the file and against earlier files.
        for i in mine {
            let key = (i.c.resource_type.clone(), i.id.clone());
            if let Some(&k) = seen.get(&key) {
                let first = &kept[k];
                report.duplicates.push(Duplicate {
                    at: i.c.at.clone(),
                    reference: format!("{}/{}", key.0, key.1),
                    first_file: first.c.file,
                    first_at: first.c.at.clone(),
                    identical: first.canonical == i.canonical,
                });
                continue;
            }
            seen.insert(key, kept.len());
            report.records += 1;
            kept.push(i);
        }
        let patients: Vec<String> = kept
            .iter()
            .filter(|i| i.c.file == fi && i.c.resource_type == "Patient")
            .map(|i| format!("Patient/{}", i.id))
            .collect();
        if patients.len() > 1 {
            report.warnings.push(format!(
                "holds {} Patient resources ({}); all are imported as this patient's records",
                patients.len(),
                patients.join(", ")
            ));
        }
        files.push(report);
    }

    // Labels: direct, then propagated over the whole import.
    let mut labels: Vec<Vec<LabelReason>> = kept
        .iter()
        .map(|i| {
            let mut l = direct_labels(table, &i.c.resource);
            for &label in &options.extra_labels {
                l.push(LabelReason { label, why: Why::Requested });
            }
            l
        })
        .collect();
    let nodes: Vec<Node<'_>> = kept
        .iter()
        .map(|i| Node {
            resource_type: &i.c.resource_type,
            id: &i.id,
            full_url: i.c.full_url.as_deref(),
            resource: &i.c.resource,
        })
        .collect();
    propagate(&nodes, &mut labels);
    drop(nodes);

    let mut records = Vec::with_capacity(kept.len());
    for (i, reasons) in kept.into_iter().zip(labels) {
        let set: Vec<SensitivityLabel> = reasons.iter().map(|r| r.label).collect();
        let category = match categorize(&i.c.resource, &i.c.resource_type, set) {
            Ok(c) => c,
            Err(_) => {
                // FHIR R4 type names all fit the category syntax; unreachable
                // in practice, reported rather than trusted.
                let f = &mut files[i.c.file];
                f.records -= 1;
                f.problems.push(EntryProblem { at: i.c.at, kind: ProblemKind::NotAResource });
                continue;
            }
        };
        let entry =
            StoredEntry { full_url: i.c.full_url.clone(), resource: i.c.resource, assigned_id: i.assigned };
        records.push(PlannedRecord {
            file: i.c.file,
            at: i.c.at,
            resource_type: i.c.resource_type,
            id: i.id,
            assigned_id: i.assigned,
            full_url: i.c.full_url,
            category,
            reasons,
            body: entry.to_body(),
        });
    }
    ImportPlan { files, records }
}
