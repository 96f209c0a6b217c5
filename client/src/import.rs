//! The patient's import: files and folders read here (with limits), the
//! whole import planned by `medrelay-fhir` (records, ids, categories, labels
//! propagated over every file) before anything is encrypted, then the new
//! records encrypted and uploaded in bounded batches.
//!
//! A re-run after an interruption (network failure, Ctrl-C) uploads only
//! what the server does not hold yet: record ids are deterministic, and the
//! server is asked what it has before anything is sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use medrelay_crypto::{Batch, KeyClass, PatientPublicKeys, RecordId, SensitivityLabel, SigningKey};
use medrelay_fhir::{
    plan_import, Duplicate, EntryProblem, FhirError, Format, ImportOptions, LabelSummary, PlannedRecord,
    Skipped, Source, FHIR_ENTRY_MEDIA_TYPE,
};
use serde::Serialize;

use crate::keystore::read_limited;
use crate::patient::{LocalRecord, Patient, RECORDS_FILE};
use crate::session::Progress;
use crate::ClientError;

/// Largest FHIR file imported.
pub const MAX_FHIR_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Largest import (all files together: they are planned together, so
/// labels propagate across them).
pub const MAX_IMPORT_BYTES: u64 = 256 * 1024 * 1024;
/// Most files in one import (folders included).
pub const MAX_IMPORT_FILES: usize = 10_000;
/// Records sealed and uploaded per round: bounds memory, and what an
/// interruption can lose. One round is one upload request, one sled
/// transaction and one flush on the server. Larger rounds are not cheaper
/// in space: sled stores a large transaction's writes less compactly (the
/// 1,111-record chart of `benches/fhir_chart.rs` grew the data directory by
/// 2.9 bytes per plaintext byte in rounds of 64, 4.0 in rounds of 256 and
/// 7.8 in rounds of 1,024, debug build).
const ROUND: usize = 64;

/// What to import, and how.
#[derive(Clone, Debug, Default)]
pub struct ImportRequest {
    /// Files and folders (folders are read recursively for `.json`,
    /// `.ndjson` and `.jsonl` files; hidden entries are skipped).
    pub paths: Vec<PathBuf>,
    /// Refuse a file whole if any entry of it has a problem.
    pub strict: bool,
    /// Plan and report only: nothing is encrypted or uploaded.
    pub dry_run: bool,
    /// Labels added to every record of the import.
    pub labels: Vec<SensitivityLabel>,
}

/// What happened to one file.
#[derive(Debug)]
pub struct FileImport {
    /// The file.
    pub path: PathBuf,
    /// What was imported from it, or why nothing was.
    pub outcome: Result<ImportedFile, ClientError>,
}

/// The records and findings of one imported file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportedFile {
    /// Resources found (records, duplicates, skipped, bad entries).
    pub resources: usize,
    /// Records planned from the file.
    pub records: usize,
    /// Newly uploaded (empty on a dry run).
    pub uploaded: Vec<RecordId>,
    /// Already on the server (a re-run): not uploaded again.
    pub already_present: Vec<RecordId>,
    /// Skipped entries, with the reason.
    #[serde(serialize_with = "display_all")]
    pub skipped: Vec<Skipped>,
    /// Duplicates of a resource seen earlier in the import.
    #[serde(serialize_with = "display_all")]
    pub duplicates: Vec<Duplicate>,
    /// Bad entries, skipped (`--strict` refuses the file instead).
    #[serde(serialize_with = "display_all")]
    pub problems: Vec<EntryProblem>,
    /// Warnings.
    pub warnings: Vec<String>,
}

fn display_all<S: serde::Serializer, T: ShowLine>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(ShowLine::line))
}

/// One line a person reads.
pub trait ShowLine {
    /// The line.
    fn line(&self) -> String;
}

impl ShowLine for Skipped {
    fn line(&self) -> String {
        if self.resource_type.is_empty() {
            format!("{}: {}", self.at, self.reason)
        } else {
            format!("{}: {} ({})", self.at, self.resource_type, self.reason)
        }
    }
}

impl ShowLine for Duplicate {
    fn line(&self) -> String {
        let same = if self.identical { "identical" } else { "different content; the first is kept" };
        format!("{}: {} was already at {} ({same})", self.at, self.reference, self.first_at)
    }
}

impl ShowLine for EntryProblem {
    fn line(&self) -> String {
        self.to_string()
    }
}

/// A labelled record, with every reason (what `--dry-run` lists).
#[derive(Clone, Debug, Serialize)]
pub struct LabelledRecord {
    /// `Type/id`.
    pub resource: String,
    /// The file it comes from.
    pub file: PathBuf,
    /// `label: reason`, one per reason.
    pub reasons: Vec<String>,
}

