//! Post-processing of released study sums into the statistics an analyst
//! reads: counts, means, standard deviations, correlations, histograms and
//! quantiles, each with an accuracy interval. Post-processing spends no
//! budget: everything here is a function of the noisy release and the
//! public definition.
//!
//! Every interval is *guaranteed* at the requested confidence: the noise of
//! each component sum (two independent draws per coordinate and batch, one
//! per aggregator) is bounded by a union bound at that component's share of
//! `1 − confidence`, the statistic's range over that box is computed exactly
//! (means and variances are monotone or concave in the components), and the
//! quantization of values (step `half / H`) is added: a mean or a standard
//! deviation moves by at most half a step, a correlation by at most the
//! angle `asin(step / (2·sd))` per field. Intervals cover the statistics of
//! the values clamped into the schema's public bounds.

use serde::{Deserialize, Serialize};

use crate::answer::{mean, pearson, variance};
use crate::error::DpError;
use crate::study::encoding::{Binning, Group, Hist, Numeric, StudyEncoding};
use crate::study::error::StudyError;
use crate::study::noise::StudyNoise;

/// Quantiles reported for numeric histograms unless the analyst asks for others.
pub const DEFAULT_QUANTILES: [f64; 3] = [0.25, 0.5, 0.75];

/// The noisy sums of one or more released batches of a study, added up
/// (post-processing: summing releases of disjoint batches costs nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasedSums {
    /// How many batch releases were summed (each coordinate carries two
    /// noise draws per release).
    pub releases: u32,
    /// The sums per group (`bits`, `values`, `squares`).
    pub sums: [Vec<i64>; 3],
}

impl ReleasedSums {
    /// Adds another release of the same study.
    pub fn add(&mut self, other: &ReleasedSums) -> Result<(), StudyError> {
        for g in 0..3 {
            if self.sums[g].len() != other.sums[g].len() {
                return Err(StudyError::Release("releases of different layouts"));
            }
            for (a, b) in self.sums[g].iter_mut().zip(&other.sums[g]) {
                *a = a.checked_add(*b).ok_or(StudyError::Release("sum overflow"))?;
            }
        }
        self.releases =
            self.releases.checked_add(other.releases).ok_or(StudyError::Release("too many releases"))?;
        Ok(())
    }
}

/// An estimate and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The estimate.
    pub value: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies in `[low, high]`.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Count, mean and standard deviation of one numeric field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    /// The field.
    pub field: String,
    /// How many had a value.
    pub count: Interval,
    /// Mean of the values (clamped into the public bounds).
    pub mean: Interval,
    /// Population standard deviation.
    pub std_dev: Interval,
    /// The quantization step of the field's values.
    pub step: f64,
}

/// Pearson correlation of two numeric fields, over those having both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationStats {
    /// First field.
    pub x: String,
    /// Second field.
    pub y: String,
    /// How many had both.
    pub count: Interval,
    /// The correlation.
    pub r: Interval,
}

/// One histogram bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinStats {
    /// The bin's label.
    pub label: String,
    /// The noisy count (may be negative).
    pub count: f64,
}

/// A quantile read off a numeric histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileStats {
    /// Which quantile.
    pub alpha: f64,
    /// The estimate (interpolated inside its bin).
    pub value: f64,
    /// The true quantile lies in `[low, high]` (bin edges) at the confidence.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// A histogram: every bin's true count is within `half_width` of its noisy
/// count, simultaneously, at the confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramStats {
    /// The field.
    pub field: String,
    /// The bins.
    pub bins: Vec<BinStats>,
    /// Simultaneous half-width of every bin.
    pub half_width: f64,
    /// Quantiles (numeric fields only).
    pub quantiles: Vec<QuantileStats>,
}

/// The statistics of one stratum (or of everyone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StratumStats {
    /// The stratum's label (`all` for everyone).
    pub label: String,
    /// How many reports.
    pub count: Interval,
    /// Per numeric field.
    pub fields: Vec<FieldStats>,
    /// Per correlation pair.
    pub correlations: Vec<CorrelationStats>,
    /// Per histogram.
    pub histograms: Vec<HistogramStats>,
}

/// What an analyst reads from a study's releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyResults {
    /// The study.
    pub study: String,
    /// Confidence of every interval (each on its own, not jointly).
    pub confidence: f64,
    /// Batch releases summed.
    pub releases: u32,
    /// Everyone.
    pub overall: StratumStats,
    /// Per stratum (empty without a stratum field).
    pub strata: Vec<StratumStats>,
}

