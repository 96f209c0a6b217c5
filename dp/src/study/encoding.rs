//! The measurement a patient's client sends to a study: one summary turned
//! into three vectors of small non-negative integers, one per *group* of
//! coordinates with the same range, each a `Prio3SumVec` whose validity
//! proof checks that range.
//!
//! For a patient in stratum block `b` (the value of the study's stratum
//! field, or "unknown"), only block `b` of each vector is non-zero:
//!
//! | group | range | per block |
//! | --- | --- | --- |
//! | bits | 0..=1 | count; a presence bit per numeric field; a joint-presence bit per pair; one-hot bins per histogram |
//! | values | 0..=H | per numeric field the positive and negative part of its centred quantized value v; per pair the parts of x and y |
//! | squares | 0..=H² | per numeric field v²; per pair x², y² and the positive and negative part of x·y |
//!
//! A numeric value x in `[lo, hi]` (clamped first) is quantized to
//! `v = round((x − mid) / half · H) ∈ [−H, H]` with `mid = (lo + hi)/2`,
//! `half = (hi − lo)/2` and `H = 2^(value_bits − 1)`; the quantization step
//! is `half / H`. Centring keeps squares small (at most H²), which keeps the
//! noise small. Every statistic the analyst gets is a function of the sums of
//! these coordinates: counts, Σv, Σv², Σxy, histogram bins.

use sha2::{Digest, Sha256};

use crate::schema::{FieldType, Schema};
use crate::study::definition::{invalid, StudyDefinition, MAX_STRATA, MAX_STUDY_BINS};
use crate::study::error::StudyError;
use crate::summary::{FieldValue, Summary};

/// Most coordinates in one group.
pub const MAX_GROUP_LEN: usize = 8192;
/// Bins of a numeric histogram whose study gives no edges.
pub const DEFAULT_STUDY_BINS: usize = 10;

/// A group of measurement coordinates sharing one range (one `Prio3SumVec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// 0 or 1: counts, presence bits, histogram bins.
    Bits,
    /// 0..=H: parts of centred quantized values.
    Values,
    /// 0..=H²: squares and products.
    Squares,
}

impl Group {
    /// The three groups, in measurement order.
    pub const ALL: [Group; 3] = [Group::Bits, Group::Values, Group::Squares];

    /// Position in [`Group::ALL`].
    pub fn index(self) -> usize {
        match self {
            Group::Bits => 0,
            Group::Values => 1,
            Group::Squares => 2,
        }
    }

    /// Name for reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Group::Bits => "bits",
            Group::Values => "values",
            Group::Squares => "squares",
        }
    }
}

/// A numeric field the study uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Numeric {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
}

impl Numeric {
    pub(crate) fn mid(&self) -> f64 {
        self.lo + (self.hi - self.lo) / 2.0
    }
    /// The value of one quantization unit.
    pub(crate) fn step(&self, h: u64) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "H is at most 2^11")]
        let h = h as f64;
        (self.hi - self.lo) / 2.0 / h
    }
}

/// How a histogram assigns a value to a bin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Binning {
    Bool,
    Category(Vec<String>),
    Edges(Vec<f64>),
}

/// A histogram the study releases.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hist {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) binning: Binning,
    pub(crate) labels: Vec<String>,
}

impl Hist {
    pub(crate) fn bins(&self) -> usize {
        self.labels.len()
    }
}

fn bin_of(binning: &Binning, value: Option<&FieldValue>) -> Option<usize> {
    match (binning, value?) {
        (Binning::Bool, FieldValue::Bool(b)) => Some(usize::from(*b)),
        (Binning::Category(values), FieldValue::Category(c)) => values.iter().position(|v| v == c),
        (Binning::Edges(edges), v) => {
            let x = v.as_f64()?;
            let (first, last) = (edges[0], edges[edges.len() - 1]);
            let x = x.clamp(first, last);
            // Bin k holds [e_k, e_{k+1}); the last bin is closed.
            let above = edges[1..edges.len() - 1].partition_point(|e| *e <= x);
            Some(above.min(edges.len() - 2))
        }
        _ => None,
    }
}

