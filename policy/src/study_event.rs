//! Audit events of private studies (`LogEvent::Study`): study definitions,
//! uploads, aggregation jobs and batch releases with their privacy cost.
//!
//! Both aggregators log into their own log: the leader everything, the
//! helper the studies it installed, the jobs it aggregated and the batches
//! it released. Events carry names, counts, hashes and costs, never a
//! report, a share or a value.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{PrincipalId, Timestamp};

use crate::error::PolicyError;
use crate::event::{Audience, MAX_SCHEMA_NAME_LEN};

/// Why an aggregator rejected reports, in the order of
/// [`StudyEvent::ReportsAggregated`]'s `rejected` counts.
pub const STUDY_REJECTION_REASONS: [&str; 5] =
    ["decrypt_failed", "malformed_share", "invalid_proof", "replayed", "outside_window"];

/// Which aggregator logged an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyAggregator {
    /// The leader (receives uploads, answers analysts).
    Leader,
    /// The helper.
    Helper,
}

impl StudyAggregator {
    fn byte(self) -> u8 {
        match self {
            StudyAggregator::Leader => 0,
            StudyAggregator::Helper => 1,
        }
    }

    fn from_byte(b: u8) -> Result<Self, PolicyError> {
        match b {
            0 => Ok(StudyAggregator::Leader),
            1 => Ok(StudyAggregator::Helper),
            _ => Err(PolicyError::Malformed("log event: study aggregator")),
        }
    }
}

/// One private-study event.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StudyEvent {
    /// The operator installed a study definition on this aggregator.
    Added {
        /// The study.
        study: String,
        /// Its schema.
        schema: String,
        /// SHA-256 of the definition's canonical JSON (what clients check).
        study_sha256: [u8; 32],
        /// This aggregator's role in it.
        aggregator: StudyAggregator,
    },
    /// A patient uploaded reports (leader): how many were accepted and
    /// refused (malformed, replayed, outside the window, over the quota).
    ReportsUploaded {
        /// The patient.
        patient: PrincipalId,
        /// The study.
        study: String,
        /// Reports stored for preparation.
        accepted: u32,
        /// Reports refused.
        refused: u32,
    },
    /// One aggregation job was prepared and summed into a batch.
    ReportsAggregated {
        /// The study.
        study: String,
        /// The batch.
        batch: u64,
        /// The job id.
        job: [u8; 16],
        /// Reports whose proofs verified, added to the batch.
        aggregated: u32,
        /// Reports rejected, per reason of [`STUDY_REJECTION_REASONS`].
        rejected: [u32; 5],
    },
    /// A batch was released with this aggregator's noise; its cost is
    /// recorded here before the noisy share leaves.
    BatchReleased {
        /// The study.
        study: String,
        /// The batch.
        batch: u64,
        /// Reports in it.
        reports: u64,
        /// ε of this aggregator's noise (pure DP), finite and ≥ 0.
        epsilon: f64,
        /// ρ of this aggregator's noise (zCDP), finite and ≥ 0.
        rho: f64,
        /// The analyst who asked (leader; `None` on the helper).
        analyst: Option<PrincipalId>,
    },
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCHEMA_NAME_LEN
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_cost(x: f64) -> bool {
    x.is_finite() && x >= 0.0 && x.is_sign_positive()
}

impl StudyEvent {
    /// Who may read the event besides auditors. A patient's upload is the
    /// patient's own (that someone took part in a study is health
    /// information); the definition, the aggregation jobs and the releases
    /// name no patient and are what patients and analysts check before they
    /// contribute or trust a result, so every authenticated principal may
    /// read them.
    pub fn audience(&self) -> Audience {
        match self {
            StudyEvent::ReportsUploaded { patient, .. } => Audience::of(vec![*patient]),
            StudyEvent::Added { .. }
            | StudyEvent::ReportsAggregated { .. }
            | StudyEvent::BatchReleased { .. } => Audience::AllPrincipals,
        }
    }

