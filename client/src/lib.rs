//! medrelay-client: the library behind `medrelay-patient`,
//! `medrelay-doctor` (also the analyst's client) and `medrelay-auditor`.
//!
//! - [`http`]: a blocking HTTP client over the `medrelay-wire` types, with
//!   challenge-response authentication and an in-memory token cache.
//! - [`keystore`]: the profile directory; secret keys sealed under a
//!   passphrase with the crypto crate's key-file format.
//! - [`import`]: the patient's FHIR import (files and folders read here, the
//!   whole import planned and labelled by `medrelay-fhir` before anything is
//!   encrypted, then encrypted and uploaded in bounded rounds).
//! - [`dp`]: the patient's summary preview (clamped into the schema's
//!   public bounds) and the analyst's query builder.
//! - [`study`]: private studies: the definition checked against the log,
//!   reports sealed to two aggregators, releases checked and analysed.
//! - [`Patient`], [`Doctor`], [`Analyst`], [`Auditor`]: the operations each role runs,
//!   returning typed results (no printing), so the CLIs, the demo and the
//!   end-to-end tests share them.
//!
//! # Threat model
//!
//! The client machine is trusted; the server and the network are not. All
//! encryption, signing and decryption happens here: only ciphertext,
//! signatures and public keys leave. The client verifies what the server
//! returns before trusting it: directory entries by their registration
//! signatures, grants by the patient's signature, records by the owner's
//! signature and the capsule-fragment proofs, and the audit log by signed
//! checkpoints (key pinned at `init`), consistency proofs against the last
//! checkpoint seen, and inclusion proofs. Secrets (keys, passphrases,
//! bearer tokens, plaintext) are zeroized, never printed by `Debug`, never
//! in an error message. Every answer is read with a size limit.
//! The one exception to "only ciphertext leaves" is a DP summary: a few
//! coarse values a patient derives here from their own records, sees, and
//! explicitly submits (`contribute`); it is clamped into the schema's
//! public bounds before it leaves. The decrypted FHIR JSON it is derived
//! from is parsed into `serde_json::Value`s, which are dropped right after
//! derivation but not zeroized.
//! Out of scope: a compromised client machine; a server that withholds
//! service; a log key that was already malicious at first use (compare the
//! fingerprint out of band).
//!
//! # Example
//!
//! ```no_run
//! use medrelay_client::dp::{build_query, QueryArgs};
//! use medrelay_client::{Analyst, Connect, Doctor, FetchFormat, ImportRequest, Passphrase, Patient, ServerOptions};
//! use medrelay_policy::Purpose;
//! use std::path::{Path, PathBuf};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ServerOptions::new("http://127.0.0.1:8443");
//! let pass = Passphrase::new("correct horse battery")?;
//! let patient = Patient::init(Path::new("/tmp/p"), &server, "Alpha", &pass)?;
//! let request = ImportRequest { paths: vec![PathBuf::from("tests/data/fhir-patient-alpha.json")], ..Default::default() };
//! let report = patient.import(&request, &mut |_| ())?;
//! assert_eq!(report.failed(), 0);
//!
//! let doctor = Doctor::init(Path::new("/tmp/d"), &server, "Dr Bravo", "<operator token>", &pass)?;
//! let d = patient.doctor(&doctor.id())?;
//! let scope = "Observation?category=laboratory".parse()?;
//! patient.grant(&d, &scope, 30 * 86_400, Purpose::Treatment)?;
//! for p in doctor.shared()? {
//!     for r in p.records {
//!         let fetched = doctor.fetch(&r.record_id)?;
//!         println!("{}", String::from_utf8_lossy(&fetched.record.export_bytes()));
//!     }
//! }
//! // Or the whole chart, as one FHIR Bundle.
//! let chart = doctor.fetch_all(&patient.id(), Path::new("/tmp/chart"), FetchFormat::Bundle, &mut |_| ())?;
//! println!("{} resources in {:?}", chart.resources, chart.bundle);
//!
//! // Research without sharing records: the patient derives a summary here,
//! // looks at it and submits it; an analyst gets only noisy aggregates.
//! let preview = patient.summary("health-basics")?;
//! println!("{:?} (clamped into bounds: {:?})", preview.doc.values, preview.clamped);
//! patient.contribute(&preview)?;
//! let analyst = Analyst::init(Path::new("/tmp/a"), &server, "Analyst", "<operator token>", &pass)?;
//! let args = QueryArgs {
//!     statistic: vec!["count".into()],
//!     filters: vec!["diabetes=true".into()],
//!     epsilon: Some(0.1),
//!     ..QueryArgs::default()
//! };
//! let query = build_query(&analyst.schema("health-basics")?, &args)?;
//! let answer = analyst.query("health-basics", &query)?;
//! println!("{:?}, {:?}; ε left {}", answer.answer.value, answer.answer.accuracy, answer.budget.remaining_epsilon);
//! # let _ = Connect::default();
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analyst;
mod auditor;
#[cfg(feature = "cli")]
pub mod cli;
mod doctor;
pub mod domain;
pub mod dp;
mod error;
pub mod http;
pub mod import;
pub mod keystore;
mod patient;
mod session;
pub mod study;
pub mod time;
pub mod transparency;

pub use analyst::Analyst;
pub use auditor::{
    accesses_in, grants_in, AccessItem, AuditGrant, Auditor, Filter, Review, VerifiedLog, VerifyReport,
};
pub use doctor::{
    Doctor, FetchAllReport, FetchFormat, FetchReport, FetchedRecord, SharedPatient, SharedRecord,
    WrittenRecord,
};
pub use dp::SummaryPreview;
pub use error::ClientError;
pub use http::{Http, ServerOptions};
pub use import::{FileImport, ImportReport, ImportRequest, ImportedFile, LabelledRecord};
pub use keystore::{default_profile_dir, Passphrase, Profile, ProfileInfo};
pub use patient::{history_item, History, HistoryItem, LocalRecord, Patient, RecordRow, MAX_UPLOAD_BYTES};
pub use session::{
    extension_for, is_fhir_media_type, media_type_for, validate_name, Connect, GrantSummary, Identity,
    OpenedRecord, Progress,
};