/// The study's stratum field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Strata {
    pub(crate) field: Option<(usize, Binning)>,
    /// Block labels; the last is "unknown" when there is a stratum field.
    pub(crate) labels: Vec<String>,
}

/// One patient's measurement: a vector per [`Group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// Coordinates per group, in [`Group::ALL`] order.
    pub groups: [Vec<u128>; 3],
}

/// A study definition checked against its schema, with the coordinate
/// layout of its measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyEncoding {
    def: StudyDefinition,
    schema: Schema,
    study_sha256: [u8; 32],
    pub(crate) numeric: Vec<Numeric>,
    pub(crate) pairs: Vec<(Numeric, Numeric)>,
    pub(crate) hists: Vec<Hist>,
    pub(crate) strata: Strata,
    pub(crate) half: u64,
    per_block: [usize; 3],
}

fn numeric_field(schema: &Schema, name: &str, what: &'static str) -> Result<Numeric, StudyError> {
    let (index, field) = schema
        .field(name)
        .ok_or_else(|| invalid(what, format!("schema {} has no field {name:?}", schema.name())))?;
    let (lo, hi) = field.field_type.bounds().ok_or_else(|| {
        invalid(what, format!("field {name:?} is {}, not numeric", field.field_type.name()))
    })?;
    Ok(Numeric { name: name.to_owned(), index, lo, hi })
}

fn category_binning(
    schema: &Schema,
    name: &str,
    what: &'static str,
) -> Result<(usize, Binning, Vec<String>), StudyError> {
    let (index, field) = schema
        .field(name)
        .ok_or_else(|| invalid(what, format!("schema {} has no field {name:?}", schema.name())))?;
    match &field.field_type {
        FieldType::Bool {} => Ok((index, Binning::Bool, vec!["false".into(), "true".into()])),
        FieldType::Category { values } => Ok((index, Binning::Category(values.clone()), values.clone())),
        other => Err(invalid(what, format!("field {name:?} is {}, not bool or category", other.name()))),
    }
}