    /// A stable name for the kind of event.
    pub fn kind(&self) -> &'static str {
        match self {
            StudyEvent::Added { .. } => "study_added",
            StudyEvent::ReportsUploaded { .. } => "study_reports_uploaded",
            StudyEvent::ReportsAggregated { .. } => "study_reports_aggregated",
            StudyEvent::BatchReleased { .. } => "study_batch_released",
        }
    }

    /// The study it is about.
    pub fn study(&self) -> &str {
        match self {
            StudyEvent::Added { study, .. }
            | StudyEvent::ReportsUploaded { study, .. }
            | StudyEvent::ReportsAggregated { study, .. }
            | StudyEvent::BatchReleased { study, .. } => study,
        }
    }

    /// The principal it concerns (uploader or analyst), if any.
    pub fn principal(&self) -> Option<PrincipalId> {
        match self {
            StudyEvent::ReportsUploaded { patient, .. } => Some(*patient),
            StudyEvent::BatchReleased { analyst, .. } => *analyst,
            _ => None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), PolicyError> {
        if !valid_name(self.study()) {
            return Err(PolicyError::Malformed("log event: study name"));
        }
        match self {
            StudyEvent::Added { schema, .. } if !valid_name(schema) => {
                Err(PolicyError::Malformed("log event: schema name"))
            }
            StudyEvent::BatchReleased { epsilon, rho, .. } if !valid_cost(*epsilon) || !valid_cost(*rho) => {
                Err(PolicyError::Malformed("log event: privacy cost"))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn encode(&self, e: &mut Encoder) {
        match self {
            StudyEvent::Added { study, schema, study_sha256, aggregator } => {
                e.u8(0).str(study).str(schema).fixed(study_sha256).u8(aggregator.byte());
            }
            StudyEvent::ReportsUploaded { patient, study, accepted, refused } => {
                e.u8(1).fixed(patient.as_bytes()).str(study).u32(*accepted).u32(*refused);
            }
            StudyEvent::ReportsAggregated { study, batch, job, aggregated, rejected } => {
                e.u8(2).str(study).u64(*batch).fixed(job).u32(*aggregated);
                for r in rejected {
                    e.u32(*r);
                }
            }
            StudyEvent::BatchReleased { study, batch, reports, epsilon, rho, analyst } => {
                e.u8(3).str(study).u64(*batch).u64(*reports).u64(epsilon.to_bits()).u64(rho.to_bits());
                match analyst {
                    Some(a) => e.u8(1).fixed(a.as_bytes()),
                    None => e.u8(0),
                };
            }
        }
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, PolicyError> {
        let name = |d: &mut Decoder<'_>| -> Result<String, PolicyError> {
            Ok(d.str(MAX_SCHEMA_NAME_LEN)?.to_owned())
        };
        Ok(match d.u8()? {
            0 => StudyEvent::Added {
                study: name(d)?,
                schema: name(d)?,
                study_sha256: d.array()?,
                aggregator: StudyAggregator::from_byte(d.u8()?)?,
            },
            1 => StudyEvent::ReportsUploaded {
                patient: PrincipalId::from_bytes(d.array()?),
                study: name(d)?,
                accepted: d.u32()?,
                refused: d.u32()?,
            },
            2 => {
                let study = name(d)?;
                let batch = d.u64()?;
                let job = d.array()?;
                let aggregated = d.u32()?;
                let mut rejected = [0u32; 5];
                for r in &mut rejected {
                    *r = d.u32()?;
                }
                StudyEvent::ReportsAggregated { study, batch, job, aggregated, rejected }
            }
            3 => {
                let study = name(d)?;
                let batch = d.u64()?;
                let reports = d.u64()?;
                let epsilon = f64::from_bits(d.u64()?);
                let rho = f64::from_bits(d.u64()?);
                let analyst = match d.u8()? {
                    0 => None,
                    1 => Some(PrincipalId::from_bytes(d.array()?)),
                    _ => return Err(PolicyError::Malformed("log event: option flag")),
                };
                StudyEvent::BatchReleased { study, batch, reports, epsilon, rho, analyst }
            }
            _ => return Err(PolicyError::Malformed("log event: unknown study event")),
        })
    }

    pub(crate) fn serialize_at<S: serde::Serializer>(&self, at: Timestamp, s: S) -> Result<S::Ok, S::Error> {
        use serde::Serialize as _;
        #[derive(serde::Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[expect(clippy::enum_variant_names, reason = "the JSON type names are study_*")]
        enum View<'a> {
            StudyAdded {
                at: Timestamp,
                study: &'a str,
                schema: &'a str,
                study_sha256: String,
                aggregator: StudyAggregator,
            },
            StudyReportsUploaded {
                at: Timestamp,
                patient: PrincipalId,
                study: &'a str,
                accepted: u32,
                refused: u32,
            },
            StudyReportsAggregated {
                at: Timestamp,
                study: &'a str,
                batch: u64,
                job: String,
                aggregated: u32,
                rejected: std::collections::BTreeMap<&'static str, u32>,
            },
            StudyBatchReleased {
                at: Timestamp,
                study: &'a str,
                batch: u64,
                reports: u64,
                epsilon: f64,
                rho: f64,
                analyst: Option<PrincipalId>,
            },
        }
        let view = match self {
            StudyEvent::Added { study, schema, study_sha256, aggregator } => View::StudyAdded {
                at,
                study,
                schema,
                study_sha256: hex::encode(study_sha256),
                aggregator: *aggregator,
            },
            StudyEvent::ReportsUploaded { patient, study, accepted, refused } => View::StudyReportsUploaded {
                at,
                patient: *patient,
                study,
                accepted: *accepted,
                refused: *refused,
            },
            StudyEvent::ReportsAggregated { study, batch, job, aggregated, rejected } => {
                View::StudyReportsAggregated {
                    at,
                    study,
                    batch: *batch,
                    job: hex::encode(job),
                    aggregated: *aggregated,
                    rejected: STUDY_REJECTION_REASONS.iter().copied().zip(rejected.iter().copied()).collect(),
                }
            }
            StudyEvent::BatchReleased { study, batch, reports, epsilon, rho, analyst } => {
                View::StudyBatchReleased {
                    at,
                    study,
                    batch: *batch,
                    reports: *reports,
                    epsilon: *epsilon,
                    rho: *rho,
                    analyst: *analyst,
                }
            }
        };
        view.serialize(s)
    }
}
