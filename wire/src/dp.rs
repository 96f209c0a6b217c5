//! Differential-privacy endpoints under `/v1/dp`: summary schemas, patients'
//! opt-in summaries, analysts' queries and budgets.
//!
//! The query body is exactly `medrelay_dp`'s [`Query`] JSON and a summary
//! body is its [`SummaryDoc`]; both reject unknown fields and have their own
//! size limits ([`MAX_QUERY_BYTES`], [`MAX_SUMMARY_BYTES`]), far below the
//! general body limit. Answers carry only noisy releases and public values
//! (see [`Answer`]).

use medrelay_crypto::PrincipalId;
use serde::{Deserialize, Serialize};

pub use medrelay_dp::{
    Accuracy, Answer, AnswerValue, ComponentAnswer, Mechanism, PrivacyCost, Query, SummaryDoc,
    MAX_QUERY_BYTES, MAX_SCHEMA_BYTES, MAX_SUMMARY_BYTES,
};

/// Most schemas listed by `GET /v1/dp/schemas`.
pub const MAX_SCHEMAS_LISTED: usize = 256;

/// A summary schema as the server serves it (`GET /v1/dp/schemas/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaInfo {
    /// The schema's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// SHA-256 (hex) of the canonical schema JSON, as logged when the
    /// operator installed it.
    pub schema_sha256: String,
    /// The schema document (parse with `medrelay_dp::Schema::from_json`).
    pub schema: serde_json::Value,
    /// Index of the `schema added` event in the audit log.
    pub log_index: u64,
}

/// `GET /v1/dp/schemas`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaList {
    /// Installed schemas, ordered by name (at most [`MAX_SCHEMAS_LISTED`]).
    pub schemas: Vec<SchemaInfo>,
}

/// What a summary request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryAction {
    /// A first summary for this patient and schema was stored.
    Submitted,
    /// The patient's earlier summary was replaced.
    Replaced,
    /// The patient's summary was deleted.
    Withdrawn,
}

/// Answer to `PUT` / `DELETE /v1/dp/schemas/{name}/summary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryReceipt {
    /// The schema.
    pub schema: String,
    /// The patient.
    pub patient: PrincipalId,
    /// What happened.
    pub action: SummaryAction,
    /// Index of the `summary submitted` / `summary withdrawn` event in the
    /// audit log (the event names patient and schema, never values).
    pub log_index: u64,
}

/// An analyst's budget for one schema (`GET /v1/dp/schemas/{name}/budget`,
/// and inside every answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetStatus {
    /// The analyst.
    pub analyst: PrincipalId,
    /// The schema.
    pub schema: String,
    /// Total ε the analyst may spend.
    pub total_epsilon: f64,
    /// δ at which zCDP (ρ) spending is converted to ε.
    pub delta: f64,
    /// ε spent so far (Σ pure ε + ε of Σ ρ at δ, rounded up).
    pub spent_epsilon: f64,
    /// Σ ε of pure-DP answers.
    pub spent_pure_epsilon: f64,
    /// Σ ρ of zCDP answers.
    pub spent_rho: f64,
    /// ε left (never negative).
    pub remaining_epsilon: f64,
    /// Number of answered queries.
    pub queries: u64,
}

/// Answer to `POST /v1/dp/schemas/{name}/query`: the noisy release with its
/// mechanisms, scales and 95 % accuracy, and the budget after the debit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpAnswer {
    /// The release.
    pub answer: Answer,
    /// The analyst's budget after this answer was charged.
    pub budget: BudgetStatus,
    /// Index of the `DP query answered` event in the audit log.
    pub log_index: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn dp_requests_are_strict() {
        let ok = r#"{"statistic":{"kind":"count"},"privacy":{"epsilon":0.5}}"#;
        serde_json::from_str::<Query>(ok).unwrap();
        let extra = r#"{"statistic":{"kind":"count"},"privacy":{"epsilon":0.5},"limit":3}"#;
        assert!(serde_json::from_str::<Query>(extra).unwrap_err().to_string().contains("unknown field"));
        assert!(serde_json::from_str::<SummaryDoc>(r#"{"schema":"s","values":{},"x":1}"#).is_err());
        let receipt = SummaryReceipt {
            schema: "s".into(),
            patient: PrincipalId::from_bytes([1; 32]),
            action: SummaryAction::Replaced,
            log_index: 3,
        };
        let json = serde_json::to_string(&receipt).unwrap();
        assert!(json.contains(r#""action":"replaced""#), "{json}");
        assert_eq!(serde_json::from_str::<SummaryReceipt>(&json).unwrap(), receipt);
    }
}
