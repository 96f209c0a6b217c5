//! Running a plan over the summaries: releases, post-processing, accuracy
//! and the ledger debit.

use opendp::traits::InfAdd;
use serde::{Deserialize, Serialize};

use crate::budget::{Ledger, PrivacyCost};
use crate::error::DpError;
use crate::mechanism::{self, Mechanism, NoiseKind};
use crate::query::{Binning, Component, Plan, Pred, Query, RowMap, Shape, Source};
use crate::summary::{FieldValue, Summary};

/// Most summaries in one release. OpenDP's float sums over data of unknown
/// size are proven for at most 2^20 rows.
pub const MAX_ROWS: usize = 1 << 20;
/// Confidence level of every reported accuracy interval.
pub const CONFIDENCE: f64 = 0.95;

/// A released histogram bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinCount {
    /// The bin's label (category value, `true`/`false`, or `[low, high)`).
    pub label: String,
    /// The noisy count (may be negative: noise is not post-processed away).
    pub count: i64,
}

/// The released statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerValue {
    /// A single number.
    Scalar(f64),
    /// Noisy counts per bin.
    Histogram(Vec<BinCount>),
}

/// How far the released statistic may be from the true one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Accuracy {
    /// The true statistic lies in `[low, high]` with probability at least
    /// `confidence` when `guaranteed`; otherwise the interval is an estimate
    /// (correlation: the components' joint interval evaluated at its corners).
    Interval {
        /// Confidence level.
        confidence: f64,
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
        /// Whether the coverage is proven (union bound over components).
        guaranteed: bool,
    },
    /// Every bin's true count is within `half_width` of its noisy count,
    /// simultaneously for all bins, with probability at least `confidence`.
    PerBin {
        /// Confidence level.
        confidence: f64,
        /// Half-width of each bin's interval.
        half_width: f64,
    },
    /// The released candidate's quantile score (rank imbalance: how many
    /// summaries it is off from the target rank) exceeds the best
    /// candidate's by at most `within`, with probability at least
    /// `confidence`. Add the candidate spacing for the value's error.
    Rank {
        /// Confidence level.
        confidence: f64,
        /// Rank error bound.
        within: f64,
    },
}

/// One released component, as reported to the analyst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentAnswer {
    /// What it released.
    pub name: String,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The noise scale.
    pub scale: f64,
    /// OpenDP's sensitivity for the stable transformation, where defined.
    pub sensitivity: Option<f64>,
    /// The cost OpenDP reported.
    pub cost: PrivacyCost,
    /// The noisy value (scalar components; histograms are in the answer).
    pub noisy_value: Option<f64>,
    /// Half-width of its interval at the per-component confidence used for
    /// the union bound (`1 − (1 − CONFIDENCE)/components`).
    pub half_width: Option<f64>,
}

/// A differentially private answer. Everything in it is a noisy release or
/// public: no exact count over the summaries appears anywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The schema's name.
    pub schema: String,
    /// The query answered.
    pub query: Query,
    /// The released statistic.
    pub value: AnswerValue,
    /// Its accuracy.
    pub accuracy: Accuracy,
    /// The total privacy cost debited.
    pub cost: PrivacyCost,
    /// The individual releases.
    pub components: Vec<ComponentAnswer>,
}

pub(crate) fn total_cost(components: &[Component], noise: NoiseKind) -> Result<PrivacyCost, DpError> {
    let mut total = 0.0f64;
    for c in components {
        let x = match c.cost {
            PrivacyCost::Epsilon(x) | PrivacyCost::Rho(x) => x,
        };
        total = total.inf_add(&x)?;
    }
    Ok(match noise {
        NoiseKind::Laplace => PrivacyCost::Epsilon(total),
        NoiseKind::Gaussian => PrivacyCost::Rho(total),
    })
}