/// The SHA-256 of a canonical JSON document.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl StudyEncoding {
    /// Checks `def` against `schema` (the schema it names, with the SHA-256
    /// it states) and lays out its measurement.
    pub fn new(schema: &Schema, def: &StudyDefinition) -> Result<Self, StudyError> {
        if schema.name() != def.schema() {
            return Err(StudyError::SchemaMismatch {
                expected: def.schema().to_owned(),
                found: schema.name().to_owned(),
            });
        }
        let schema_json = serde_json::to_vec(schema).map_err(|e| invalid("schema", e.to_string()))?;
        let digest: String = sha256(&schema_json).iter().map(|b| format!("{b:02x}")).collect();
        if digest != def.schema_sha256() {
            return Err(invalid("schema_sha256", "does not match the installed schema's canonical JSON"));
        }
        let mut numeric = Vec::new();
        for name in def.numeric() {
            if numeric.iter().any(|n: &Numeric| &n.name == name) {
                return Err(invalid("numeric", format!("field {name:?} listed twice")));
            }
            numeric.push(numeric_field(schema, name, "numeric")?);
        }
        let mut pairs = Vec::new();
        for (x, y) in def.correlations() {
            if x == y {
                return Err(invalid("correlations", format!("{x:?} with itself")));
            }
            if pairs.iter().any(|(a, b): &(Numeric, Numeric)| {
                (&a.name, &b.name) == (x, y) || (&a.name, &b.name) == (y, x)
            }) {
                return Err(invalid("correlations", format!("pair ({x}, {y}) listed twice")));
            }
            pairs
                .push((numeric_field(schema, x, "correlations")?, numeric_field(schema, y, "correlations")?));
        }
        let mut hists = Vec::new();
        for spec in def.histograms() {
            if hists.iter().any(|h: &Hist| h.name == spec.field) {
                return Err(invalid("histograms", format!("field {:?} listed twice", spec.field)));
            }
            let (index, field) = schema.field(&spec.field).ok_or_else(|| {
                invalid("histograms", format!("schema {} has no field {:?}", schema.name(), spec.field))
            })?;
            let hist = match (field.field_type.bounds(), &spec.edges) {
                (Some((lo, hi)), edges) => {
                    let edges = match edges {
                        Some(e) => e.clone(),
                        None => {
                            #[expect(clippy::cast_precision_loss, reason = "ten bins")]
                            let n = DEFAULT_STUDY_BINS as f64;
                            (0..=DEFAULT_STUDY_BINS)
                                .map(|k| {
                                    #[expect(clippy::cast_precision_loss, reason = "at most ten")]
                                    let k = k as f64;
                                    lo + (hi - lo) * k / n
                                })
                                .collect()
                        }
                    };
                    if edges.len() < 2
                        || edges.len() > MAX_STUDY_BINS + 1
                        || edges.iter().any(|e| !e.is_finite() || *e < lo || *e > hi)
                        || edges.windows(2).any(|w| w[0] >= w[1])
                    {
                        return Err(invalid(
                            "histograms",
                            format!(
                                "edges of {:?} must be 2..={} strictly increasing numbers within [{lo}, {hi}]",
                                spec.field,
                                MAX_STUDY_BINS + 1
                            ),
                        ));
                    }
                    let labels = edges
                        .windows(2)
                        .enumerate()
                        .map(|(k, w)| {
                            if k + 2 == edges.len() {
                                format!("[{}, {}]", w[0], w[1])
                            } else {
                                format!("[{}, {})", w[0], w[1])
                            }
                        })
                        .collect();
                    Hist { name: spec.field.clone(), index, binning: Binning::Edges(edges), labels }
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "histograms",
                        format!(
                            "edges apply to numeric fields; {:?} is {}",
                            spec.field,
                            field.field_type.name()
                        ),
                    ))
                }
                (None, None) => {
                    let (index, binning, labels) = category_binning(schema, &spec.field, "histograms")?;
                    if labels.len() > MAX_STUDY_BINS {
                        return Err(StudyError::TooLarge {
                            what: "histogram bins",
                            actual: labels.len(),
                            limit: MAX_STUDY_BINS,
                        });
                    }
                    Hist { name: spec.field.clone(), index, binning, labels }
                }
            };
            hists.push(hist);
        }
        let strata = match def.strata() {
            None => Strata { field: None, labels: vec!["all".into()] },
            Some(name) => {
                let (index, binning, mut labels) = category_binning(schema, name, "strata")?;
                if labels.len() > MAX_STRATA {
                    return Err(StudyError::TooLarge {
                        what: "strata",
                        actual: labels.len(),
                        limit: MAX_STRATA,
                    });
                }
                labels.push("unknown".into());
                Strata { field: Some((index, binning)), labels }
            }
        };
        let half = 1u64 << (def.value_bits() - 1);
        let (nf, np) = (numeric.len(), pairs.len());
        let bins: usize = hists.iter().map(Hist::bins).sum();
        let per_block = [1 + nf + np + bins, 2 * nf + 4 * np, nf + 4 * np];
        let blocks = strata.labels.len();
        for g in Group::ALL {
            let len = per_block[g.index()] * blocks;
            if len > MAX_GROUP_LEN {
                return Err(StudyError::TooLarge {
                    what: "coordinates in one group",
                    actual: len,
                    limit: MAX_GROUP_LEN,
                });
            }
        }
        let study_sha256 = sha256(&def.canonical_json()?);
        Ok(Self {
            def: def.clone(),
            schema: schema.clone(),
            study_sha256,
            numeric,
            pairs,
            hists,
            strata,
            half,
            per_block,
        })
    }

    /// The definition.
    pub fn definition(&self) -> &StudyDefinition {
        &self.def
    }

    /// The schema it was checked against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// SHA-256 of the definition's canonical JSON (bound into every report
    /// and every leader↔helper message).
    pub fn study_sha256(&self) -> &[u8; 32] {
        &self.study_sha256
    }

    /// H: the largest |v| of a quantized value.
    pub fn half_range(&self) -> u64 {
        self.half
    }

    /// Number of stratum blocks (strata plus "unknown", or one block).
    pub fn blocks(&self) -> usize {
        self.strata.labels.len()
    }

    /// The blocks' labels.
    pub fn block_labels(&self) -> &[String] {
        &self.strata.labels
    }

    /// Coordinates of `group` over all blocks.
    pub fn group_len(&self, group: Group) -> usize {
        self.per_block[group.index()] * self.blocks()
    }

    /// The largest value a coordinate of `group` may take (what its
    /// validity proof checks).
    pub fn group_max(&self, group: Group) -> u128 {
        match group {
            Group::Bits => 1,
            Group::Values => u128::from(self.half),
            Group::Squares => u128::from(self.half) * u128::from(self.half),
        }
    }

    /// The L1 and squared-L2 norm one honest patient's measurement can have
    /// in `group` (its sensitivity under adding or removing one report).
    pub fn sensitivity(&self, group: Group) -> (u128, u128) {
        let (nf, np) = (self.numeric.len() as u128, self.pairs.len() as u128);
        let h = u128::from(self.half);
        match group {
            Group::Bits => {
                let k = 1 + nf + np + self.hists.len() as u128;
                (k, k)
            }
            // Per field one of pos/neg; per pair one part of x and one of y.
            Group::Values => ((nf + 2 * np) * h, (nf + 2 * np) * h * h),
            // Per field v²; per pair x², y² and one part of xy.
            Group::Squares => ((nf + 3 * np) * h * h, (nf + 3 * np) * h * h * h * h),
        }
    }

    pub(crate) fn offset(&self, group: Group, block: usize) -> usize {
        self.per_block[group.index()] * block
    }

    /// (group, coordinate) of block `b`'s count.
    pub(crate) fn count_at(&self, b: usize) -> usize {
        self.offset(Group::Bits, b)
    }
    /// Presence bit of numeric field `f` in block `b`.
    pub(crate) fn presence_at(&self, b: usize, f: usize) -> usize {
        self.offset(Group::Bits, b) + 1 + f
    }
    /// Joint presence of pair `p`.
    pub(crate) fn pair_presence_at(&self, b: usize, p: usize) -> usize {
        self.offset(Group::Bits, b) + 1 + self.numeric.len() + p
    }
    /// First bin of histogram `h`.
    pub(crate) fn bins_at(&self, b: usize, h: usize) -> usize {
        let before: usize = self.hists[..h].iter().map(Hist::bins).sum();
        self.offset(Group::Bits, b) + 1 + self.numeric.len() + self.pairs.len() + before
    }
    /// (pos, neg) of numeric field `f` in the values group.
    pub(crate) fn value_at(&self, b: usize, f: usize) -> (usize, usize) {
        let i = self.offset(Group::Values, b) + 2 * f;
        (i, i + 1)
    }
    /// (x pos, x neg, y pos, y neg) of pair `p` in the values group.
    pub(crate) fn pair_values_at(&self, b: usize, p: usize) -> [usize; 4] {
        let i = self.offset(Group::Values, b) + 2 * self.numeric.len() + 4 * p;
        [i, i + 1, i + 2, i + 3]
    }
    /// v² of numeric field `f` in the squares group.
    pub(crate) fn square_at(&self, b: usize, f: usize) -> usize {
        self.offset(Group::Squares, b) + f
    }
    /// (x², y², xy pos, xy neg) of pair `p` in the squares group.
    pub(crate) fn pair_squares_at(&self, b: usize, p: usize) -> [usize; 4] {
        let i = self.offset(Group::Squares, b) + self.numeric.len() + 4 * p;
        [i, i + 1, i + 2, i + 3]
    }

    /// The quantized value of a numeric field (clamped into its bounds first).
    pub(crate) fn quantize(&self, n: &Numeric, x: f64) -> i64 {
        let h = i64::try_from(self.half).unwrap_or(i64::MAX);
        #[expect(clippy::cast_precision_loss, reason = "H is at most 2^11")]
        let hf = self.half as f64;
        let half = (n.hi - n.lo) / 2.0;
        let scaled = ((x.clamp(n.lo, n.hi) - n.mid()) / half * hf).round();
        #[expect(clippy::cast_possible_truncation, reason = "within ±H after the clamp")]
        let v = scaled.clamp(-hf, hf) as i64;
        v.clamp(-h, h)
    }

    fn block_of(&self, summary: &Summary) -> usize {
        let unknown = self.blocks() - 1;
        match &self.strata.field {
            None => 0,
            Some((index, binning)) => bin_of(binning, summary.value(*index)).unwrap_or(unknown),
        }
    }

    /// Encodes one summary (of this study's schema) into its measurement.
    pub fn encode(&self, summary: &Summary) -> Result<Measurement, StudyError> {
        if summary.schema() != self.def.schema() {
            return Err(StudyError::SchemaMismatch {
                expected: self.def.schema().to_owned(),
                found: summary.schema().to_owned(),
            });
        }
        let mut groups = Group::ALL.map(|g| vec![0u128; self.group_len(g)]);
        let b = self.block_of(summary);
        let value =
            |n: &Numeric| summary.value(n.index).and_then(FieldValue::as_f64).map(|x| self.quantize(n, x));
        let parts = |v: i64| (u128::from(v.max(0).unsigned_abs()), u128::from(v.min(0).unsigned_abs()));
        let sq = |v: i64| u128::from(v.unsigned_abs()) * u128::from(v.unsigned_abs());
        let [bits, values, squares] = &mut groups;
        bits[self.count_at(b)] = 1;
        for (f, n) in self.numeric.iter().enumerate() {
            if let Some(v) = value(n) {
                bits[self.presence_at(b, f)] = 1;
                let (pos, neg) = parts(v);
                let (ip, ineg) = self.value_at(b, f);
                values[ip] = pos;
                values[ineg] = neg;
                squares[self.square_at(b, f)] = sq(v);
            }
        }
        for (p, (x, y)) in self.pairs.iter().enumerate() {
            if let (Some(vx), Some(vy)) = (value(x), value(y)) {
                bits[self.pair_presence_at(b, p)] = 1;
                let [xp, xn, yp, yn] = self.pair_values_at(b, p);
                (values[xp], values[xn]) = parts(vx);
                (values[yp], values[yn]) = parts(vy);
                let [xx, yy, xyp, xyn] = self.pair_squares_at(b, p);
                squares[xx] = sq(vx);
                squares[yy] = sq(vy);
                let xy = i128::from(vx) * i128::from(vy);
                if xy >= 0 {
                    squares[xyp] = xy.unsigned_abs();
                } else {
                    squares[xyn] = xy.unsigned_abs();
                }
            }
        }
        for (h, hist) in self.hists.iter().enumerate() {
            if let Some(k) = bin_of(&hist.binning, summary.value(hist.index)) {
                bits[self.bins_at(b, h) + k] = 1;
            }
        }
        Ok(Measurement { groups })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::study::definition::tests::doc;
    use crate::summary::SummaryDoc;
    use serde_json::json;

    /// The test study over the shipped schema (with its true hash).
    pub(crate) fn encoding() -> StudyEncoding {
        let schema = Schema::health_basics();
        let mut d = doc();
        let digest: String =
            sha256(&serde_json::to_vec(&schema).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
        d["schema_sha256"] = json!(digest);
        let def = StudyDefinition::from_json(&serde_json::to_vec(&d).unwrap()).unwrap();
        StudyEncoding::new(&schema, &def).unwrap()
    }

    pub(crate) fn summary(values: serde_json::Value) -> Summary {
        let doc: SummaryDoc =
            serde_json::from_value(json!({"schema": "health-basics", "values": values})).unwrap();
        Summary::validate(&Schema::health_basics(), &doc).unwrap()
    }

    #[test]
    fn a_summary_lands_in_its_stratum_block_with_every_coordinate_in_range() {
        let e = encoding();
        assert_eq!(e.block_labels(), ["false", "true", "unknown"]);
        assert_eq!(e.half_range(), 128);
        // bits: count, 2 presences, 1 pair presence, 4 sex bins, 5 bp bins.
        assert_eq!(e.group_len(Group::Bits), 13 * 3);
        assert_eq!(e.group_len(Group::Values), 8 * 3);
        assert_eq!(e.group_len(Group::Squares), 6 * 3);
        // 155 mmHg in [60, 250]: mid 155 → v = 0; BMI 70 (upper bound) → v = H.
        let m = e
            .encode(&summary(json!({"diabetes": true, "systolic_bp": 155.0, "bmi": 82.0, "sex": "male"})))
            .unwrap();
        let b = 1;
        for g in Group::ALL {
            let v = &m.groups[g.index()];
            assert!(v.iter().all(|x| *x <= e.group_max(g)), "{g:?}");
            let outside =
                (0..v.len()).filter(|i| v[*i] != 0 && (*i < e.offset(g, b) || *i >= e.offset(g, b + 1)));
            assert_eq!(outside.count(), 0, "{g:?}: only the patient's block is non-zero");
        }
        let [bits, values, squares] = &m.groups;
        assert_eq!(bits[e.count_at(b)], 1);
        assert_eq!((bits[e.presence_at(b, 0)], bits[e.presence_at(b, 1)]), (1, 1));
        assert_eq!(values[e.value_at(b, 0).0] + values[e.value_at(b, 0).1], 0);
        assert_eq!((values[e.value_at(b, 1).0], values[e.value_at(b, 1).1]), (128, 0));
        assert_eq!(squares[e.square_at(b, 1)], 128 * 128);
        assert_eq!(bits[e.bins_at(b, 0) + 1], 1, "sex = male is bin 1");
        assert_eq!(bits[e.bins_at(b, 1) + 3], 1, "155 is in [140, 160)");
        // Honest measurements never exceed the stated sensitivities.
        for g in Group::ALL {
            let v = &m.groups[g.index()];
            let (l1, l2sq) = e.sensitivity(g);
            assert!(v.iter().sum::<u128>() <= l1);
            assert!(v.iter().map(|x| x * x).sum::<u128>() <= l2sq);
        }
        // A negative product goes to the negative part; a missing stratum
        // goes to "unknown"; a missing field leaves its bits at 0.
        let m = e.encode(&summary(json!({"systolic_bp": 250.0, "bmi": 10.0}))).unwrap();
        let [bits, _, squares] = &m.groups;
        let b = 2;
        assert_eq!(bits[e.count_at(b)], 1);
        let [_, _, xyp, xyn] = e.pair_squares_at(b, 0);
        assert_eq!((squares[xyp], squares[xyn]), (0, 128 * 128));
        assert_eq!(bits[e.bins_at(b, 0)..e.bins_at(b, 0) + 4].iter().sum::<u128>(), 0, "no sex, no bin");
        let m = e.encode(&summary(json!({"diabetes": false}))).unwrap();
        assert_eq!(m.groups[0].iter().sum::<u128>(), 1, "just the count");
    }

    #[test]
    fn definitions_that_do_not_fit_the_schema_are_refused() {
        let schema = Schema::health_basics();
        let base = encoding().definition().clone();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut d: serde_json::Value = serde_json::from_slice(&base.canonical_json().unwrap()).unwrap();
            f(&mut d);
            let def = StudyDefinition::from_json(&serde_json::to_vec(&d).unwrap()).unwrap();
            StudyEncoding::new(&schema, &def).unwrap_err().to_string()
        };
        assert!(with(&|d| d["numeric"] = json!(["weight"])).contains("no field \"weight\""));
        assert!(with(&|d| d["numeric"] = json!(["sex"])).contains("not numeric"));
        assert!(with(&|d| d["correlations"] = json!([["bmi", "bmi"]])).contains("itself"));
        assert!(with(&|d| d["histograms"] = json!([{"field": "sex", "edges": [1, 2]}]))
            .contains("numeric fields"));
        assert!(with(&|d| d["histograms"] = json!([{"field": "bmi", "edges": [5, 20]}]))
            .contains("within [10, 70]"));
        assert!(
            with(&|d| d["histograms"] = json!([{"field": "bmi", "edges": [30, 20]}])).contains("increasing")
        );
        assert!(with(&|d| d["strata"] = json!("bmi")).contains("not bool or category"));
        assert!(with(&|d| d["schema_sha256"] = json!("ab".repeat(32))).contains("does not match"));
        assert!(with(&|d| d["numeric"] = json!(["bmi", "bmi"])).contains("twice"));
    }
}
