//! medrelay-fhir: FHIR R4 in and out of medrelay, with no I/O.
//!
//! Patients bring what they can download — a Synthea or EHR export (a
//! transaction Bundle with `urn:uuid` references), an International Patient
//! Summary (a document Bundle), FHIR Bulk Data NDJSON, single resources —
//! and doctors get back a FHIR Bundle their tools load. This crate turns
//! bytes into planned records and records back into a Bundle:
//!
//! - [`plan_import`]: reads files ([`json`] refuses duplicate keys, deep
//!   nesting and entry floods, naming the entry), keeps every resource type
//!   that can carry a person's data ([`types`]), skips conformance and
//!   terminology resources with the reason, gives resources without an `id`
//!   a stable one ([`ids`]), reports duplicates and bad entries, and labels
//!   every record: by its codes through the security labeling service
//!   ([`sls`], generated from SAMHSA C2S and ONC LEAP SLS value sets), by
//!   `meta.security`, and through references over the whole import
//!   ([`propagate`]), before anything is encrypted;
//! - [`StoredEntry`]: the record body, a `Bundle.entry` that keeps the
//!   `fullUrl` (so references resolve) and marks assigned ids;
//! - [`export`]: the doctor's `collection` Bundle or NDJSON, and a check of
//!   which references resolve.
//!
//! # Threat model
//!
//! Files are the patient's own, but may be malformed or hostile: the size
//! limit is the caller's (the client reads with one), and this crate bounds
//! nesting, entries, Bundle nesting and resource size, and refuses duplicate
//! keys (two parsers would otherwise read two different resources). Errors
//! name the file, entry or line and never echo more than a short excerpt of
//! the input. Labelling errs on the side of labelling: a code in any part of
//! a resource labels it, and labels never fall off (the patient can only add
//! more, with `--label`). What the value sets do not list is not labelled:
//! their coverage is documented in [`sls`] and `data/README.md`, and the
//! patient sees every label and its reason before uploading (`--dry-run`).
//! Labels propagate within one import: pass a chart's files together.
//!
//! # Example
//!
//! ```
//! use medrelay_fhir::{plan_import, Format, ImportOptions, Source};
//! use medrelay_crypto::SensitivityLabel;
//!
//! let export = br#"{"resourceType":"Bundle","type":"transaction","entry":[
//!   {"fullUrl":"urn:uuid:4d1d7e42-0000-4000-8000-000000000001",
//!    "resource":{"resourceType":"Encounter","status":"finished"},
//!    "request":{"method":"POST","url":"Encounter"}},
//!   {"fullUrl":"urn:uuid:4d1d7e42-0000-4000-8000-000000000002",
//!    "resource":{"resourceType":"Condition",
//!      "code":{"coding":[{"system":"http://snomed.info/sct","code":"7200002"}]},
//!      "encounter":{"reference":"urn:uuid:4d1d7e42-0000-4000-8000-000000000001"}},
//!    "request":{"method":"POST","url":"Condition"}},
//!   {"request":{"method":"DELETE","url":"Observation/old"}}]}"#;
//! let plan = plan_import(
//!     &[Source { name: "export.json", bytes: export, format: Format::Json }],
//!     &ImportOptions::default(),
//! );
//! assert_eq!(plan.records.len(), 2);
//! assert_eq!(plan.files[0].skipped.len(), 1); // the DELETE request
//! // The alcoholism diagnosis, and the visit it was made in, are labelled.
//! for r in &plan.records {
//!     assert_eq!(r.category.sensitivity(), [SensitivityLabel::SubstanceUse]);
//! }
//! // Ids were assigned from the urn:uuid fullUrls.
//! assert_eq!(plan.records[0].id, "4d1d7e42-0000-4000-8000-000000000001");
//! let summary = plan.label_summary();
//! assert_eq!(summary[0].records, 2);
//! assert!(summary[0].example_why.contains("SNOMED CT 7200002"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod category;
pub mod domain;
mod entry;
mod error;
pub mod export;
pub mod ids;
mod import;
pub mod json;
mod labels;
pub mod propagate;
pub mod reference;
pub mod sls;
pub mod types;

pub use category::{categorize, category_codes};
pub use entry::{
    EntryFormatError, StoredEntry, ASSIGNED_ID_EXTENSION, FHIR_ENTRY_MEDIA_TYPE, FHIR_MEDIA_TYPE,
    MAX_RESOURCE_BYTES,
};
pub use error::{EntryProblem, FhirError, Location, ProblemKind};
pub use ids::{fhir_record_id, file_record_id, IdOrigin};
pub use import::{
    plan_import, plan_import_with, Duplicate, FileReport, Format, ImportOptions, ImportPlan, LabelSummary,
    PlannedRecord, SkipReason, Skipped, Source, MAX_BUNDLE_NESTING,
};
pub use labels::{direct_labels, parse_label, LabelReason, Why};