fn matches(row: &Summary, preds: &[Pred], required: &[usize]) -> bool {
    required.iter().all(|i| row.value(*i).is_some())
        && preds.iter().all(|p| match p {
            Pred::Bool(i, want) => row.value(*i) == Some(&FieldValue::Bool(*want)),
            Pred::Category(i, allowed) => {
                matches!(row.value(*i), Some(FieldValue::Category(c)) if allowed.contains(c))
            }
            Pred::Range(i, lo, hi) => {
                row.value(*i).and_then(FieldValue::as_f64).is_some_and(|x| *lo <= x && x <= *hi)
            }
        })
}

fn num(row: &Summary, i: usize) -> f64 {
    // `matches` has checked the field is present; integer and float fields
    // are the only ones a numeric component reads.
    row.value(i).and_then(FieldValue::as_f64).unwrap_or(0.0)
}

fn map_row(row: &Summary, map: RowMap) -> f64 {
    match map {
        RowMap::X(i) => num(row, i),
        RowMap::Square(i, (lo, hi)) => num(row, i).clamp(lo, hi).powi(2),
        RowMap::Product(i, (a, b), j, (c, d)) => num(row, i).clamp(a, b) * num(row, j).clamp(c, d),
    }
}

fn bin_of(row: &Summary, field: usize, binning: &Binning) -> usize {
    match (binning, row.value(field)) {
        (Binning::Bool, Some(FieldValue::Bool(b))) => usize::from(*b),
        (Binning::Category(values), Some(FieldValue::Category(c))) => {
            values.iter().position(|v| v == c).unwrap_or(0)
        }
        (Binning::Edges { edges, bounds }, Some(v)) => {
            let x = v.as_f64().unwrap_or(bounds.0).clamp(bounds.0, bounds.1);
            // Bin k holds [edges[k], edges[k+1]); the outer bins are open-ended.
            let above = edges[1..edges.len() - 1].partition_point(|e| *e <= x);
            above.min(edges.len() - 2)
        }
        _ => 0,
    }
}

