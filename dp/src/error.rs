//! The crate's error type.

use crate::budget::Overspend;

/// Everything that can go wrong in `medrelay-dp`.
///
/// Errors name the offending field or parameter so an operator or analyst
/// can fix the schema or the query; none of them carries a patient's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// A JSON document (schema, summary, query) is larger than its limit.
    #[error("{what} too large: {actual} bytes, limit {limit}")]
    TooLarge {
        /// What was being parsed.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
        /// The size found.
        actual: usize,
    },
    /// A JSON document does not parse into the expected shape.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The parser's explanation (position and expected token; never a value).
        detail: String,
    },
    /// A schema is invalid.
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    /// A summary does not match its schema.
    #[error("invalid summary: {0}")]
    Summary(#[from] SummaryError),
    /// A query is invalid for its schema.
    #[error("invalid query: {0}")]
    Query(#[from] QueryError),
    /// A FHIR resource could not be used to derive a summary.
    #[error("cannot derive summary: {0}")]
    Derive(#[from] DeriveError),
    /// A privacy parameter (ε, ρ, δ) is out of range.
    #[error("invalid privacy parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The analyst's budget cannot pay for the query; nothing was spent.
    #[error("{0}")]
    Overspend(#[from] Overspend),
    /// The plan, rows or ledger belong to a different schema.
    #[error("schema mismatch: expected {expected}, found {found}")]
    SchemaMismatch {
        /// The schema the plan was made for.
        expected: String,
        /// The schema of the other input.
        found: String,
    },
    /// Too many rows for one release.
    #[error("too many summaries: {actual}, limit {limit}")]
    TooManyRows {
        /// The limit.
        limit: usize,
        /// The number of rows given.
        actual: usize,
    },
    /// The planner refused a well-formed query: its privacy parameter is
    /// below the floor, or its noise or sampler work is beyond the bounds
    /// (see [`crate::bounds`]). Nothing was run or spent.
    #[error("query refused: {0}")]
    Refused(#[from] crate::bounds::PlanRefusal),
    /// OpenDP refused to build or run a measurement. The message is OpenDP's
    /// own (it names parameters, never data).
    #[error("OpenDP: {0}")]
    OpenDp(String),
    /// A binary ledger blob failed to decode.
    #[error("ledger decode: {0}")]
    Decode(#[from] DecodeError),
    /// A private study's definition, report or release was refused.
    #[error("{0}")]
    Study(#[from] crate::study::StudyError),
}

impl From<opendp::error::Error> for DpError {
    fn from(e: opendp::error::Error) -> Self {
        Self::OpenDp(format!("{:?}: {}", e.variant, e.message.unwrap_or_default()))
    }
}

/// Why a binary blob (the stored ledger) failed to decode: the workspace's
/// one decoding error, shared with `medrelay_crypto::encoding`.
pub use medrelay_crypto::DecodeError;

/// Why a summary schema was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema has no fields.
    #[error("schema has no fields")]
    NoFields,
    /// More fields than [`crate::MAX_FIELDS`].
    #[error("too many fields: {actual}, limit {limit}")]
    TooManyFields {
        /// The limit.
        limit: usize,
        /// The number found.
        actual: usize,
    },
    /// A schema or field name is empty, too long or uses characters outside
    /// `[a-z0-9_-]`.
    #[error("invalid name {name:?}: use 1-64 characters from [a-z0-9_-]")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two fields share a name.
    #[error("duplicate field name {name:?}")]
    DuplicateField {
        /// The name.
        name: String,
    },
    /// A numeric field's bounds are not finite.
    #[error("field {field:?}: bounds must be finite numbers")]
    NonFiniteBounds {
        /// The field.
        field: String,
    },
    /// A numeric field's lower bound is not below its upper bound.
    #[error("field {field:?}: lower bound {min} is not below upper bound {max}")]
    InvertedBounds {
        /// The field.
        field: String,
        /// The lower bound.
        min: f64,
        /// The upper bound.
        max: f64,
    },
    /// An integer field's bounds are not integers or exceed ±2^53.
    #[error("field {field:?}: integer bounds must be whole numbers within ±2^53")]
    NonIntegerBounds {
        /// The field.
        field: String,
    },
    /// A category field has no values.
    #[error("field {field:?}: category list is empty")]
    EmptyCategories {
        /// The field.
        field: String,
    },
    /// A category field has more values than [`crate::MAX_CATEGORIES`].
    #[error("field {field:?}: {actual} categories, limit {limit}")]
    TooManyCategories {
        /// The field.
        field: String,
        /// The limit.
        limit: usize,
        /// The number found.
        actual: usize,
    },
    /// A category value is repeated or invalid.
    #[error("field {field:?}: category value {value:?} is duplicated or not 1-64 characters")]
    InvalidCategory {
        /// The field.
        field: String,
        /// The value.
        value: String,
    },
    /// A derivation rule does not fit the field's type.
    #[error("field {field:?}: derivation {derivation} produces {produces}, not {field_type}")]
    DerivationType {
        /// The field.
        field: String,
        /// The derivation rule.
        derivation: &'static str,
        /// What the rule produces.
        produces: &'static str,
        /// The field's type.
        field_type: &'static str,
    },
    /// A derivation rule lists no codes, or too many.
    #[error("field {field:?}: derivation needs 1 to {limit} codes")]
    DerivationCodes {
        /// The field.
        field: String,
        /// The limit.
        limit: usize,
    },
    /// A `patient_gender` field lacks one of the FHIR administrative genders.
    #[error("field {field:?}: category list must contain {missing:?} for patient_gender")]
    MissingGender {
        /// The field.
        field: String,
        /// The missing value.
        missing: &'static str,
    },
}

/// Why a summary does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SummaryError {
    /// The summary names a field the schema does not have.
    #[error("unknown field {field:?}")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// A value has the wrong JSON type for its field.
    #[error("field {field:?}: expected {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// The expected type.
        expected: &'static str,
    },
    /// A category value is not in the field's list.
    #[error("field {field:?}: value is not one of the schema's categories")]
    UnknownCategory {
        /// The field.
        field: String,
    },
    /// The summary was made for another schema.
    #[error("summary is for schema {found:?}, expected {expected:?}")]
    WrongSchema {
        /// The expected schema.
        expected: String,
        /// The schema named by the summary.
        found: String,
    },
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query names a field the schema does not have.
    #[error("unknown field {field:?}")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// The field's type does not support this use.
    #[error("field {field:?} is {actual}, but {usage} needs {expected}")]
    FieldType {
        /// The field.
        field: String,
        /// How the query uses it.
        usage: &'static str,
        /// What that use needs.
        expected: &'static str,
        /// The field's type.
        actual: &'static str,
    },
    /// A filter value has the wrong type or is not a category of the field.
    #[error("filter on {field:?}: {reason}")]
    Filter {
        /// The field.
        field: String,
        /// Why.
        reason: &'static str,
    },
    /// Too many filters, bins or candidates.
    #[error("too many {what}: {actual}, limit {limit}")]
    TooMany {
        /// What.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The number given.
        actual: usize,
    },
    /// Histogram bin edges are not finite and strictly increasing, or fewer than two.
    #[error("histogram edges must be at least two finite, strictly increasing numbers")]
    InvalidBins,
    /// A quantile's alpha is outside [0, 1].
    #[error("quantile alpha must be within [0, 1]")]
    InvalidAlpha,
    /// Correlation of a field with itself.
    #[error("correlation needs two different fields")]
    SameField,
}

/// Why a summary could not be derived from FHIR resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveError {
    /// More resources than [`crate::MAX_RESOURCES`] (after unpacking bundles).
    #[error("too many resources: {actual}, limit {limit}")]
    TooManyResources {
        /// The limit.
        limit: usize,
        /// The number given.
        actual: usize,
    },
    /// A resource is not a JSON object with a `resourceType`.
    #[error("resource {index} has no resourceType")]
    NotAResource {
        /// Its position in the input.
        index: usize,
    },
    /// A Patient's `birthDate` is not a FHIR date.
    #[error("Patient.birthDate is not a FHIR date")]
    BadBirthDate,
    /// Two Patient resources disagree on a field the schema derives.
    #[error("Patient resources disagree on {what}")]
    ConflictingPatients {
        /// What they disagree on.
        what: &'static str,
    },
}
