//! Aggregate queries and the planner that validates them against a schema
//! and calibrates each OpenDP measurement to the requested budget.

use serde::{Deserialize, Serialize};

use crate::bounds::{self, PlanRefusal};
use crate::budget::{Privacy, PrivacyCost};
use crate::error::{DpError, QueryError};
use crate::mechanism::{self, Mechanism, NoiseKind};
use crate::schema::{FieldType, Schema};

/// Largest query document accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Most filters in one query.
pub const MAX_FILTERS: usize = 16;
/// Most histogram bins.
pub const MAX_BINS: usize = 256;
/// Most quantile candidates.
pub const MAX_CANDIDATES: usize = 4096;
/// Quantile candidates used when the query does not say.
pub const DEFAULT_CANDIDATES: usize = 1024;
/// Histogram bins used for a numeric field when the query gives no edges.
pub const DEFAULT_BINS: usize = 10;

/// The statistic a query asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Statistic {
    /// Number of matching summaries (`{"kind": "count"}`).
    Count {},
    /// Sum of a numeric field (clamped to its bounds) over matching summaries.
    Sum {
        /// The field.
        field: String,
    },
    /// Mean of a numeric field: noisy sum / noisy count, budget split evenly.
    Mean {
        /// The field.
        field: String,
    },
    /// Counts per bin: a bool or category field's values, or a numeric
    /// field's public bin edges (outer bins are open-ended).
    Histogram {
        /// The field.
        field: String,
        /// Strictly increasing bin edges for a numeric field (default: ten
        /// equal bins between the field's bounds).
        #[serde(default)]
        edges: Option<Vec<f64>>,
    },
    /// Population variance: from noisy count, sum and sum of squares (budget
    /// split in three).
    Variance {
        /// The field.
        field: String,
    },
    /// Population standard deviation (square root of [`Statistic::Variance`]).
    StdDev {
        /// The field.
        field: String,
    },
    /// Pearson correlation of two numeric fields, from six noisy sums over
    /// summaries having both (budget split in six).
    Correlation {
        /// First field.
        x: String,
        /// Second field.
        y: String,
    },
    /// The `alpha`-quantile by OpenDP's exponential mechanism over public
    /// candidates (evenly spaced between the bounds; every integer for a
    /// narrow integer field).
    Quantile {
        /// The field.
        field: String,
        /// Which quantile, in [0, 1].
        alpha: f64,
        /// Number of candidates (default [`DEFAULT_CANDIDATES`]).
        #[serde(default)]
        candidates: Option<usize>,
    },
    /// The median (`alpha` = 0.5).
    Median {
        /// The field.
        field: String,
        /// Number of candidates.
        #[serde(default)]
        candidates: Option<usize>,
    },
}

/// A row filter. A summary whose filtered field is unknown does not match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// A bool field equals `value` (true/false), or a category field equals it (string).
    Is {
        /// The field.
        field: String,
        /// The value.
        value: serde_json::Value,
    },
    /// A category field is one of `values`.
    OneOf {
        /// The field.
        field: String,
        /// Allowed categories.
        values: Vec<String>,
    },
    /// A numeric field lies within `[min, max]` (either end optional), compared
    /// on the reported value before clamping.
    Range {
        /// The field.
        field: String,
        /// Inclusive lower end.
        #[serde(default)]
        min: Option<f64>,
        /// Inclusive upper end.
        #[serde(default)]
        max: Option<f64>,
    },
}

/// An analyst's query: a statistic over the summaries matching every filter,
/// released under the given privacy parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// What to compute.
    pub statistic: Statistic,
    /// Row filters (all must match).
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// ε (pure DP) or ρ (zCDP) to spend.
    pub privacy: Privacy,
}