/// Answers `plan` over `rows` and debits `ledger` — or changes nothing.
///
/// Checks first that the ledger can pay for the plan's cost; then builds the
/// OpenDP measurements (not `Send`: call this inside `spawn_blocking`),
/// releases each component, post-processes, and finally debits the ledger.
/// If anything fails, the ledger is untouched and no answer leaves. The
/// caller must store the updated ledger durably before returning the answer.
pub fn answer(plan: &Plan, rows: &[Summary], ledger: &mut Ledger) -> Result<Answer, DpError> {
    if ledger.schema() != plan.schema() {
        return Err(DpError::SchemaMismatch {
            expected: plan.schema().into(),
            found: ledger.schema().into(),
        });
    }
    if rows.len() > MAX_ROWS {
        return Err(DpError::TooManyRows { limit: MAX_ROWS, actual: rows.len() });
    }
    if let Some(other) = rows.iter().find(|r| r.schema() != plan.schema()) {
        return Err(DpError::SchemaMismatch { expected: plan.schema().into(), found: other.schema().into() });
    }
    ledger.check(plan.cost())?;

    let selected: Vec<&Summary> = rows.iter().filter(|r| matches(r, &plan.preds, &plan.required)).collect();
    let k = plan.components().len();
    #[expect(clippy::cast_precision_loss, reason = "at most six components")]
    let alpha = (1.0 - CONFIDENCE) / k as f64;
    let noise = plan.noise;

    let mut values = Vec::with_capacity(k);
    let mut widths = Vec::with_capacity(k);
    let mut reports = Vec::with_capacity(k);
    let mut histogram = None;
    let mut quantile = None;
    for c in plan.components() {
        let (noisy, width) = match &c.source {
            Source::Count => {
                let (_, r) = mechanism::count(noise, c.scale, Some(selected.len()))?;
                let v = r.map_or(0, |r| r.value);
                #[expect(clippy::cast_precision_loss, reason = "noisy counts are far below 2^53")]
                (Some(v as f64), Some(mechanism::noise_accuracy(noise, true, c.scale, alpha)?))
            }
            Source::Sum { map, bounds } => {
                let data: Vec<f64> = selected.iter().map(|r| map_row(r, *map)).collect();
                let (_, r) = mechanism::sum(noise, *bounds, c.scale, Some(&data))?;
                (r.map(|r| r.value), Some(mechanism::noise_accuracy(noise, false, c.scale, alpha)?))
            }
            Source::Histogram { field, binning } => {
                let labels = binning.labels();
                let data: Vec<usize> = selected.iter().map(|r| bin_of(r, *field, binning)).collect();
                let (_, _, r) = mechanism::histogram(noise, labels.len(), c.scale, Some(&data))?;
                let counts = r.map(|r| r.value).unwrap_or_default();
                #[expect(clippy::cast_precision_loss, reason = "at most MAX_BINS bins")]
                let w = mechanism::noise_accuracy(noise, true, c.scale, alpha / labels.len() as f64)?;
                histogram = Some((
                    labels
                        .into_iter()
                        .zip(counts)
                        .map(|(label, count)| BinCount { label, count })
                        .collect::<Vec<_>>(),
                    w,
                ));
                (None, None)
            }
            Source::Quantile { field, bounds, alpha: q, candidates } => {
                let data: Vec<f64> = selected.iter().map(|r| num(r, *field)).collect();
                let (_, r) = mechanism::quantile(noise, *bounds, candidates, *q, c.scale, Some(&data))?;
                #[expect(clippy::cast_precision_loss, reason = "at most MAX_CANDIDATES")]
                let within = c.scale * (candidates.len() as f64 / alpha).ln();
                quantile = Some(within);
                (r.map(|r| r.value), None)
            }
        };
        values.push(noisy.unwrap_or(0.0));
        widths.push(width.unwrap_or(0.0));
        reports.push(ComponentAnswer {
            name: c.name.to_owned(),
            mechanism: c.mechanism,
            scale: c.scale,
            sensitivity: c.sensitivity,
            cost: c.cost,
            noisy_value: noisy,
            half_width: width,
        });
    }

    let interval = |low: f64, high: f64, guaranteed| Accuracy::Interval {
        confidence: CONFIDENCE,
        low,
        high,
        guaranteed,
    };
    let bounds = plan.bounds.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let (value, accuracy) = match plan.shape {
        Shape::Count | Shape::Sum => {
            (AnswerValue::Scalar(values[0]), interval(values[0] - widths[0], values[0] + widths[0], true))
        }
        Shape::Mean => {
            let (v, lo, hi) = mean(values[0], widths[0], values[1], widths[1], bounds);
            (AnswerValue::Scalar(v), interval(lo, hi, true))
        }
        Shape::Variance { std } => {
            let (v, lo, hi) = variance(&values, &widths, bounds);
            if std {
                (AnswerValue::Scalar(v.sqrt()), interval(lo.sqrt(), hi.sqrt(), true))
            } else {
                (AnswerValue::Scalar(v), interval(lo, hi, true))
            }
        }
        Shape::Correlation => {
            let (v, lo, hi) = correlation(&values, &widths);
            (AnswerValue::Scalar(v), interval(lo, hi, false))
        }
        Shape::Histogram => {
            let (bins, w) = histogram.unwrap_or_default();
            (AnswerValue::Histogram(bins), Accuracy::PerBin { confidence: CONFIDENCE, half_width: w })
        }
        Shape::Quantile => (
            AnswerValue::Scalar(values[0]),
            Accuracy::Rank { confidence: CONFIDENCE, within: quantile.unwrap_or(f64::INFINITY) },
        ),
    };

    ledger.debit(plan.cost())?;
    Ok(Answer {
        schema: plan.schema().to_owned(),
        query: plan.query().clone(),
        value,
        accuracy,
        cost: plan.cost(),
        components: reports,
    })
}

