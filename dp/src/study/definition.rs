//! A study definition: what a private study collects and releases, who
//! aggregates it, and at what privacy cost.
//!
//! The operators of both aggregators install the same JSON document; its
//! canonical form ([`StudyDefinition::canonical_json`]) is what the audit log
//! hashes and what a patient's client checks before contributing.

use serde::{Deserialize, Serialize};

use crate::budget::Privacy;
use crate::schema::is_valid_name;
use crate::study::error::StudyError;

/// Largest study document accepted, in bytes.
pub const MAX_STUDY_BYTES: usize = 64 * 1024;
/// Most numeric fields summarized (count, mean, standard deviation).
pub const MAX_STUDY_FIELDS: usize = 16;
/// Most correlation pairs.
pub const MAX_STUDY_PAIRS: usize = 16;
/// Most histograms.
pub const MAX_STUDY_HISTOGRAMS: usize = 16;
/// Most bins of one histogram.
pub const MAX_STUDY_BINS: usize = 64;
/// Most strata (values of the stratum field, before "unknown").
pub const MAX_STRATA: usize = 16;
/// Smallest and largest resolution (bits of a quantized value, sign included).
pub const VALUE_BITS: std::ops::RangeInclusive<u32> = 2..=12;
/// Resolution used when a study does not say.
pub const DEFAULT_VALUE_BITS: u32 = 8;
/// Smallest minimum batch size an operator may set.
pub const MIN_BATCH_FLOOR: u64 = 2;
/// Largest minimum batch size.
pub const MAX_MIN_BATCH: u64 = 10_000_000;
/// Most reports one patient may contribute to one study.
pub const MAX_REPORTS_PER_PATIENT: u32 = 1_000_000;
/// Reports carry their time rounded down to this many seconds.
pub const TIME_PRECISION_SECS: u64 = 3600;
/// The HPKE suite every study uses (RFC 9180 names).
pub const HPKE_SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";

/// An example study over `health-basics` (blood pressure and BMI by
/// diabetes status), with zero placeholders for the schema hash and the two
/// aggregators' keys: fill them in with [`example_study`].
pub const EXAMPLE_STUDY_JSON: &str = include_str!("../../studies/bp-by-diabetes.json");

/// The example study with the installed schema's SHA-256 (hex), the two
/// aggregators' HPKE public keys, and the given minimum batch size and
/// privacy parameter (for the demo and tests; operators edit the document).
pub fn example_study(
    schema_sha256: &str,
    leader: &[u8; 32],
    helper: &[u8; 32],
    min_batch_size: u64,
    privacy: Privacy,
) -> Result<StudyDefinition, StudyError> {
    let mut doc: StudyDoc =
        serde_json::from_str(EXAMPLE_STUDY_JSON).map_err(|e| invalid("document", e.to_string()))?;
    doc.schema_sha256 = schema_sha256.to_owned();
    doc.aggregators.leader = AggregatorKey::new(leader);
    doc.aggregators.helper = AggregatorKey::new(helper);
    doc.min_batch_size = min_batch_size;
    doc.privacy = privacy;
    StudyDefinition::validate(doc)
}

/// A histogram the study releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramSpec {
    /// The field (bool, category or numeric).
    pub field: String,
    /// Strictly increasing bin edges of a numeric field, within its bounds;
    /// values are clamped into `[first, last]` and the last bin is closed.
    /// Default: ten equal bins between the field's bounds. Not allowed for
    /// bool and category fields (their values are the bins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<f64>>,
}

/// One aggregator's public HPKE key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorKey {
    /// Must be [`HPKE_SUITE`].
    pub hpke_suite: String,
    /// The X25519 public key, 64 hex digits.
    pub hpke_public_key: String,
}

impl AggregatorKey {
    /// The key for `public_key` with medrelay's suite.
    pub fn new(public_key: &[u8; 32]) -> Self {
        Self { hpke_suite: HPKE_SUITE.to_owned(), hpke_public_key: hex_encode(public_key) }
    }