/// The result of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// One entry per file, in order (folders expanded).
    pub files: Vec<FileImport>,
    /// One line per label over the whole import.
    pub labels: Vec<LabelSummary>,
    /// Every labelled record and why.
    pub labelled: Vec<LabelledRecord>,
    /// Files in the folders given that are not FHIR JSON or NDJSON (not read).
    pub ignored: Vec<PathBuf>,
    /// Nothing was uploaded (`--dry-run`).
    pub dry_run: bool,
}

impl ImportReport {
    /// Records uploaded in all.
    pub fn uploaded(&self) -> usize {
        self.ok_files().map(|o| o.uploaded.len()).sum()
    }

    /// Records skipped as already present.
    pub fn already_present(&self) -> usize {
        self.ok_files().map(|o| o.already_present.len()).sum()
    }

    /// Records planned (uploaded, present, or — on a dry run — to upload).
    pub fn records(&self) -> usize {
        self.ok_files().map(|o| o.records).sum()
    }

    /// Files refused whole.
    pub fn failed(&self) -> usize {
        self.files.iter().filter(|f| f.outcome.is_err()).count()
    }

    /// Bad entries over all files.
    pub fn problems(&self) -> usize {
        self.ok_files().map(|o| o.problems.len()).sum()
    }

    fn ok_files(&self) -> impl Iterator<Item = &ImportedFile> {
        self.files.iter().filter_map(|f| f.outcome.as_ref().ok())
    }
}

fn is_fhir_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["json", "ndjson", "jsonl"].contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Expands folders (recursively, sorted, hidden entries skipped, symbolic
/// links not followed into folders); files given by name are kept whatever
/// their extension. Returns (files, ignored files).
pub fn gather_files(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ClientError> {
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(ClientError::io(p))?;
        if meta.is_dir() {
            walk(p, &mut files, &mut ignored)?;
        } else {
            files.push(p.clone());
        }
        if files.len() > MAX_IMPORT_FILES {
            return Err(ClientError::Invalid(format!("more than {MAX_IMPORT_FILES} files to import")));
        }
    }
    Ok((files, ignored))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<(), ClientError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(ClientError::io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(ClientError::io(dir))?;
    entries.sort();
    for p in entries {
        if is_hidden(&p) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).map_err(ClientError::io(&p))?;
        if meta.is_dir() {
            walk(&p, files, ignored)?;
        } else if is_fhir_file(&p) {
            files.push(p);
        } else {
            ignored.push(p);
        }
        if files.len() > MAX_IMPORT_FILES {
            return Err(ClientError::Invalid(format!("more than {MAX_IMPORT_FILES} files to import")));
        }
    }
    Ok(())
}

/// Most records sealed under one batch capsule (one import's records of
/// one key class, bounded so that one batch key opens a bounded amount).
const MAX_BATCH_RECORDS: usize = 4096;

/// An import's batch of one key class.
struct OpenBatch {
    batch: Batch,
    /// Records sealed (or about to be) under it.
    records: usize,
    /// Whether the server holds its capsule.
    sent: bool,
}

/// Seals records with the owner's keys, on every core.
struct Sealer<'k> {
    sk: &'k SigningKey,
    public: &'k PatientPublicKeys,
}

impl Sealer<'_> {
    /// Makes sure `batches` holds a batch with room for this round's
    /// records of each key class they need (one signed capsule per class
    /// for the whole import, a new one when a batch is full); returns the
    /// capsules the server does not hold yet.
    fn batches_for(
        &self,
        patient: &Patient,
        batches: &mut BTreeMap<KeyClass, OpenBatch>,
        records: &[(&PlannedRecord, RecordId)],
    ) -> Result<Vec<KeyClass>, ClientError> {
        let mut need: BTreeMap<KeyClass, usize> = BTreeMap::new();
        for (r, _) in records {
            *need.entry(r.category.key_class()).or_default() += 1;
        }
        let mut unsent = Vec::new();
        for (class, n) in need {
            let full = batches.get(&class).is_none_or(|b| b.records + n > MAX_BATCH_RECORDS);
            if full {
                let batch = patient.new_batch(self.sk, self.public, class)?;
                batches.insert(class, OpenBatch { batch, records: 0, sent: false });
            }
            if let Some(b) = batches.get_mut(&class) {
                b.records += n;
                if !b.sent {
                    unsent.push(class);
                }
            }
        }
        Ok(unsent)
    }

    fn seal_all(
        &self,
        patient: &Patient,
        batches: &BTreeMap<KeyClass, OpenBatch>,
        records: &[(&PlannedRecord, RecordId)],
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
        let per = records.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = records
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(r, id)| {
                                let batch = &batches
                                    .get(&r.category.key_class())
                                    .ok_or_else(|| {
                                        ClientError::Invalid("no batch for a record's key class".into())
                                    })?
                                    .batch;
                                patient.seal_with(
                                    self.sk,
                                    batch,
                                    *id,
                                    r.category.clone(),
                                    FHIR_ENTRY_MEDIA_TYPE,
                                    &r.body,
                                )
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(records.len());
            for h in handles {
                let part =
                    h.join().map_err(|_| ClientError::Invalid("a sealing thread panicked".into()))??;
                out.extend(part);
            }
            Ok(out)
        })
    }
}

