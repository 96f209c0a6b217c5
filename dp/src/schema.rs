//! Summary schemas: the operator's definition of what one patient contributes.
//!
//! A schema is a JSON document listing named fields, each with a type, public
//! bounds (numeric fields) or a public value list (category fields), and the
//! rule a patient's client uses to derive the field from its own decrypted
//! FHIR R4 resources. Bounds are public: they fix each query's sensitivity.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{DpError, SchemaError};

/// Largest schema document accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most fields in one schema.
pub const MAX_FIELDS: usize = 64;
/// Most values in one category field.
pub const MAX_CATEGORIES: usize = 256;
/// Most codes in one derivation rule.
pub const MAX_CODES: usize = 64;
const MAX_NAME: usize = 64;
/// Integers and integer bounds stay within ±2^53 so that every value is exact as f64.
pub(crate) const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// The default `health-basics` schema shipped with medrelay.
pub const HEALTH_BASICS_JSON: &str = include_str!("../schemas/health-basics.json");

/// A field's type and its public bounds or values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldType {
    /// True or false (`{"type": "bool"}`).
    Bool {},
    /// A whole number within `[min, max]` (clamped at query time).
    Integer {
        /// Public lower bound.
        min: f64,
        /// Public upper bound.
        max: f64,
    },
    /// A real number within `[min, max]` (clamped at query time).
    Float {
        /// Public lower bound.
        min: f64,
        /// Public upper bound.
        max: f64,
    },
    /// One of a public list of values.
    Category {
        /// The allowed values, in the order histograms report them.
        values: Vec<String>,
    },
}

impl FieldType {
    /// The type's name as written in a schema.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bool {} => "bool",
            Self::Integer { .. } => "integer",
            Self::Float { .. } => "float",
            Self::Category { .. } => "category",
        }
    }

    /// The public bounds of a numeric field.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        match self {
            Self::Integer { min, max } | Self::Float { min, max } => Some((*min, *max)),
            Self::Bool {} | Self::Category { .. } => None,
        }
    }
}

/// A code a derivation rule matches: a FHIR `Coding` system and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeMatch {
    /// The code system URI, compared exactly (e.g. `http://loinc.org`).
    pub system: String,
    /// The code.
    pub code: String,
    /// Match every code that starts with `code` (ICD-10 families such as `E11`).
    #[serde(default)]
    pub prefix: bool,
}

impl CodeMatch {
    pub(crate) fn matches(&self, system: &str, code: &str) -> bool {
        system == self.system && if self.prefix { code.starts_with(&self.code) } else { code == self.code }
    }
}

/// How a patient's client derives a field from its FHIR R4 resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum Derivation {
    /// The year of `Patient.birthDate` (integer field).
    PatientBirthYear,
    /// `Patient.gender` (category field listing `female`, `male`, `other`, `unknown`).
    PatientGender,
    /// `valueQuantity.value` of the latest Observation (by `effectiveDateTime`,
    /// else `effectivePeriod.start`, else `issued`) whose code matches `codes`,
    /// or of the matching component of an Observation coded `component_of`
    /// (e.g. systolic pressure inside a LOINC 85354-9 blood-pressure panel).
    /// Entered-in-error and cancelled observations are skipped. If `unit` is
    /// set, quantities whose UCUM `code` (or `unit`) differ are skipped.
    LatestObservation {
        /// Codes of the observation itself.
        codes: Vec<CodeMatch>,
        /// Codes of panels whose components carry the value.
        #[serde(default)]
        component_of: Vec<CodeMatch>,
        /// Required UCUM unit, e.g. `mm[Hg]`.
        #[serde(default)]
        unit: Option<String>,
    },
    /// True if any Condition matches `codes` (refuted or entered-in-error
    /// conditions do not count), false otherwise.
    ConditionPresent {
        /// Codes of the condition.
        codes: Vec<CodeMatch>,
    },
}

impl Derivation {
    fn name(&self) -> &'static str {
        match self {
            Self::PatientBirthYear => "patient_birth_year",
            Self::PatientGender => "patient_gender",
            Self::LatestObservation { .. } => "latest_observation",
            Self::ConditionPresent { .. } => "condition_present",
        }
    }
}

/// One named field of a schema.
// No `deny_unknown_fields` here: serde does not support it together with
// `flatten`; the flattened `FieldType` variants reject unknown keys instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The field's name (`[a-z0-9_-]`, 1-64 characters).
    pub name: String,
    /// Human description.
    #[serde(default)]
    pub description: String,
    /// Type and public bounds.
    #[serde(flatten)]
    pub field_type: FieldType,
    /// How the patient's client derives it.
    pub derive: Derivation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaDoc {
    name: String,
    #[serde(default)]
    description: String,
    fields: Vec<Field>,
}

/// A validated summary schema. Construct with [`Schema::from_json`] or
/// [`Schema::health_basics`]; every instance has passed validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    name: String,
    description: String,
    fields: Vec<Field>,
}