/// Mean from noisy count `n` and sum `s` with half-widths; returns the
/// estimate and an interval guaranteed to cover the true mean whenever both
/// components are within their half-widths (S/N is monotone in each).
pub(crate) fn mean(n: f64, wn: f64, s: f64, ws: f64, (lo, hi): (f64, f64)) -> (f64, f64, f64) {
    let estimate = if n >= 1.0 { (s / n).clamp(lo, hi) } else { lo + (hi - lo) / 2.0 };
    let (n_lo, n_hi) = ((n - wn).max(1.0), n + wn);
    if n_hi < 1.0 {
        return (estimate, lo, hi);
    }
    let corners = [(s - ws) / n_lo, (s - ws) / n_hi, (s + ws) / n_lo, (s + ws) / n_hi];
    let low = corners.iter().copied().fold(f64::INFINITY, f64::min).clamp(lo, hi);
    let high = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max).clamp(lo, hi);
    (estimate, low, high)
}

/// Population variance from noisy (count, sum, sum of squares): estimate
/// and an exact bound of Q/N − (S/N)² over the components' box.
pub(crate) fn variance(v: &[f64], w: &[f64], (lo, hi): (f64, f64)) -> (f64, f64, f64) {
    let max_var = (hi - lo).powi(2) / 4.0;
    let (n, s, q) = (v[0], v[1], v[2]);
    let estimate = if n >= 1.0 { (q / n - (s / n).powi(2)).clamp(0.0, max_var) } else { max_var / 2.0 };
    let (n_lo, n_hi) = ((n - w[0]).max(1.0), n + w[0]);
    if n_hi < 1.0 {
        return (estimate, 0.0, max_var);
    }
    let (s_lo, s_hi) = (s - w[1], s + w[1]);
    let (q_lo, q_hi) = (q - w[2], q + w[2]);
    let s2_min = if s_lo <= 0.0 && 0.0 <= s_hi { 0.0 } else { (s_lo * s_lo).min(s_hi * s_hi) };
    let s2_max = (s_lo * s_lo).max(s_hi * s_hi);
    // With u = 1/N, the variance is q·u − s²·u²: concave in u.
    let (u_min, u_max) = (1.0 / n_hi, 1.0 / n_lo);
    let g = |q: f64, s2: f64, u: f64| q * u - s2 * u * u;
    let mut high = g(q_hi, s2_min, u_min).max(g(q_hi, s2_min, u_max));
    if s2_min > 0.0 {
        let vertex = (q_hi / (2.0 * s2_min)).clamp(u_min, u_max);
        high = high.max(g(q_hi, s2_min, vertex));
    }
    let low = g(q_lo, s2_max, u_min).min(g(q_lo, s2_max, u_max));
    (estimate, low.clamp(0.0, max_var), high.clamp(0.0, max_var))
}

pub(crate) fn pearson(n: f64, sx: f64, sy: f64, sxx: f64, syy: f64, sxy: f64) -> Option<f64> {
    let vx = n * sxx - sx * sx;
    let vy = n * syy - sy * sy;
    if n < 1.0 || vx <= 0.0 || vy <= 0.0 {
        return None;
    }
    Some(((n * sxy - sx * sy) / (vx * vy).sqrt()).clamp(-1.0, 1.0))
}

/// Correlation from the six noisy sums; the interval is the range over the
/// corners of the components' box (an estimate, not a proven bound).
fn correlation(v: &[f64], w: &[f64]) -> (f64, f64, f64) {
    let estimate = pearson(v[0], v[1], v[2], v[3], v[4], v[5]).unwrap_or(0.0);
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for mask in 0u32..64 {
        let c: Vec<f64> =
            (0..6).map(|i| if mask >> i & 1 == 1 { v[i] + w[i] } else { v[i] - w[i] }).collect();
        match pearson(c[0], c[1], c[2], c[3], c[4], c[5]) {
            Some(r) => {
                low = low.min(r);
                high = high.max(r);
            }
            None => return (estimate, -1.0, 1.0),
        }
    }
    (estimate, low.min(estimate), high.max(estimate))
}