    /// The 32 key bytes.
    pub fn public_key_bytes(&self) -> Result<[u8; 32], StudyError> {
        hex32(&self.hpke_public_key)
            .ok_or_else(|| invalid("aggregators", "an HPKE public key is not 64 hex digits"))
    }
}

/// The two aggregators: the leader (uploads go there) and the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregators {
    /// The leader's key.
    pub leader: AggregatorKey,
    /// The helper's key.
    pub helper: AggregatorKey,
}

/// The document form (what operators write). Validate with
/// [`StudyDefinition::from_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyDoc {
    name: String,
    #[serde(default)]
    description: String,
    schema: String,
    schema_sha256: String,
    #[serde(default)]
    numeric: Vec<String>,
    #[serde(default)]
    correlations: Vec<(String, String)>,
    #[serde(default)]
    histograms: Vec<HistogramSpec>,
    #[serde(default)]
    strata: Option<String>,
    #[serde(default = "default_value_bits")]
    value_bits: u32,
    min_batch_size: u64,
    privacy: Privacy,
    #[serde(default = "one")]
    reports_per_patient: u32,
    opens_at: u64,
    closes_at: u64,
    aggregators: Aggregators,
}

fn default_value_bits() -> u32 {
    DEFAULT_VALUE_BITS
}

fn one() -> u32 {
    1
}

/// A validated study definition. Construct with [`StudyDefinition::from_json`]
/// (every instance has passed validation); check it against its schema with
/// [`crate::study::StudyEncoding::new`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDefinition {
    name: String,
    description: String,
    schema: String,
    schema_sha256: String,
    numeric: Vec<String>,
    correlations: Vec<(String, String)>,
    histograms: Vec<HistogramSpec>,
    strata: Option<String>,
    value_bits: u32,
    min_batch_size: u64,
    privacy: Privacy,
    reports_per_patient: u32,
    opens_at: u64,
    closes_at: u64,
    aggregators: Aggregators,
}

pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> StudyError {
    StudyError::Invalid { what, reason: reason.into() }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = char::from(b[2 * i]).to_digit(16)?;
        let lo = char::from(b[2 * i + 1]).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    // Lowercase only, so that the canonical form is unique.
    s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)).then_some(out)
}

impl StudyDefinition {
    /// Parses and validates a study document (at most [`MAX_STUDY_BYTES`];
    /// unknown keys refused).
    pub fn from_json(bytes: &[u8]) -> Result<Self, StudyError> {
        if bytes.len() > MAX_STUDY_BYTES {
            return Err(StudyError::TooLarge {
                what: "document bytes",
                actual: bytes.len(),
                limit: MAX_STUDY_BYTES,
            });
        }
        let doc: StudyDoc = serde_json::from_slice(bytes).map_err(|e| invalid("document", e.to_string()))?;
        Self::validate(doc)
    }