impl Schema {
    /// Parses and validates a schema document (size-limited to [`MAX_SCHEMA_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DpError> {
        if bytes.len() > MAX_SCHEMA_BYTES {
            return Err(DpError::TooLarge { what: "schema", limit: MAX_SCHEMA_BYTES, actual: bytes.len() });
        }
        let doc: SchemaDoc = serde_json::from_slice(bytes)
            .map_err(|e| DpError::Malformed { what: "schema", detail: e.to_string() })?;
        Ok(Self::new(doc.name, doc.description, doc.fields)?)
    }

    /// Validates a schema built in code.
    pub fn new(name: String, description: String, fields: Vec<Field>) -> Result<Self, SchemaError> {
        check_name(&name)?;
        if fields.is_empty() {
            return Err(SchemaError::NoFields);
        }
        if fields.len() > MAX_FIELDS {
            return Err(SchemaError::TooManyFields { limit: MAX_FIELDS, actual: fields.len() });
        }
        let mut seen = HashSet::new();
        for field in &fields {
            check_name(&field.name)?;
            if !seen.insert(field.name.as_str()) {
                return Err(SchemaError::DuplicateField { name: field.name.clone() });
            }
            check_field(field)?;
        }
        Ok(Self { name, description, fields })
    }

    /// The default `health-basics` schema (birth year, sex, latest systolic
    /// blood pressure and BMI, diabetes, hypertension and asthma flags).
    ///
    /// # Panics
    /// Never: the document is compiled in and a unit test validates it.
    /// (Falling back to some other schema silently would be worse.)
    #[expect(clippy::expect_used, reason = "compiled-in document, validated by a unit test")]
    pub fn health_basics() -> Self {
        Self::from_json(HEALTH_BASICS_JSON.as_bytes()).expect("the shipped health-basics schema is valid")
    }

    /// The schema's name (its identity in ledgers and summaries).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The index and definition of the field called `name`.
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// The schema as JSON (round-trips through [`Schema::from_json`]).
    pub fn to_json(&self) -> Result<String, DpError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| DpError::Malformed { what: "schema", detail: e.to_string() })
    }
}

/// Whether `name` is a valid schema, study or field name: 1-64 characters
/// from `[a-z0-9_-]` (safe in a URL path and a store key).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(SchemaError::InvalidName { name: name.chars().take(MAX_NAME).collect() })
    }
}

fn check_field(field: &Field) -> Result<(), SchemaError> {
    let fname = || field.name.clone();
    match &field.field_type {
        FieldType::Bool {} => {}
        FieldType::Integer { min, max } | FieldType::Float { min, max } => {
            if !min.is_finite() || !max.is_finite() {
                return Err(SchemaError::NonFiniteBounds { field: fname() });
            }
            if min >= max {
                return Err(SchemaError::InvertedBounds { field: fname(), min: *min, max: *max });
            }
            if matches!(field.field_type, FieldType::Integer { .. })
                && (min.fract() != 0.0
                    || max.fract() != 0.0
                    || min.abs() > MAX_EXACT_INT
                    || max.abs() > MAX_EXACT_INT)
            {
                return Err(SchemaError::NonIntegerBounds { field: fname() });
            }
        }
        FieldType::Category { values } => {
            if values.is_empty() {
                return Err(SchemaError::EmptyCategories { field: fname() });
            }
            if values.len() > MAX_CATEGORIES {
                return Err(SchemaError::TooManyCategories {
                    field: fname(),
                    limit: MAX_CATEGORIES,
                    actual: values.len(),
                });
            }
            let mut seen = HashSet::new();
            for v in values {
                if v.is_empty() || v.len() > MAX_NAME || !seen.insert(v.as_str()) {
                    return Err(SchemaError::InvalidCategory {
                        field: fname(),
                        value: v.chars().take(MAX_NAME).collect(),
                    });
                }
            }
        }
    }
    let type_name = field.field_type.name();
    let mismatch = |produces: &'static str| SchemaError::DerivationType {
        field: fname(),
        derivation: field.derive.name(),
        produces,
        field_type: type_name,
    };
    match &field.derive {
        Derivation::PatientBirthYear => {
            if !matches!(field.field_type, FieldType::Integer { .. }) {
                return Err(mismatch("integer"));
            }
        }
        Derivation::PatientGender => {
            let FieldType::Category { values } = &field.field_type else {
                return Err(mismatch("category"));
            };
            for g in ["female", "male", "other", "unknown"] {
                if !values.iter().any(|v| v == g) {
                    return Err(SchemaError::MissingGender { field: fname(), missing: g });
                }
            }
        }
        Derivation::LatestObservation { codes, component_of, .. } => {
            if field.field_type.bounds().is_none() {
                return Err(mismatch("number"));
            }
            if codes.is_empty() || codes.len() + component_of.len() > MAX_CODES {
                return Err(SchemaError::DerivationCodes { field: fname(), limit: MAX_CODES });
            }
        }
        Derivation::ConditionPresent { codes } => {
            if field.field_type != (FieldType::Bool {}) {
                return Err(mismatch("bool"));
            }
            if codes.is_empty() || codes.len() > MAX_CODES {
                return Err(SchemaError::DerivationCodes { field: fname(), limit: MAX_CODES });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn shipped_schema_is_valid() {
        let s = Schema::from_json(HEALTH_BASICS_JSON.as_bytes()).unwrap();
        assert_eq!(s.fields().len(), 7);
    }
}
