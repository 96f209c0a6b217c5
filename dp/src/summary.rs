//! One patient's summary: a value (or nothing) for each schema field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{DpError, SummaryError};
use crate::schema::{FieldType, Schema, MAX_EXACT_INT};

/// Largest summary document accepted, in bytes.
pub const MAX_SUMMARY_BYTES: usize = 16 * 1024;

/// A field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A bool field's value.
    Bool(bool),
    /// An integer field's value.
    Integer(i64),
    /// A float field's value.
    Float(f64),
    /// A category field's value.
    Category(String),
}

impl FieldValue {
    /// The value as a number (integer and float fields).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            #[expect(clippy::cast_precision_loss, reason = "integers are validated within ±2^53")]
            Self::Integer(i) => Some(*i as f64),
            Self::Float(x) => Some(*x),
            Self::Bool(_) | Self::Category(_) => None,
        }
    }
}

/// The wire form of a summary: the schema's name and a map from field name
/// to value (`null` or absent: unknown). Validate with [`Summary::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryDoc {
    /// The schema the summary follows.
    pub schema: String,
    /// Field values by name.
    pub values: BTreeMap<String, Option<serde_json::Value>>,
}

/// A summary validated against its schema: one optional value per field, in
/// schema order. Values may lie outside the public bounds; queries clamp them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    schema: String,
    values: Vec<Option<FieldValue>>,
}

impl Summary {
    /// Parses a JSON [`SummaryDoc`] (size-limited to [`MAX_SUMMARY_BYTES`])
    /// and validates it against `schema`.
    pub fn from_json(schema: &Schema, bytes: &[u8]) -> Result<Self, DpError> {
        if bytes.len() > MAX_SUMMARY_BYTES {
            return Err(DpError::TooLarge { what: "summary", limit: MAX_SUMMARY_BYTES, actual: bytes.len() });
        }
        let doc: SummaryDoc = serde_json::from_slice(bytes)
            .map_err(|e| DpError::Malformed { what: "summary", detail: e.to_string() })?;
        Ok(Self::validate(schema, &doc)?)
    }

    /// Validates a summary document against `schema`: every named field must
    /// exist and hold a value of its type; a category value must be listed.
    pub fn validate(schema: &Schema, doc: &SummaryDoc) -> Result<Self, SummaryError> {
        if doc.schema != schema.name() {
            return Err(SummaryError::WrongSchema {
                expected: schema.name().to_owned(),
                found: doc.schema.chars().take(64).collect(),
            });
        }
        let mut values = vec![None; schema.fields().len()];
        for (name, value) in &doc.values {
            let Some((index, field)) = schema.field(name) else {
                return Err(SummaryError::UnknownField { field: name.chars().take(64).collect() });
            };
            let Some(value) = value else { continue };
            let wrong = |expected| SummaryError::WrongType { field: name.clone(), expected };
            let parsed = match &field.field_type {
                FieldType::Bool {} => {
                    FieldValue::Bool(value.as_bool().ok_or_else(|| wrong("true or false"))?)
                }
                FieldType::Integer { .. } => {
                    let i = value.as_i64().ok_or_else(|| wrong("a whole number"))?;
                    #[expect(clippy::cast_precision_loss, reason = "compared against 2^53 only")]
                    if (i as f64).abs() > MAX_EXACT_INT {
                        return Err(wrong("a whole number within ±2^53"));
                    }
                    FieldValue::Integer(i)
                }
                FieldType::Float { .. } => {
                    let x = value.as_f64().filter(|x| x.is_finite()).ok_or_else(|| wrong("a number"))?;
                    FieldValue::Float(x)
                }
                FieldType::Category { values: allowed } => {
                    let s = value.as_str().ok_or_else(|| wrong("a string"))?;
                    if !allowed.iter().any(|a| a == s) {
                        return Err(SummaryError::UnknownCategory { field: name.clone() });
                    }
                    FieldValue::Category(s.to_owned())
                }
            };
            values[index] = Some(parsed);
        }
        Ok(Self { schema: schema.name().to_owned(), values })
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The value of field number `index` (schema order), if known.
    pub fn value(&self, index: usize) -> Option<&FieldValue> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// The wire form, for storage or upload.
    pub fn to_doc(&self, schema: &Schema) -> SummaryDoc {
        let values = schema
            .fields()
            .iter()
            .zip(&self.values)
            .map(|(f, v)| {
                let json = v.as_ref().map(|v| match v {
                    FieldValue::Bool(b) => serde_json::Value::Bool(*b),
                    FieldValue::Integer(i) => serde_json::Value::from(*i),
                    FieldValue::Float(x) => serde_json::Value::from(*x),
                    FieldValue::Category(s) => serde_json::Value::from(s.as_str()),
                });
                (f.name.clone(), json)
            })
            .collect();
        SummaryDoc { schema: self.schema.clone(), values }
    }

    /// Builds a summary from values already in schema order (used by
    /// [`crate::derive_summary`], whose values are correct by construction).
    pub(crate) fn from_parts(schema: &Schema, values: Vec<Option<FieldValue>>) -> Self {
        Self { schema: schema.name().to_owned(), values }
    }
}