    fn validate(d: StudyDoc) -> Result<Self, StudyError> {
        if !is_valid_name(&d.name) {
            return Err(invalid("name", "use 1-64 characters from [a-z0-9_-]"));
        }
        if d.description.len() > 4096 {
            return Err(invalid("description", "longer than 4096 bytes"));
        }
        if !is_valid_name(&d.schema) {
            return Err(invalid("schema", "not a schema name"));
        }
        if hex32(&d.schema_sha256).is_none() {
            return Err(invalid("schema_sha256", "must be 64 lowercase hex digits"));
        }
        let too_many = |what, actual: usize, limit| {
            if actual > limit {
                Err(StudyError::TooLarge { what, actual, limit })
            } else {
                Ok(())
            }
        };
        too_many("numeric fields", d.numeric.len(), MAX_STUDY_FIELDS)?;
        too_many("correlation pairs", d.correlations.len(), MAX_STUDY_PAIRS)?;
        too_many("histograms", d.histograms.len(), MAX_STUDY_HISTOGRAMS)?;
        if d.numeric.is_empty() && d.correlations.is_empty() && d.histograms.is_empty() {
            return Err(invalid("statistics", "name at least one numeric field, correlation or histogram"));
        }
        if !VALUE_BITS.contains(&d.value_bits) {
            return Err(invalid(
                "value_bits",
                format!("must be {}..={}", VALUE_BITS.start(), VALUE_BITS.end()),
            ));
        }
        if !(MIN_BATCH_FLOOR..=MAX_MIN_BATCH).contains(&d.min_batch_size) {
            return Err(invalid("min_batch_size", format!("must be {MIN_BATCH_FLOOR}..={MAX_MIN_BATCH}")));
        }
        if !(1..=MAX_REPORTS_PER_PATIENT).contains(&d.reports_per_patient) {
            return Err(invalid("reports_per_patient", format!("must be 1..={MAX_REPORTS_PER_PATIENT}")));
        }
        if d.closes_at <= d.opens_at {
            return Err(invalid("closes_at", "must be after opens_at"));
        }
        for key in [&d.aggregators.leader, &d.aggregators.helper] {
            if key.hpke_suite != HPKE_SUITE {
                return Err(invalid("aggregators", format!("the HPKE suite must be {HPKE_SUITE:?}")));
            }
            key.public_key_bytes()?;
        }
        if d.aggregators.leader.hpke_public_key == d.aggregators.helper.hpke_public_key {
            return Err(invalid("aggregators", "leader and helper must have different keys"));
        }
        Ok(Self {
            name: d.name,
            description: d.description,
            schema: d.schema,
            schema_sha256: d.schema_sha256,
            numeric: d.numeric,
            correlations: d.correlations,
            histograms: d.histograms,
            strata: d.strata,
            value_bits: d.value_bits,
            min_batch_size: d.min_batch_size,
            privacy: d.privacy,
            reports_per_patient: d.reports_per_patient,
            opens_at: d.opens_at,
            closes_at: d.closes_at,
            aggregators: d.aggregators,
        })
    }

