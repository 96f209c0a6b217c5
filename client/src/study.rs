//! Private studies, client side.
//!
//! A patient contributes to a study without any server seeing the summary:
//! the client checks the study definition against the signed log (the
//! `study added` entry with the definition's SHA-256, by inclusion proof)
//! and its schema likewise, derives the summary from the patient's own
//! records as for `contribute`, encodes and shards it with Prio3, seals one
//! share to each aggregator's HPKE key **from the verified definition**, and
//! uploads the sealed report to the leader. A leader that served another
//! definition (say, with its own key in the helper's slot) is caught by the
//! log check before anything is sealed.
//!
//! An analyst releases a batch (once; its cost is logged before it is
//! sent) and computes every statistic locally from the noisy release with
//! the definition's own noise plan, after checking each release's
//! `study batch released` log entry.

use medrelay_dp::study::{
    analyze, ReleasedSums, ReportSealer, StudyDefinition, StudyEncoding, StudyNoise, StudyResults,
};
use medrelay_dp::Summary;
use medrelay_policy::{LogEvent, StudyAggregator, StudyEvent};
use medrelay_wire::study::{
    ReleaseList, StudyInfo, StudyList, StudyRelease, StudyStatus, UploadReportsRequest,
    UploadReportsResponse, MAX_UPLOAD_BODY_BYTES,
};
use medrelay_wire::B64;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::dp::SummaryPreview;
use crate::http::{check_schema_name, Http, MAX_ANSWER_BYTES, MAX_BATCH_ANSWER_BYTES};
use crate::keystore::Profile;
use crate::transparency::{advance_checkpoint, proven_event, verified_schema};
use crate::ClientError;

/// A study whose definition and schema verified against the log.
#[derive(Debug)]
pub struct VerifiedStudy {
    /// What the leader served.
    pub info: StudyInfo,
    /// The definition checked against its schema.
    pub encoding: StudyEncoding,
}

impl VerifiedStudy {
    /// The definition.
    pub fn definition(&self) -> &StudyDefinition {
        self.encoding.definition()
    }
}

/// The `/v1/studies` endpoints.
impl Http {
    /// `GET /v1/studies`.
    pub fn studies(&self) -> Result<StudyList, ClientError> {
        self.authed("GET", "/v1/studies", None, MAX_ANSWER_BYTES)
    }

    /// `GET /v1/studies/{name}`.
    pub fn study(&self, name: &str) -> Result<StudyInfo, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/studies/{name}"), None, MAX_ANSWER_BYTES)
    }

    /// `POST /v1/studies/{name}/reports` (patients).
    pub fn upload_study_reports(
        &self,
        name: &str,
        reports: Vec<Vec<u8>>,
    ) -> Result<UploadReportsResponse, ClientError> {
        check_schema_name(name)?;
        let body =
            serde_json::to_vec(&UploadReportsRequest { reports: reports.into_iter().map(B64).collect() })
                .map_err(|e| ClientError::Protocol(format!("encoding the upload: {e}")))?;
        if body.len() > MAX_UPLOAD_BODY_BYTES {
            return Err(ClientError::Invalid(format!("upload larger than {MAX_UPLOAD_BODY_BYTES} bytes")));
        }
        self.authed("POST", &format!("/v1/studies/{name}/reports"), Some(body), MAX_ANSWER_BYTES)
    }

    /// `GET /v1/studies/{name}/status` (analysts).
    pub fn study_status(&self, name: &str) -> Result<StudyStatus, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/studies/{name}/status"), None, MAX_ANSWER_BYTES)
    }

    /// `POST /v1/studies/{name}/batches/{batch}/release` (analysts).
    pub fn study_release(&self, name: &str, batch: u64) -> Result<StudyRelease, ClientError> {
        check_schema_name(name)?;
        self.authed("POST", &format!("/v1/studies/{name}/batches/{batch}/release"), None, MAX_ANSWER_BYTES)
    }

    /// `GET /v1/studies/{name}/releases` (analysts).
    pub fn study_releases(&self, name: &str) -> Result<ReleaseList, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/studies/{name}/releases"), None, MAX_BATCH_ANSWER_BYTES)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Fetches study `name` and checks it: the definition parses and hashes to