struct Ctx<'a> {
    e: &'a StudyEncoding,
    noise: &'a StudyNoise,
    sums: &'a ReleasedSums,
    blocks: Vec<usize>,
}

impl Ctx<'_> {
    /// Σ over the scope's blocks of Σ sign·coordinate, and its half-width at `alpha`.
    fn component(
        &self,
        group: Group,
        coords: impl Fn(usize) -> Vec<(usize, f64)>,
        alpha: f64,
    ) -> Result<(f64, f64), DpError> {
        let v = &self.sums.sums[group.index()];
        let mut total = 0.0;
        let mut terms = 0usize;
        for &b in &self.blocks {
            for (i, sign) in coords(b) {
                let x = v.get(i).ok_or(StudyError::Release("coordinate out of range"))?;
                #[expect(clippy::cast_precision_loss, reason = "noisy sums far below 2^53")]
                let x = *x as f64;
                total += sign * x;
                terms += 1;
            }
        }
        let draws = terms * 2 * usize::try_from(self.sums.releases).unwrap_or(usize::MAX);
        Ok((total, self.noise.half_width(group, draws, alpha)?))
    }

    fn count(&self, alpha: f64) -> Result<Interval, DpError> {
        let (n, w) = self.component(Group::Bits, |b| vec![(self.e.count_at(b), 1.0)], alpha)?;
        Ok(Interval { value: n, low: (n - w).max(0.0), high: (n + w).max(0.0) })
    }

    fn field(&self, f: usize, n: &Numeric, alpha: f64) -> Result<FieldStats, DpError> {
        let a = alpha / 3.0;
        let e = self.e;
        let (cnt, wn) = self.component(Group::Bits, |b| vec![(e.presence_at(b, f), 1.0)], a)?;
        let (s, ws) = self.component(
            Group::Values,
            |b| {
                let (p, q) = e.value_at(b, f);
                vec![(p, 1.0), (q, -1.0)]
            },
            a,
        )?;
        let (q, wq) = self.component(Group::Squares, |b| vec![(e.square_at(b, f), 1.0)], a)?;
        #[expect(clippy::cast_precision_loss, reason = "H ≤ 2^11")]
        let h = e.half as f64;
        let step = n.step(e.half);
        let (m, m_lo, m_hi) = mean(cnt, wn, s, ws, (-h, h));
        let to_x = |v: f64| n.mid() + v * step;
        let mean = Interval {
            value: to_x(m).clamp(n.lo, n.hi),
            low: (to_x(m_lo) - step / 2.0).clamp(n.lo, n.hi),
            high: (to_x(m_hi) + step / 2.0).clamp(n.lo, n.hi),
        };
        let (var, v_lo, v_hi) = variance(&[cnt, s, q], &[wn, ws, wq], (-h, h));
        let max_sd = (n.hi - n.lo) / 2.0;
        let std_dev = Interval {
            value: (var.sqrt() * step).min(max_sd),
            low: (v_lo.sqrt() * step - step / 2.0).clamp(0.0, max_sd),
            high: (v_hi.sqrt() * step + step / 2.0).clamp(0.0, max_sd),
        };
        let count = Interval { value: cnt, low: (cnt - wn).max(0.0), high: (cnt + wn).max(0.0) };
        Ok(FieldStats { field: n.name.clone(), count, mean, std_dev, step })
    }

    fn correlation(
        &self,
        p: usize,
        x: &Numeric,
        y: &Numeric,
        alpha: f64,
    ) -> Result<CorrelationStats, DpError> {
        let a = alpha / 6.0;
        let e = self.e;
        let (n, wn) = self.component(Group::Bits, |b| vec![(e.pair_presence_at(b, p), 1.0)], a)?;
        let pv = |b| e.pair_values_at(b, p);
        let ps = |b| e.pair_squares_at(b, p);
        let (sx, wsx) = self.component(
            Group::Values,
            |b| {
                let c = pv(b);
                vec![(c[0], 1.0), (c[1], -1.0)]
            },
            a,
        )?;
        let (sy, wsy) = self.component(
            Group::Values,
            |b| {
                let c = pv(b);
                vec![(c[2], 1.0), (c[3], -1.0)]
            },
            a,
        )?;
        let (qx, wqx) = self.component(Group::Squares, |b| vec![(ps(b)[0], 1.0)], a)?;
        let (qy, wqy) = self.component(Group::Squares, |b| vec![(ps(b)[1], 1.0)], a)?;
        let (c, wc) = self.component(
            Group::Squares,
            |b| {
                let c = ps(b);
                vec![(c[2], 1.0), (c[3], -1.0)]
            },
            a,
        )?;
        let count = Interval { value: n, low: (n - wn).max(0.0), high: (n + wn).max(0.0) };
        let estimate = pearson(n, sx, sy, qx, qy, c).unwrap_or(0.0);
        let unknown = CorrelationStats {
            x: x.name.clone(),
            y: y.name.clone(),
            count,
            r: Interval { value: estimate, low: -1.0, high: 1.0 },
        };
        #[expect(clippy::cast_precision_loss, reason = "H ≤ 2^11")]
        let h = e.half as f64;
        let (_, vx_lo, vx_hi) = variance(&[n, sx, qx], &[wn, wsx, wqx], (-h, h));
        let (_, vy_lo, vy_hi) = variance(&[n, sy, qy], &[wn, wsy, wqy], (-h, h));
        let (n_lo, n_hi) = ((n - wn).max(1.0), n + wn);
        if n_hi < 1.0 || vx_lo <= 0.0 || vy_lo <= 0.0 {
            return Ok(unknown);
        }
        let (c_lo, c_hi) =
            covariance_bounds((n_lo, n_hi), (sx - wsx, sx + wsx), (sy - wsy, sy + wsy), (c - wc, c + wc));
        let r_hi = if c_hi >= 0.0 { c_hi / (vx_lo * vy_lo).sqrt() } else { c_hi / (vx_hi * vy_hi).sqrt() };
        let r_lo = if c_lo >= 0.0 { c_lo / (vx_hi * vy_hi).sqrt() } else { c_lo / (vx_lo * vy_lo).sqrt() };
        let (r_lo, r_hi) = (r_lo.clamp(-1.0, 1.0), r_hi.clamp(-1.0, 1.0));
        // Quantization: each field's centred vector moves by at most half a
        // step per value, i.e. by an angle of at most asin(0.5 / sd) (sd in
        // quantization units, at its lower bound).
        let theta = |v_lo: f64| (0.5 / v_lo.sqrt()).min(1.0).asin();
        let spread = theta(vx_lo) + theta(vy_lo);
        let (a_lo, a_hi) = (r_hi.acos(), r_lo.acos());
        let low = (a_hi + spread).min(std::f64::consts::PI).cos();
        let high = (a_lo - spread).max(0.0).cos();
        Ok(CorrelationStats { r: Interval { value: estimate.clamp(low, high), low, high }, ..unknown })
    }

    fn histogram(
        &self,
        h: usize,
        hist: &Hist,
        alpha: f64,
        quantiles: &[f64],
    ) -> Result<HistogramStats, DpError> {
        let k = hist.bins();
        let e = self.e;
        #[expect(clippy::cast_precision_loss, reason = "at most 64 bins")]
        let per_bin = alpha / k as f64;
        let mut counts = Vec::with_capacity(k);
        let mut w = 0.0;
        for bin in 0..k {
            let (c, wb) = self.component(Group::Bits, |b| vec![(e.bins_at(b, h) + bin, 1.0)], per_bin)?;
            counts.push(c);
            w = wb;
        }
        let bins =
            hist.labels.iter().zip(&counts).map(|(l, c)| BinStats { label: l.clone(), count: *c }).collect();
        let quantiles = match &hist.binning {
            Binning::Edges(edges) => quantiles.iter().map(|q| quantile(edges, &counts, w, *q)).collect(),
            _ => Vec::new(),
        };
        Ok(HistogramStats { field: hist.name.clone(), bins, half_width: w, quantiles })
    }

    fn stratum(&self, label: &str, alpha: f64, quantiles: &[f64]) -> Result<StratumStats, DpError> {
        let e = self.e;
        Ok(StratumStats {
            label: label.to_owned(),
            count: self.count(alpha)?,
            fields: e
                .numeric
                .iter()
                .enumerate()
                .map(|(f, n)| self.field(f, n, alpha))
                .collect::<Result<_, _>>()?,
            correlations: e
                .pairs
                .iter()
                .enumerate()
                .map(|(p, (x, y))| self.correlation(p, x, y, alpha))
                .collect::<Result<_, _>>()?,
            histograms: e
                .hists
                .iter()
                .enumerate()
                .map(|(h, hist)| self.histogram(h, hist, alpha, quantiles))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Exact range of `C/n − Sx·Sy/n²` over the box (u = 1/n: a quadratic in u).
fn covariance_bounds(n: (f64, f64), sx: (f64, f64), sy: (f64, f64), c: (f64, f64)) -> (f64, f64) {
    let products = [sx.0 * sy.0, sx.0 * sy.1, sx.1 * sy.0, sx.1 * sy.1];
    let p_lo = products.iter().copied().fold(f64::INFINITY, f64::min);
    let p_hi = products.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (u_lo, u_hi) = (1.0 / n.1, 1.0 / n.0);
    let extremes = |a: f64, b: f64| {
        // g(u) = a·u − b·u² on [u_lo, u_hi].
        let g = |u: f64| a * u - b * u * u;
        let mut vals = vec![g(u_lo), g(u_hi)];
        if b != 0.0 {
            let v = a / (2.0 * b);
            if u_lo < v && v < u_hi {
                vals.push(g(v));
            }
        }
        vals
    };
    let high = extremes(c.1, p_lo).into_iter().fold(f64::NEG_INFINITY, f64::max);
    let low = extremes(c.0, p_hi).into_iter().fold(f64::INFINITY, f64::min);
    (low, high)
}

/// The `q`-quantile from noisy bin counts whose true values are within `w`
/// each (simultaneously); the interval is made of bin edges.
fn quantile(edges: &[f64], counts: &[f64], w: f64, q: f64) -> QuantileStats {
    let k = counts.len();
    let lower: Vec<f64> = counts.iter().map(|c| (c - w).max(0.0)).collect();
    let upper: Vec<f64> = counts.iter().map(|c| (c + w).max(0.0)).collect();
    let point: Vec<f64> = counts.iter().map(|c| c.max(0.0)).collect();
    let cum = |v: &[f64]| {
        v.iter()
            .scan(0.0, |s, x| {
                *s += x;
                Some(*s)
            })
            .collect::<Vec<f64>>()
    };
    let (cl, cu, cp) = (cum(&lower), cum(&upper), cum(&point));
    let (total_lo, total_hi, total) = (cl[k - 1], cu[k - 1], cp[k - 1]);
    // The true quantile's bin j* is the first with T_j ≥ q·T. Since
    // T_j ≤ U_j and T ≥ L: bins with U_j < q·L come before it; and the first
    // bin with L_j ≥ q·U is at or after it.
    let j_lo = (0..k).find(|j| cu[*j] >= q * total_lo).unwrap_or(k - 1);
    let j_hi = (0..k).find(|j| cl[*j] >= q * total_hi).unwrap_or(k - 1).max(j_lo);
    let j = (0..k).find(|j| cp[*j] >= q * total && total > 0.0).unwrap_or(k - 1);
    let before = if j == 0 { 0.0 } else { cp[j - 1] };
    let inside = if point[j] > 0.0 { ((q * total - before) / point[j]).clamp(0.0, 1.0) } else { 0.5 };
    let value = edges[j] + inside * (edges[j + 1] - edges[j]);
    QuantileStats { alpha: q, value, low: edges[j_lo], high: edges[j_hi + 1] }
}

/// Computes every statistic of the study from released sums, each interval
/// at `confidence` (in (0, 1)); `quantiles` for numeric histograms (in
/// [0, 1]; default [`DEFAULT_QUANTILES`]).
pub fn analyze(
    encoding: &StudyEncoding,
    noise: &StudyNoise,
    sums: &ReleasedSums,
    confidence: f64,
    quantiles: &[f64],
) -> Result<StudyResults, DpError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(DpError::InvalidParameter { name: "confidence", reason: "must be in (0, 1)" });
    }
    if quantiles.iter().any(|q| !(0.0..=1.0).contains(q)) || quantiles.len() > 32 {
        return Err(DpError::InvalidParameter { name: "quantiles", reason: "at most 32, each in [0, 1]" });
    }
    for g in Group::ALL {
        if sums.sums[g.index()].len() != encoding.group_len(g) {
            return Err(StudyError::Release("the sums do not have the study's layout").into());
        }
    }
    if sums.releases == 0 {
        return Err(StudyError::Release("no release").into());
    }
    let alpha = 1.0 - confidence;
    let all = Ctx { e: encoding, noise, sums, blocks: (0..encoding.blocks()).collect() };
    let overall = all.stratum("all", alpha, quantiles)?;
    let strata = if encoding.strata.field.is_some() {
        encoding
            .block_labels()
            .iter()
            .enumerate()
            .map(|(b, label)| {
                Ctx { e: encoding, noise, sums, blocks: vec![b] }.stratum(label, alpha, quantiles)
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(StudyResults {
        study: encoding.definition().name().to_owned(),
        confidence,
        releases: sums.releases,
        overall,
        strata,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::study::encoding::tests::{encoding, summary};
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    #[test]
    fn covariance_bounds_contain_every_corner() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let mut iv = || {
                let a: f64 = rng.gen_range(-50.0..50.0);
                let w: f64 = rng.gen_range(0.0..10.0);
                (a - w, a + w)
            };
            let (sx, sy, c) = (iv(), iv(), iv());
            let n = (rng.gen_range(1.0..5.0), rng.gen_range(5.0..9.0));
            let (lo, hi) = covariance_bounds(n, sx, sy, c);
            for _ in 0..50 {
                let pick = |r: &mut rand_chacha::ChaCha8Rng, (a, b): (f64, f64)| r.gen_range(a..=b);
                let (nn, x, y, cc) =
                    (pick(&mut rng, n), pick(&mut rng, sx), pick(&mut rng, sy), pick(&mut rng, c));
                let cov = cc / nn - x * y / (nn * nn);
                assert!(lo - 1e-9 <= cov && cov <= hi + 1e-9, "{cov} not in [{lo}, {hi}]");
            }
        }
    }

    /// Exact sums (no noise) give the true statistics of the quantized data,
    /// inside intervals that are then only as wide as quantization plus the
    /// (tiny, at ε = 1 and 3,000 patients) noise bound.
    #[test]
    fn exact_sums_give_the_clear_statistics_within_their_intervals() {
        let e = encoding();
        let noise = StudyNoise::plan(&e).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut sums: [Vec<i64>; 3] = Group::ALL.map(|g| vec![0i64; e.group_len(g)]);
        let (mut bp, mut bmi) = (Vec::new(), Vec::new());
        for _ in 0..3000 {
            let x: f64 = rng.gen_range(90.0..200.0);
            let y: f64 = 10.0 + 0.2 * x + rng.gen_range(-6.0..6.0);
            bp.push(x);
            bmi.push(y);
            let diabetic: bool = rng.gen_bool(0.3);
            let m = e
                .encode(&summary(json!({"systolic_bp": x, "bmi": y, "diabetes": diabetic, "sex": "female"})))
                .unwrap();
            for g in Group::ALL {
                for (s, v) in sums[g.index()].iter_mut().zip(&m.groups[g.index()]) {
                    *s += i64::try_from(*v).unwrap();
                }
            }
        }
        let r = analyze(&e, &noise, &ReleasedSums { releases: 1, sums }, 0.95, &DEFAULT_QUANTILES).unwrap();
        #[expect(clippy::cast_precision_loss)]
        let n = bp.len() as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / n).sqrt();
        let corr = bp.iter().zip(&bmi).map(|(a, b)| (a - mean(&bp)) * (b - mean(&bmi))).sum::<f64>()
            / n
            / (sd(&bp) * sd(&bmi));
        let f = &r.overall.fields[0];
        assert_eq!(f.field, "systolic_bp");
        assert!(f.mean.contains(mean(&bp)), "{:?} vs {}", f.mean, mean(&bp));
        assert!((f.mean.value - mean(&bp)).abs() <= f.step / 2.0 + 1e-9);
        assert!(f.std_dev.contains(sd(&bp)), "{:?} vs {}", f.std_dev, sd(&bp));
        let c = &r.overall.correlations[0];
        assert!(c.r.contains(corr), "{:?} vs {corr}", c.r);
        assert!((c.r.value - corr).abs() < 0.01, "{:?} vs {corr}", c.r);
        assert_eq!(r.overall.count.value, n);
        assert_eq!(r.strata.len(), 3);
        assert_eq!(r.strata[2].count.value, 0.0, "nobody in unknown");
        let sexes = &r.overall.histograms[0];
        assert_eq!(sexes.bins[0].count, n, "everyone is female");
        let median = &sexes.quantiles;
        assert!(median.is_empty(), "no quantiles of a category");
        let bph = &r.overall.histograms[1];
        let mut sorted = bp.clone();
        sorted.sort_by(f64::total_cmp);
        let true_median = sorted[1499];
        let q = &bph.quantiles[1];
        assert!(q.low <= true_median && true_median <= q.high, "{q:?} vs {true_median}");
        assert!(
            analyze(&e, &noise, &ReleasedSums { releases: 1, sums: Default::default() }, 0.95, &[]).is_err()
        );
    }
}