impl Query {
    /// Parses a query document (size-limited to [`MAX_QUERY_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DpError> {
        if bytes.len() > MAX_QUERY_BYTES {
            return Err(DpError::TooLarge { what: "query", limit: MAX_QUERY_BYTES, actual: bytes.len() });
        }
        serde_json::from_slice(bytes).map_err(|e| DpError::Malformed { what: "query", detail: e.to_string() })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pred {
    Bool(usize, bool),
    Category(usize, Vec<String>),
    Range(usize, f64, f64),
}

/// How a component turns a matching row into its input value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RowMap {
    X(usize),
    Square(usize, (f64, f64)),
    Product(usize, (f64, f64), usize, (f64, f64)),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Count,
    Sum { map: RowMap, bounds: (f64, f64) },
    Histogram { field: usize, binning: Binning },
    Quantile { field: usize, bounds: (f64, f64), alpha: f64, candidates: Vec<f64> },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Binning {
    Bool,
    Category(Vec<String>),
    Edges { edges: Vec<f64>, bounds: (f64, f64) },
}

impl Binning {
    pub(crate) fn labels(&self) -> Vec<String> {
        match self {
            Self::Bool => vec!["false".into(), "true".into()],
            Self::Category(values) => values.clone(),
            Self::Edges { edges, .. } => edges
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let close = if i + 2 == edges.len() { ']' } else { ')' };
                    format!("[{}, {}{close}", w[0], w[1])
                })
                .collect(),
        }
    }
}

/// One OpenDP release inside a plan, calibrated but not yet run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// What it releases (`count`, `sum`, `sum_of_squares`, `histogram`, …).
    pub name: &'static str,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The noise scale (Laplace b, Gaussian σ, or selection noise scale).
    pub scale: f64,
    /// The sensitivity OpenDP reports for the stable transformation
    /// (absent for the exponential mechanism, whose score OpenDP integerizes).
    pub sensitivity: Option<f64>,
    /// The cost OpenDP's privacy map reports.
    pub cost: PrivacyCost,
    #[serde(skip)]
    pub(crate) source: Source,
}

/// What a plan computes from its released components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Count,
    Sum,
    Mean,
    Variance { std: bool },
    Correlation,
    Histogram,
    Quantile,
}

/// A validated, calibrated query, ready for [`crate::answer`]. Plain data:
/// it is `Send` and may be shown to the analyst before they confirm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    schema: String,
    query: Query,
    components: Vec<Component>,
    cost: PrivacyCost,
    #[serde(skip)]
    pub(crate) preds: Vec<Pred>,
    #[serde(skip)]
    pub(crate) required: Vec<usize>,
    #[serde(skip)]
    pub(crate) shape: Shape,
    #[serde(skip)]
    pub(crate) bounds: Option<(f64, f64)>,
    #[serde(skip)]
    pub(crate) noise: NoiseKind,
}

impl Plan {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// The query.
    pub fn query(&self) -> &Query {
        &self.query
    }
    /// The calibrated releases.
    pub fn components(&self) -> &[Component] {
        &self.components
    }
    /// The total cost (sum of the components', rounded up).
    pub fn cost(&self) -> PrivacyCost {
        self.cost
    }
}

fn numeric(schema: &Schema, name: &str, usage: &'static str) -> Result<(usize, (f64, f64)), QueryError> {
    let (idx, field) = schema.field(name).ok_or_else(|| QueryError::UnknownField { field: name.into() })?;
    let bounds = field.field_type.bounds().ok_or_else(|| QueryError::FieldType {
        field: name.into(),
        usage,
        expected: "an integer or float field",
        actual: field.field_type.name(),
    })?;
    Ok((idx, bounds))
}