/// the stated SHA-256, the leader's `study added` entry at its log index
/// records that hash under that name (inclusion proof against a checkpoint
/// consistent with the one this profile stored), and the definition fits
/// its schema, itself checked against the log.
pub fn verified_study(http: &Http, profile: &Profile, name: &str) -> Result<VerifiedStudy, ClientError> {
    let info = http.study(name)?;
    if info.name != name {
        return Err(ClientError::Protocol(format!("asked for study {name}, got {}", info.name)));
    }
    let raw = serde_json::to_vec(&info.definition)
        .map_err(|e| ClientError::Protocol(format!("study {name}: {e}")))?;
    let def = StudyDefinition::from_json(&raw)
        .map_err(|e| ClientError::Protocol(format!("the server's study {name} does not parse: {e}")))?;
    let canonical = def.canonical_json().map_err(|e| ClientError::Protocol(e.to_string()))?;
    let digest = sha256_hex(&canonical);
    if digest != info.study_sha256 || def.name() != name {
        return Err(ClientError::Verification(format!(
            "study {name}: the served definition does not hash to its stated SHA-256"
        )));
    }
    let update = advance_checkpoint(http, profile, |_| Ok(()))?;
    match proven_event(http, &update.current, info.log_index)? {
        LogEvent::Study {
            event: StudyEvent::Added { study, study_sha256, aggregator: StudyAggregator::Leader, .. },
            ..
        } if study == name && hex::encode(study_sha256) == digest => {}
        _ => {
            return Err(ClientError::Verification(format!(
                "study {name}: log entry {} does not record this definition",
                info.log_index
            )))
        }
    }
    let schema = verified_schema(http, profile, &http.dp_schema(def.schema())?, def.schema())?;
    let encoding = StudyEncoding::new(&schema, &def)
        .map_err(|e| ClientError::Verification(format!("study {name} does not fit its schema: {e}")))?;
    Ok(VerifiedStudy { info, encoding })
}

/// Seals one report of `preview` (a summary of the study's schema, derived
/// and seen on this machine) for `study`. Only the two HPKE ciphertexts and
/// the public share leave.
pub fn seal_contribution(
    study: &VerifiedStudy,
    preview: &SummaryPreview,
    now: u64,
) -> Result<Vec<u8>, ClientError> {
    let def = study.definition();
    let fail = |reason: String| ClientError::Summary { schema: def.schema().to_owned(), reason };
    let schema_name = def.schema();
    if preview.schema != schema_name {
        return Err(fail(format!(
            "study {} needs a {schema_name} summary, not {}",
            def.name(),
            preview.schema
        )));
    }
    let summary =
        Summary::validate(study.encoding.schema(), &preview.doc).map_err(|e| fail(e.to_string()))?;
    let sealer =
        ReportSealer::new(study.encoding.clone()).map_err(|e| ClientError::Verification(e.to_string()))?;
    let report = sealer.seal(&mut OsRng, &summary, now).map_err(|e| fail(e.to_string()))?;
    Ok(report.encode())
}

/// Checks releases against the verified study and the log, sums them and
/// computes the statistics at `confidence`.
pub fn study_results(
    http: &Http,
    profile: &Profile,
    study: &VerifiedStudy,
    releases: &[StudyRelease],
    confidence: f64,
    quantiles: &[f64],
) -> Result<StudyResults, ClientError> {
    let name = study.definition().name();
    if releases.is_empty() {
        return Err(ClientError::Invalid(format!("study {name} has no released batch yet")));
    }
    let plan = StudyNoise::plan(&study.encoding).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let update = advance_checkpoint(http, profile, |_| Ok(()))?;
    let mut total: Option<ReleasedSums> = None;
    for r in releases {
        if r.study != name || r.study_sha256 != study.info.study_sha256 {
            return Err(ClientError::Verification(format!(
                "a release of batch {} is for another study",
                r.batch
            )));
        }
        if r.noise != plan {
            return Err(ClientError::Verification(format!(
                "the release of batch {} states other noise than the study defines",
                r.batch
            )));
        }
        match proven_event(http, &update.current, r.log_index)? {
            LogEvent::Study { event: StudyEvent::BatchReleased { study, batch, .. }, .. }
                if study == name && batch == r.batch => {}
            _ => {
                return Err(ClientError::Verification(format!(
                    "release of batch {}: log entry {} does not record it",
                    r.batch, r.log_index
                )))
            }
        }
        match &mut total {
            None => total = Some(r.sums.clone()),
            Some(t) => t.add(&r.sums).map_err(|e| ClientError::Protocol(e.to_string()))?,
        }
    }
    let total = total.ok_or_else(|| ClientError::Invalid("no release".into()))?;
    analyze(&study.encoding, &plan, &total, confidence, quantiles)
        .map_err(|e| ClientError::Invalid(e.to_string()))
}
