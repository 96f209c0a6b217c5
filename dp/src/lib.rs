//! `medrelay-dp`: differentially private aggregates over patient summaries.
//!
//! The operator defines a summary [`Schema`] (named fields with public
//! bounds and FHIR derivation rules; [`Schema::health_basics`] ships by
//! default). Each opted-in patient's client runs [`derive_summary`] over its
//! own decrypted FHIR R4 resources and uploads only the resulting
//! [`Summary`]. Analysts send a [`Query`]; [`plan`] validates it against the
//! schema and calibrates OpenDP measurements to the requested ε or ρ, and
//! [`answer`] releases the noisy statistic and debits the analyst's
//! [`Ledger`], or refuses and changes nothing.
//!
//! Every mechanism and privacy map is OpenDP's (`opendp` crate); this crate
//! owns only the schemas, the planner and the accounting.
//!
//! # Threat model
//!
//! - **Analysts are adversaries.** They may send any query, any number of
//!   times, and know everything public (schemas, bounds, candidates, bin
//!   edges). Every answer is an OpenDP release whose cost, at one patient's
//!   summary added or removed ([`NEIGHBOUR_DISTANCE`]), is debited before it
//!   leaves; a query whose filters match one patient or none still gets only
//!   a noisy answer. The guarantee is (ε, δ)-DP per analyst and schema, with
//!   ε the ledger's total (see [`budget`] for the accounting). Analysts who
//!   collude add up their budgets.
//! - **Patients may lie** about their own summary. Values are clamped to the
//!   public bounds, so one patient moves any answer by at most the
//!   sensitivity OpenDP reports; they cannot break others' privacy.
//! - **Floating point.** OpenDP's samplers are exact and its sums account for
//!   rounding (Mironov 2012 attacks do not apply). Noise comes from OpenSSL's
//!   CSPRNG inside OpenDP — the one exception to "RNG as a parameter" in
//!   medrelay's pure crates.
//! - **Out of scope:** timing side channels of query evaluation, the server
//!   storing summaries (it sees them; patients trust it with aggregates, not
//!   with records), and auxiliary information outside the budget. The
//!   [`study`] module is the other trust model: summaries secret-shared
//!   between two aggregators (Prio3), noise added by each.
//!
//! OpenDP measurements are not `Send`: [`answer`] builds them per call, so a
//! server calls it inside `spawn_blocking`. Plans, answers and ledgers are
//! plain data.
//!
//! # Example
//!
//! ```
//! use medrelay_dp::{answer, derive_summary, plan, AnalystId, Budget, Delta, Epsilon, Ledger, Query, Schema};
//! use serde_json::json;
//!
//! let schema = Schema::health_basics();
//! // On each patient's machine, from decrypted FHIR resources:
//! let resources = vec![
//!     json!({"resourceType": "Patient", "birthDate": "1961-04-02", "gender": "female"}),
//!     json!({"resourceType": "Condition", "code": {"coding": [
//!         {"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}}),
//! ];
//! let summary = derive_summary(&schema, &resources)?;
//! let rows = vec![summary; 50];
//!
//! // On the server, for an analyst with a budget of ε = 1:
//! let budget = Budget { epsilon: Epsilon::new(1.0)?, delta: Delta::new(1e-7)? };
//! let mut ledger = Ledger::new(AnalystId::from_bytes([7; 32]), schema.name(), budget)?;
//! let query = Query::from_json(br#"{
//!     "statistic": {"kind": "count"},
//!     "filters": [{"field": "diabetes", "op": "is", "value": true}],
//!     "privacy": {"epsilon": 0.25}
//! }"#)?;
//! let plan = plan(&schema, &query)?;
//! let released = answer(&plan, &rows, &mut ledger)?;
//! println!("{}", serde_json::to_string(&released.value)?);
//! assert!(ledger.spent_epsilon()? <= 0.25);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod answer;
pub mod bounds;
pub mod budget;
mod derive;
mod error;
mod mechanism;
mod query;
mod schema;
pub mod study;
mod summary;

pub use answer::{answer, Accuracy, Answer, AnswerValue, BinCount, ComponentAnswer, CONFIDENCE, MAX_ROWS};
pub use bounds::{PlanRefusal, MAX_NOISE_SCALE, MAX_SAMPLER_COST, MIN_DELTA, MIN_EPSILON, MIN_RHO};
pub use budget::{AnalystId, Budget, Delta, Epsilon, Ledger, Overspend, Privacy, PrivacyCost, Rho};
pub use derive::{derive_summary, MAX_RESOURCES};
pub use error::{DecodeError, DeriveError, DpError, QueryError, SchemaError, SummaryError};
pub use mechanism::{Mechanism, NoiseKind, NEIGHBOUR_DISTANCE};
pub use query::{
    plan, Component, Filter, Plan, Query, Statistic, DEFAULT_BINS, DEFAULT_CANDIDATES, MAX_BINS,
    MAX_CANDIDATES, MAX_FILTERS, MAX_QUERY_BYTES,
};
pub use schema::{
    is_valid_name, CodeMatch, Derivation, Field, FieldType, Schema, HEALTH_BASICS_JSON, MAX_CATEGORIES,
    MAX_CODES, MAX_FIELDS, MAX_SCHEMA_BYTES,
};
pub use summary::{FieldValue, Summary, SummaryDoc, MAX_SUMMARY_BYTES};
