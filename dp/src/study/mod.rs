//! Private studies: DP statistics from two non-colluding aggregators, so
//! that no server ever sees a patient's summary.
//!
//! The flow, and where each step runs:
//!
//! 1. An operator writes a [`StudyDefinition`] (schema, statistics, strata,
//!    minimum batch size, ε or ρ per batch release, the two aggregators'
//!    HPKE keys); both aggregators install it and log its SHA-256.
//! 2. The patient's client derives its summary (as for the curated mode),
//!    [`StudyEncoding::encode`]s it into three small-integer vectors,
//!    shards them with Prio3 ([`StudyVdaf`]) and seals each aggregator's
//!    input share to that aggregator with HPKE ([`ReportSealer`]).
//! 3. The leader and the helper each open their share and run Prio3
//!    preparation together ([`StudyVdaf::verify_init`],
//!    [`StudyVdaf::verifier_message`], [`StudyVdaf::finish`]): a report whose
//!    validity proof fails (a coordinate out of its range) is dropped
//!    without either learning anything else about it. Valid output shares
//!    are summed per batch.
//! 4. When a batch reaches the minimum size and an analyst asks, each
//!    aggregator adds its own noise ([`StudyNoise`]) calibrated to the full
//!    privacy parameter, and the leader sums the two noisy shares
//!    ([`StudyVdaf::unshard`]) into the release.
//! 5. The analyst's client computes every statistic from the release
//!    ([`analyze`]): post-processing, no further budget.
//!
//! # Threat model
//!
//! A patient's summary is secret-shared: each aggregator alone sees a
//! uniformly random share. Confidentiality holds unless **both**
//! aggregators collude. Each aggregator adds noise calibrated to the whole
//! ε (or ρ), so every release is DP even if one of them is dishonest and
//! adds none. Validity proofs bound every coordinate of a report (a lying
//! client moves each sum by at most the coordinate's range), but cannot
//! prove that a value is the patient's true one or that a square is the
//! square of the value. Neighbouring datasets differ by one report; a
//! patient allowed `k` reports per study is protected at `k·ε` (`k²·ρ`).
//! Randomness: sharding uses `prio`'s thread-local CSPRNG and noise OpenDP's
//! OpenSSL CSPRNG; report ids and HPKE use the RNG passed in.

mod definition;
mod encoding;
mod error;
mod noise;
mod report;
mod results;
#[cfg(feature = "test-util")]
pub mod testing;
mod vdaf;

pub use definition::{
    example_study, AggregatorKey, Aggregators, HistogramSpec, StudyDefinition, DEFAULT_VALUE_BITS,
    EXAMPLE_STUDY_JSON, HPKE_SUITE, MAX_MIN_BATCH, MAX_REPORTS_PER_PATIENT, MAX_STRATA, MAX_STUDY_BINS,
    MAX_STUDY_BYTES, MAX_STUDY_FIELDS, MAX_STUDY_HISTOGRAMS, MAX_STUDY_PAIRS, MIN_BATCH_FLOOR,
    TIME_PRECISION_SECS, VALUE_BITS,
};
pub use encoding::{Group, Measurement, StudyEncoding, DEFAULT_STUDY_BINS, MAX_GROUP_LEN};
pub use error::{PrepError, StudyError};
pub use noise::{GroupNoise, StudyNoise};
pub use report::{
    Report, ReportId, ReportSealer, MAX_PUBLIC_SHARE_BYTES, MAX_REPORT_BYTES, MAX_SHARE_CIPHERTEXT_BYTES,
};
pub use results::{
    analyze, BinStats, CorrelationStats, FieldStats, HistogramStats, Interval, QuantileStats, ReleasedSums,
    StratumStats, StudyResults, DEFAULT_QUANTILES,
};
pub use vdaf::{
    AggregateShares, AggregatorRole, OutputShares, PrepState, Shards, StudyVdaf, REPORT_ID_LEN,
    VERIFY_KEY_LEN,
};