fn resolve_filter(schema: &Schema, f: &Filter) -> Result<Pred, QueryError> {
    let name = match f {
        Filter::Is { field, .. } | Filter::OneOf { field, .. } | Filter::Range { field, .. } => field,
    };
    let (idx, field) = schema.field(name).ok_or_else(|| QueryError::UnknownField { field: name.clone() })?;
    let bad = |reason| QueryError::Filter { field: name.clone(), reason };
    match (f, &field.field_type) {
        (Filter::Is { value, .. }, FieldType::Bool {}) => Ok(Pred::Bool(
            idx,
            value.as_bool().ok_or_else(|| bad("a bool field compares with true or false"))?,
        )),
        (Filter::Is { value, .. }, FieldType::Category { values }) => {
            let v = value.as_str().ok_or_else(|| bad("a category field compares with a string"))?;
            if !values.iter().any(|c| c == v) {
                return Err(bad("value is not one of the field's categories"));
            }
            Ok(Pred::Category(idx, vec![v.to_owned()]))
        }
        (Filter::OneOf { values: wanted, .. }, FieldType::Category { values }) => {
            if wanted.is_empty() || wanted.iter().any(|w| !values.contains(w)) {
                return Err(bad("values must be a non-empty list of the field's categories"));
            }
            Ok(Pred::Category(idx, wanted.clone()))
        }
        (Filter::Range { min, max, .. }, FieldType::Integer { .. } | FieldType::Float { .. }) => {
            let lo = min.unwrap_or(f64::NEG_INFINITY);
            let hi = max.unwrap_or(f64::INFINITY);
            if lo.is_nan() || hi.is_nan() || lo > hi || (min.is_none() && max.is_none()) {
                return Err(bad("range needs min and/or max with min <= max"));
            }
            Ok(Pred::Range(idx, lo, hi))
        }
        (Filter::Is { .. }, _) => Err(bad("`is` applies to bool and category fields")),
        (Filter::OneOf { .. }, _) => Err(bad("`one_of` applies to category fields")),
        (Filter::Range { .. }, _) => Err(bad("`range` applies to integer and float fields")),
    }
}

fn square_bounds((lo, hi): (f64, f64)) -> (f64, f64) {
    let top = (lo * lo).max(hi * hi);
    let bottom = if lo <= 0.0 && 0.0 <= hi { 0.0 } else { (lo * lo).min(hi * hi) };
    (bottom, top)
}

fn product_bounds((a, b): (f64, f64), (c, d): (f64, f64)) -> (f64, f64) {
    let corners = [a * c, a * d, b * c, b * d];
    (
        corners.iter().copied().fold(f64::INFINITY, f64::min),
        corners.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

fn candidates(
    field_type: &FieldType,
    (lo, hi): (f64, f64),
    requested: Option<usize>,
) -> Result<Vec<f64>, QueryError> {
    let n = requested.unwrap_or(DEFAULT_CANDIDATES);
    if n > MAX_CANDIDATES {
        return Err(QueryError::TooMany { what: "quantile candidates", limit: MAX_CANDIDATES, actual: n });
    }
    if n < 2 {
        return Err(QueryError::TooMany {
            what: "quantile candidates (at least 2)",
            limit: MAX_CANDIDATES,
            actual: n,
        });
    }
    let width = hi - lo;
    if matches!(field_type, FieldType::Integer { .. }) && width + 1.0 <= n as f64 {
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "width < MAX_CANDIDATES")]
        let count = width as usize + 1;
        #[expect(clippy::cast_precision_loss, reason = "small index")]
        return Ok((0..count).map(|i| lo + i as f64).collect());
    }
    #[expect(clippy::cast_precision_loss, reason = "small index")]
    Ok((0..n).map(|i| lo + width * (i as f64) / ((n - 1) as f64)).collect())
}