    /// The canonical JSON (what the log hashes; round-trips through
    /// [`StudyDefinition::from_json`]).
    pub fn canonical_json(&self) -> Result<Vec<u8>, StudyError> {
        serde_json::to_vec(self).map_err(|e| invalid("document", e.to_string()))
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// The SHA-256 (lowercase hex) of the schema's canonical JSON.
    pub fn schema_sha256(&self) -> &str {
        &self.schema_sha256
    }
    /// Numeric fields summarized.
    pub fn numeric(&self) -> &[String] {
        &self.numeric
    }
    /// Correlation pairs.
    pub fn correlations(&self) -> &[(String, String)] {
        &self.correlations
    }
    /// Histograms.
    pub fn histograms(&self) -> &[HistogramSpec] {
        &self.histograms
    }
    /// The stratum field, if any.
    pub fn strata(&self) -> Option<&str> {
        self.strata.as_deref()
    }
    /// Bits of a quantized value (sign included).
    pub fn value_bits(&self) -> u32 {
        self.value_bits
    }
    /// Smallest batch that may be released.
    pub fn min_batch_size(&self) -> u64 {
        self.min_batch_size
    }
    /// The privacy parameter each aggregator's noise is calibrated to, per
    /// batch release.
    pub fn privacy(&self) -> Privacy {
        self.privacy
    }
    /// Most reports one patient may contribute.
    pub fn reports_per_patient(&self) -> u32 {
        self.reports_per_patient
    }
    /// Start of the collection window (Unix seconds, inclusive).
    pub fn opens_at(&self) -> u64 {
        self.opens_at
    }
    /// End of the collection window (Unix seconds, exclusive).
    pub fn closes_at(&self) -> u64 {
        self.closes_at
    }
    /// Whether a report time (Unix seconds) is inside the window.
    pub fn in_window(&self, time: u64) -> bool {
        // Report times are rounded down to the hour: the hour that contains
        // `opens_at` is in.
        let opens = self.opens_at - self.opens_at % TIME_PRECISION_SECS;
        (opens..self.closes_at).contains(&time)
    }
    /// The aggregators' keys.
    pub fn aggregators(&self) -> &Aggregators {
        &self.aggregators
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    pub(crate) fn doc() -> serde_json::Value {
        json!({
            "name": "bp-study",
            "description": "Blood pressure and BMI by diabetes status",
            "schema": "health-basics",
            "schema_sha256": "00".repeat(32),
            "numeric": ["systolic_bp", "bmi"],
            "correlations": [["systolic_bp", "bmi"]],
            "histograms": [{"field": "sex"}, {"field": "systolic_bp", "edges": [60, 100, 120, 140, 160, 250]}],
            "strata": "diabetes",
            "min_batch_size": 10,
            "privacy": {"epsilon": 1.0},
            "opens_at": 1_700_000_000u64,
            "closes_at": 1_900_000_000u64,
            "aggregators": {
                "leader": {"hpke_suite": HPKE_SUITE, "hpke_public_key": "11".repeat(32)},
                "helper": {"hpke_suite": HPKE_SUITE, "hpke_public_key": "22".repeat(32)}
            }
        })
    }

    fn parse(v: &serde_json::Value) -> Result<StudyDefinition, StudyError> {
        StudyDefinition::from_json(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn a_definition_round_trips_through_its_canonical_form() {
        let d = parse(&doc()).unwrap();
        assert_eq!(d.value_bits(), DEFAULT_VALUE_BITS);
        assert_eq!(d.reports_per_patient(), 1);
        let again = StudyDefinition::from_json(&d.canonical_json().unwrap()).unwrap();
        assert_eq!(again, d);
        assert_eq!(again.canonical_json().unwrap(), d.canonical_json().unwrap());
        assert!(d.in_window(1_700_000_000 - 1_700_000_000 % 3600));
        assert!(!d.in_window(1_900_000_000));
    }

    #[test]
    fn bad_definitions_are_refused_naming_the_problem() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("name", json!("Bad Name"), "name"),
            ("schema_sha256", json!("zz"), "schema_sha256"),
            ("value_bits", json!(13), "value_bits"),
            ("value_bits", json!(1), "value_bits"),
            ("min_batch_size", json!(1), "min_batch_size"),
            ("reports_per_patient", json!(0), "reports_per_patient"),
            ("closes_at", json!(1), "closes_at"),
            ("privacy", json!({"epsilon": -1.0}), "document"),
            ("colour", json!("red"), "unknown field"),
        ];
        for (key, value, needle) in cases {
            let mut d = doc();
            d[key] = value;
            let e = parse(&d).unwrap_err().to_string();
            assert!(e.contains(needle), "{key}: {e}");
        }
        let mut d = doc();
        d["aggregators"]["helper"]["hpke_public_key"] = json!("11".repeat(32));
        assert!(parse(&d).unwrap_err().to_string().contains("different keys"));
        let mut d = doc();
        d["aggregators"]["leader"]["hpke_suite"] = json!("X448");
        assert!(parse(&d).unwrap_err().to_string().contains("HPKE suite"));
        let mut d = doc();
        d["aggregators"]["leader"]["hpke_public_key"] = json!("AB".repeat(32));
        assert!(parse(&d).unwrap_err().to_string().contains("64 hex"));
        let mut d = doc();
        d["numeric"] = json!([]);
        d["correlations"] = json!([]);
        d["histograms"] = json!([]);
        assert!(parse(&d).unwrap_err().to_string().contains("at least one"));
        let big = vec![b' '; MAX_STUDY_BYTES + 1];
        assert!(matches!(StudyDefinition::from_json(&big), Err(StudyError::TooLarge { .. })));
    }
}