impl Patient {
    /// Imports FHIR R4 files and folders (see the module docs). Files that
    /// cannot be read or are refused whole are in the report with their
    /// error; bad entries are skipped and reported. An upload failure stops
    /// the import with that error (what was uploaded stays; run it again to
    /// resume).
    pub fn import(
        &self,
        request: &ImportRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ClientError> {
        let (paths, ignored) = gather_files(&request.paths)?;
        // Read everything first: the plan spans all files.
        let mut read: Vec<(PathBuf, Result<Vec<u8>, ClientError>)> = Vec::with_capacity(paths.len());
        let mut total = 0u64;
        for path in paths {
            let r = read_limited(&path, MAX_FHIR_FILE_BYTES).map_err(|e| match e {
                ClientError::Profile { .. } => ClientError::Fhir {
                    path: path.clone(),
                    source: FhirError::TooLarge {
                        size: std::fs::metadata(&path).map(|m| m.len()).unwrap_or_default(),
                        limit: MAX_FHIR_FILE_BYTES,
                    },
                },
                other => other,
            });
            if let Ok(b) = &r {
                total += b.len() as u64;
                if total > MAX_IMPORT_BYTES {
                    return Err(ClientError::Invalid(format!(
                        "the files add up to more than {MAX_IMPORT_BYTES} bytes: import them in parts \
                         (labels propagate within one import, so keep a chart's files together)"
                    )));
                }
            }
            read.push((path, r));
        }
        self.import_read(read, ignored, request, progress)
    }

    /// Imports files already in memory, e.g. the ones a person dropped on
    /// the web app's import page, as [`Patient::import`] imports files read
    /// from disk (`request.paths` is not used). Each file is named by
    /// `name` in the report; the same size limits apply.
    pub fn import_bytes(
        &self,
        files: &[(String, &[u8])],
        request: &ImportRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ClientError> {
        if files.len() > MAX_IMPORT_FILES {
            return Err(ClientError::Invalid(format!("more than {MAX_IMPORT_FILES} files in one import")));
        }
        let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        if total > MAX_IMPORT_BYTES {
            return Err(ClientError::Invalid(format!(
                "the files add up to more than {MAX_IMPORT_BYTES} bytes: import them in parts \
                 (labels propagate within one import, so keep a chart's files together)"
            )));
        }
        let read = files
            .iter()
            .map(|(name, bytes)| {
                let path = PathBuf::from(name);
                let r = if bytes.len() as u64 > MAX_FHIR_FILE_BYTES {
                    Err(ClientError::Fhir {
                        path: path.clone(),
                        source: FhirError::TooLarge { size: bytes.len() as u64, limit: MAX_FHIR_FILE_BYTES },
                    })
                } else {
                    Ok(bytes.to_vec())
                };
                (path, r)
            })
            .collect();
        self.import_read(read, Vec::new(), request, progress)
    }

    /// Plans, reports and (unless a dry run) uploads files already read.
    fn import_read(
        &self,
        read: Vec<(PathBuf, Result<Vec<u8>, ClientError>)>,
        ignored: Vec<PathBuf>,
        request: &ImportRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ClientError> {
        let names: Vec<String> = read.iter().map(|(p, _)| p.display().to_string()).collect();
        let readable: Vec<usize> = (0..read.len()).filter(|&i| read[i].1.is_ok()).collect();
        let sources: Vec<Source<'_>> = readable
            .iter()
            .filter_map(|&i| {
                let bytes = read[i].1.as_ref().ok()?;
                Some(Source { name: &names[i], bytes, format: Format::for_name(&names[i]) })
            })
            .collect();
        let plan = plan_import(
            &sources,
            &ImportOptions { strict: request.strict, extra_labels: request.labels.clone() },
        );
        drop(sources);

        // The files, in order: read errors, refusals, and plans.
        let mut outcomes: Vec<Result<ImportedFile, ClientError>> = Vec::with_capacity(read.len());
        let mut file_of_source = Vec::with_capacity(readable.len());
        let mut reports = plan.files.iter();
        for (path, r) in read {
            match r {
                Err(e) => outcomes.push(Err(e)),
                Ok(_) => {
                    file_of_source.push(outcomes.len());
                    let Some(f) = reports.next() else { break };
                    outcomes.push(match &f.error {
                        Some(e) => Err(ClientError::Fhir { path, source: e.clone() }),
                        None => Ok(ImportedFile {
                            resources: f.resources,
                            records: f.records,
                            skipped: f.skipped.clone(),
                            duplicates: f.duplicates.clone(),
                            problems: f.problems.clone(),
                            warnings: f.warnings.clone(),
                            ..ImportedFile::default()
                        }),
                    });
                }
            }
        }
        let path_of = |file: usize| PathBuf::from(&names[file_of_source[file]]);
        let mut report = ImportReport {
            labels: plan.label_summary(),
            labelled: plan
                .records
                .iter()
                .filter(|r| !r.reasons.is_empty())
                .map(|r| LabelledRecord {
                    resource: r.reference(),
                    file: path_of(r.file),
                    reasons: r.reasons.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            ignored,
            dry_run: request.dry_run,
            files: Vec::new(),
        };
        if request.dry_run {
            report.files =
                names.iter().zip(outcomes).map(|(n, o)| FileImport { path: n.into(), outcome: o }).collect();
            return Ok(report);
        }

        let me = self.id();
        let existing = self.existing_ids()?;
        let mut todo: Vec<(&PlannedRecord, RecordId)> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &plan.records {
            let id = r.record_id(&me);
            if !seen.insert(id) {
                continue;
            }
            let slot = file_of_source[r.file];
            if existing.contains(&id) {
                if let Some(Ok(f)) = outcomes.get_mut(slot) {
                    f.already_present.push(id);
                }
            } else {
                todo.push((r, id));
            }
        }
        let total = todo.len() as u64;
        progress(Progress { done: 0, total });
        // Derived once: the eight class public keys cost tens of
        // milliseconds to derive.
        let public = self.keys.public_keys();
        let sealer = Sealer { sk: &self.sk, public: &public };
        let mut index = self.index()?;
        let mut done = 0u64;
        let mut failure = None;
        let mut batches: BTreeMap<KeyClass, OpenBatch> = BTreeMap::new();
        for round in todo.chunks(ROUND) {
            let result = sealer.batches_for(self, &mut batches, round).and_then(|unsent| {
                let sealed = sealer.seal_all(self, &batches, round)?;
                let ids: Vec<RecordId> = round.iter().map(|(_, id)| *id).collect();
                let capsules: Vec<_> =
                    unsent.iter().filter_map(|c| batches.get(c)).map(|b| b.batch.capsule()).collect();
                let stored =
                    self.upload_sealed(&capsules, ids.into_iter().zip(sealed).collect(), &mut |_| ())?;
                for c in &unsent {
                    if let Some(b) = batches.get_mut(c) {
                        b.sent = true;
                    }
                }
                Ok(stored)
            });
            match result {
                Ok(stored) => {
                    for ((r, id), _) in round.iter().zip(&stored) {
                        index.insert(
                            id.to_string(),
                            LocalRecord {
                                category: r.category.to_string(),
                                media_type: FHIR_ENTRY_MEDIA_TYPE.into(),
                                source: format!("{}#{}", path_of(r.file).display(), r.reference()),
                                labels: r.reasons.iter().map(ToString::to_string).collect(),
                            },
                        );
                        if let Some(Ok(f)) = outcomes.get_mut(file_of_source[r.file]) {
                            f.uploaded.push(*id);
                        }
                    }
                    done += stored.len() as u64;
                    progress(Progress { done, total });
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            // The index follows the server round by round, so an
            // interrupted import leaves it consistent.
            self.profile.write_state(RECORDS_FILE, &index)?;
        }
        self.profile.write_state(RECORDS_FILE, &index)?;
        if let Some(e) = failure {
            return Err(ClientError::Interrupted {
                uploaded: done as usize,
                total: total as usize,
                source: Box::new(e),
            });
        }
        report.files =
            names.iter().zip(outcomes).map(|(n, o)| FileImport { path: n.into(), outcome: o }).collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn folders_are_read_recursively_in_order() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for f in
            ["a.json", "b/Patient.ndjson", "b/c/x.JSON", "b/readme.txt", ".hidden.json", ".git/config.json"]
        {
            std::fs::write(root.join(f), b"{}").unwrap();
        }
        let (files, ignored) = gather_files(&[root.to_path_buf()]).unwrap();
        let rel: Vec<String> =
            files.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(rel, ["a.json", "b/Patient.ndjson", "b/c/x.JSON"]);
        assert_eq!(ignored, [root.join("b/readme.txt")]);
        // A file named explicitly is read whatever its extension.
        let (files, _) = gather_files(&[root.join("b/readme.txt")]).unwrap();
        assert_eq!(files.len(), 1);
        assert!(gather_files(&[root.join("missing")]).is_err());
    }
}
