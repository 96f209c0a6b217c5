//! Private-study endpoints under `/v1/studies` (served by the leader
//! aggregator): study definitions, patients' encrypted report uploads, and
//! analysts' batch releases.
//!
//! Reports are `medrelay_dp::study::Report` blobs (base64): the server
//! never receives a summary, only secret shares sealed to the two
//! aggregators. A release carries only noisy sums and public parameters;
//! the analyst's client computes every statistic from it
//! (`medrelay_dp::study::analyze`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::B64;

pub use medrelay_dp::study::{ReleasedSums, StudyNoise, StudyResults, MAX_REPORT_BYTES};

/// Most reports in one upload request.
pub const MAX_REPORTS_PER_UPLOAD: usize = 1000;
/// Largest upload body (base64 of up to [`MAX_REPORTS_PER_UPLOAD`] reports
/// of a few KiB each; a single report may be larger, up to
/// [`MAX_REPORT_BYTES`]).
pub const MAX_UPLOAD_BODY_BYTES: usize = 48 * 1024 * 1024;
/// Most studies listed.
pub const MAX_STUDIES_LISTED: usize = 256;
/// Most releases listed for one study.
pub const MAX_RELEASES_LISTED: usize = 1000;

/// A study as the leader serves it (`GET /v1/studies/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyInfo {
    /// The study's name.
    pub name: String,
    /// The schema it summarizes.
    pub schema: String,
    /// SHA-256 (hex) of the definition's canonical JSON, as logged.
    pub study_sha256: String,
    /// The definition (parse with `medrelay_dp::study::StudyDefinition::from_json`).
    pub definition: serde_json::Value,
    /// Index of the `study added` event in the leader's audit log.
    pub log_index: u64,
}

/// `GET /v1/studies`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyList {
    /// Installed studies, by name.
    pub studies: Vec<StudyInfo>,
}

/// `POST /v1/studies/{name}/reports` (patients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadReportsRequest {
    /// Encoded reports (1..=[`MAX_REPORTS_PER_UPLOAD`]).
    pub reports: Vec<B64>,
}

/// One report the leader refused at upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedReport {
    /// Its position in the request.
    pub index: u32,
    /// Its id (hex), if it decoded that far.
    pub report_id: Option<String>,
    /// Why: `malformed_report`, `wrong_study`, `outside_window`,
    /// `decrypt_failed`, `replayed`, `over_quota`.
    pub code: String,
}

/// Answer to an upload: accepted reports are stored durably and will be
/// prepared with the helper; refused ones changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadReportsResponse {
    /// The study.
    pub study: String,
    /// Reports stored.
    pub accepted: u32,
    /// Reports refused, with reasons.
    pub refused: Vec<RefusedReport>,
    /// Index of the `study reports uploaded` event (counts only).
    pub log_index: u64,
}

/// A released batch (`POST /v1/studies/{name}/release`, `GET
/// /v1/studies/{name}/releases`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRelease {
    /// The study.
    pub study: String,
    /// SHA-256 (hex) of the study definition the release follows.
    pub study_sha256: String,
    /// The batch.
    pub batch: u64,
    /// The noisy sums (both aggregators' noise included).
    pub sums: ReleasedSums,
    /// The noise each aggregator added (public parameters).
    pub noise: StudyNoise,
    /// Reports the aggregators rejected from this batch, per reason
    /// (`invalid_proof`, `replayed`, `decrypt_failed`, …).
    pub rejected: BTreeMap<String, u32>,
    /// Index of the leader's `study batch released` event (with its cost).
    pub log_index: u64,
}

/// `GET /v1/studies/{name}/releases`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseList {
    /// Releases, by batch.
    pub releases: Vec<StudyRelease>,
}

/// `GET /v1/studies/{name}/status` (analysts): what can be asked next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyStatus {
    /// The study.
    pub study: String,
    /// The batch a release would close.
    pub open_batch: u64,
    /// Whether it has reached the study's minimum size (the exact count is
    /// not disclosed: it is not differentially private).
    pub ready: bool,
    /// Batches released so far.
    pub released: Vec<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn study_requests_are_strict() {
        let ok = r#"{"reports":["AAEC"]}"#;
        assert_eq!(
            serde_json::from_str::<UploadReportsRequest>(ok).unwrap().reports[0].as_bytes(),
            &[0, 1, 2]
        );
        assert!(serde_json::from_str::<UploadReportsRequest>(r#"{"reports":[],"x":1}"#).is_err());
        assert!(serde_json::from_str::<UploadReportsRequest>(r#"{"reports":["not base64!"]}"#).is_err());
    }
}