type Parts = (Shape, Vec<usize>, Option<(f64, f64)>, Vec<(&'static str, Source)>);

fn quantile_parts(schema: &Schema, field: &str, alpha: f64, n: Option<usize>) -> Result<Parts, DpError> {
    let (i, b) = numeric(schema, field, "quantile")?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(QueryError::InvalidAlpha.into());
    }
    let cands = candidates(&schema.fields()[i].field_type, b, n)?;
    Ok((
        Shape::Quantile,
        vec![i],
        Some(b),
        vec![("quantile", Source::Quantile { field: i, bounds: b, alpha, candidates: cands })],
    ))
}

/// A component's calibrated noise: scale, OpenDP's cost at that scale, the
/// sensitivity OpenDP reports, and the mechanism.
fn calibrate_source(
    noise: NoiseKind,
    share: f64,
    exponent: i32,
    source: &Source,
) -> Result<(f64, f64, Option<f64>, Mechanism), DpError> {
    Ok(match source {
        Source::Count => {
            let (scale, cost) =
                mechanism::calibrate(share, exponent, |s| Ok(mechanism::count(noise, s, None)?.0))?;
            (scale, cost, Some(1.0), mechanism::mechanism(noise, true))
        }
        Source::Sum { bounds, .. } => {
            let (scale, cost) =
                mechanism::calibrate(share, exponent, |s| Ok(mechanism::sum(noise, *bounds, s, None)?.0))?;
            (scale, cost, Some(mechanism::sum_sensitivity(*bounds)?), mechanism::mechanism(noise, false))
        }
        Source::Histogram { binning, .. } => {
            let bins = binning.labels().len();
            let (scale, cost) =
                mechanism::calibrate(share, exponent, |s| Ok(mechanism::histogram(noise, bins, s, None)?.0))?;
            let sensitivity = mechanism::histogram(noise, bins, scale, None)?.1;
            (scale, cost, Some(sensitivity), mechanism::mechanism(noise, true))
        }
        Source::Quantile { bounds, alpha, candidates, .. } => {
            let (scale, cost) = mechanism::calibrate(share, exponent, |s| {
                Ok(mechanism::quantile(noise, *bounds, candidates, *alpha, s, None)?.0)
            })?;
            (scale, cost, None, Mechanism::ExponentialMechanism)
        }
    })
}

/// Validates `query` against `schema` and calibrates every OpenDP
/// measurement it needs so that the total cost is at most the requested ε
/// or ρ (split evenly across components). Costs are OpenDP's own maps.
pub fn plan(schema: &Schema, query: &Query) -> Result<Plan, DpError> {
    if query.filters.len() > MAX_FILTERS {
        return Err(
            QueryError::TooMany { what: "filters", limit: MAX_FILTERS, actual: query.filters.len() }.into()
        );
    }
    let preds = query.filters.iter().map(|f| resolve_filter(schema, f)).collect::<Result<Vec<_>, _>>()?;
    bounds::check_floor(query.privacy)?;
    let (noise, target, exponent) = match query.privacy {
        Privacy::Epsilon(e) => (NoiseKind::Laplace, e.get(), 1),
        Privacy::Rho(r) => (NoiseKind::Gaussian, r.get(), 2),
    };

    let sum = |map, bounds| Source::Sum { map, bounds };
    let (shape, required, bounds, sources): Parts = match &query.statistic {
        Statistic::Count {} => (Shape::Count, vec![], None, vec![("count", Source::Count)]),
        Statistic::Sum { field } => {
            let (i, b) = numeric(schema, field, "sum")?;
            (Shape::Sum, vec![i], Some(b), vec![("sum", sum(RowMap::X(i), b))])
        }
        Statistic::Mean { field } => {
            let (i, b) = numeric(schema, field, "mean")?;
            (Shape::Mean, vec![i], Some(b), vec![("count", Source::Count), ("sum", sum(RowMap::X(i), b))])
        }
        Statistic::Variance { field } | Statistic::StdDev { field } => {
            let std = matches!(query.statistic, Statistic::StdDev { .. });
            let (i, b) = numeric(schema, field, if std { "std_dev" } else { "variance" })?;
            (
                Shape::Variance { std },
                vec![i],
                Some(b),
                vec![
                    ("count", Source::Count),
                    ("sum", sum(RowMap::X(i), b)),
                    ("sum_of_squares", sum(RowMap::Square(i, b), square_bounds(b))),
                ],
            )
        }
        Statistic::Correlation { x, y } => {
            if x == y {
                return Err(QueryError::SameField.into());
            }
            let (ix, bx) = numeric(schema, x, "correlation")?;
            let (iy, by) = numeric(schema, y, "correlation")?;
            (
                Shape::Correlation,
                vec![ix, iy],
                None,
                vec![
                    ("count", Source::Count),
                    ("sum_x", sum(RowMap::X(ix), bx)),
                    ("sum_y", sum(RowMap::X(iy), by)),
                    ("sum_x_squares", sum(RowMap::Square(ix, bx), square_bounds(bx))),
                    ("sum_y_squares", sum(RowMap::Square(iy, by), square_bounds(by))),
                    ("sum_xy", sum(RowMap::Product(ix, bx, iy, by), product_bounds(bx, by))),
                ],
            )
        }
        Statistic::Histogram { field, edges } => {
            let (i, f) =
                schema.field(field).ok_or_else(|| QueryError::UnknownField { field: field.clone() })?;
            let binning = match (&f.field_type, edges) {
                (FieldType::Bool {}, None) => Binning::Bool,
                (FieldType::Category { values }, None) => Binning::Category(values.clone()),
                (FieldType::Integer { min, max } | FieldType::Float { min, max }, edges) => {
                    let edges = match edges {
                        Some(e) => e.clone(),
                        #[expect(clippy::cast_precision_loss, reason = "small index")]
                        None => (0..=DEFAULT_BINS)
                            .map(|k| min + (max - min) * k as f64 / DEFAULT_BINS as f64)
                            .collect(),
                    };
                    if edges.len() > MAX_BINS + 1 {
                        return Err(QueryError::TooMany {
                            what: "bins",
                            limit: MAX_BINS,
                            actual: edges.len() - 1,
                        }
                        .into());
                    }
                    if edges.len() < 2
                        || edges.iter().any(|e| !e.is_finite())
                        || edges.windows(2).any(|w| w[0] >= w[1])
                    {
                        return Err(QueryError::InvalidBins.into());
                    }
                    Binning::Edges { edges, bounds: (*min, *max) }
                }
                (other, Some(_)) => {
                    return Err(QueryError::FieldType {
                        field: field.clone(),
                        usage: "histogram edges",
                        expected: "an integer or float field",
                        actual: other.name(),
                    }
                    .into())
                }
            };
            (Shape::Histogram, vec![i], None, vec![("histogram", Source::Histogram { field: i, binning })])
        }
        Statistic::Quantile { field, alpha, candidates: n } => quantile_parts(schema, field, *alpha, *n)?,
        Statistic::Median { field, candidates: n } => quantile_parts(schema, field, 0.5, *n)?,
    };

    #[expect(clippy::cast_precision_loss, reason = "at most six components")]
    let share = target / sources.len() as f64;
    let mut components = Vec::with_capacity(sources.len());
    let mut work = 0.0;
    for (name, source) in sources {
        // OpenDP's own calibration failures are explained, not passed on raw.
        let explain = |e: DpError| match e {
            DpError::OpenDp(detail) => DpError::from(PlanRefusal::Calibration { component: name, detail }),
            other => other,
        };
        let (scale, cost, sensitivity, mech) =
            calibrate_source(noise, share, exponent, &source).map_err(explain)?;
        bounds::check_scale(name, scale)?;
        let samples = match &source {
            Source::Count | Source::Sum { .. } => 1,
            Source::Histogram { binning, .. } => binning.labels().len(),
            Source::Quantile { candidates, .. } => candidates.len(),
        };
        work += bounds::sampler_units(mech, scale, samples);
        let cost = match noise {
            NoiseKind::Laplace => PrivacyCost::Epsilon(cost),
            NoiseKind::Gaussian => PrivacyCost::Rho(cost),
        };
        components.push(Component { name, mechanism: mech, scale, sensitivity, cost, source });
    }
    bounds::check_cost(work)?;
    let total = crate::answer::total_cost(&components, noise)?;
    Ok(Plan {
        schema: schema.name().to_owned(),
        query: query.clone(),
        components,
        cost: total,
        preds,
        required,
        shape,
        bounds,
        noise,
    })
}
