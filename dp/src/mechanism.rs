//! OpenDP measurements: every release and every privacy cost comes from here.
//!
//! Each function builds a fresh OpenDP chain (stable transformation followed
//! by a noise mechanism) for one scale. OpenDP measurements hold `Rc`s and
//! are not `Send`, so they never leave the calling function; a server must
//! run [`crate::answer`] inside `spawn_blocking` (it is CPU-bound anyway).
//!
//! Randomness: OpenDP's samplers are exact (no floating-point leaks, Mironov
//! 2012) and draw from OpenSSL's CSPRNG. That is the one deliberate exception
//! to "the RNG is a parameter" in the pure crates: the exact samplers are
//! only available on OpenDP's own source of randomness.

use opendp::accuracy::{
    discrete_gaussian_scale_to_accuracy, discrete_laplacian_scale_to_accuracy, gaussian_scale_to_accuracy,
    laplacian_scale_to_accuracy,
};
use opendp::combinators::{make_chain_mt, make_chain_tt};
use opendp::core::Transformation;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace, make_private_quantile};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L2Distance, SymmetricDistance};
use opendp::transformations::{make_clamp, make_count, make_count_by_categories, make_sum};
use serde::{Deserialize, Serialize};

use crate::error::DpError;

/// The input distance every cost is evaluated at: neighbouring datasets
/// differ by one patient's summary added or removed (symmetric distance 1).
/// A replaced summary is two such steps, so it is protected at twice the cost.
pub const NEIGHBOUR_DISTANCE: u32 = 1;

/// Which privacy definition and noise family a release uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// Pure ε-DP: (discrete) Laplace noise; exponential noise for selection.
    Laplace,
    /// ρ-zCDP: (discrete) Gaussian noise; Gumbel noise for selection.
    Gaussian,
}

/// The mechanism behind one released number, as reported to the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace noise on an integer count.
    DiscreteLaplace,
    /// Laplace noise on a float (OpenDP samples it exactly on a fine grid).
    Laplace,
    /// Discrete Gaussian noise on an integer count.
    DiscreteGaussian,
    /// Gaussian noise on a float (exact sampling on a fine grid).
    Gaussian,
    /// Exponential mechanism (report-noisy-max over quantile candidates).
    ExponentialMechanism,
}

/// A number released through an OpenDP measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Released<T> {
    pub(crate) value: T,
}

fn f64_domain() -> VectorDomain<AtomDomain<f64>> {
    VectorDomain::new(AtomDomain::new_non_nan())
}

/// The sensitivity OpenDP reports for a bounded sum over `bounds`.
pub(crate) fn sum_sensitivity(bounds: (f64, f64)) -> Result<f64, DpError> {
    Ok(bounded_sum(bounds)?.map(&NEIGHBOUR_DISTANCE)?)
}

type SumTransformation =
    Transformation<VectorDomain<AtomDomain<f64>>, SymmetricDistance, AtomDomain<f64>, AbsoluteDistance<f64>>;

/// A histogram's privacy cost, its sensitivity, and the release if data was given.
type HistogramRelease = (f64, f64, Option<Released<Vec<i64>>>);

fn bounded_sum(bounds: (f64, f64)) -> Result<SumTransformation, DpError> {
    let clamp = make_clamp(f64_domain(), SymmetricDistance, bounds)?;
    let sum = make_sum(clamp.output_domain.clone(), SymmetricDistance)?;
    Ok(make_chain_tt(&sum, &clamp)?)
}

macro_rules! with_noise {
    ($kind:expr, $t:expr, $scale:expr, |$m:ident| $body:expr) => {
        match $kind {
            NoiseKind::Laplace => {
                let noise = make_laplace::<_, _, MaxDivergence>(
                    $t.output_domain.clone(),
                    $t.output_metric.clone(),
                    $scale,
                    None,
                )?;
                let $m = make_chain_mt(&noise, &$t)?;
                $body
            }
            NoiseKind::Gaussian => {
                let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                    $t.output_domain.clone(),
                    $t.output_metric.clone(),
                    $scale,
                    None,
                )?;
                let $m = make_chain_mt(&noise, &$t)?;
                $body
            }
        }
    };
}

/// Cost of a noisy count at `scale`; with `rows`, also the release.
pub(crate) fn count(
    kind: NoiseKind,
    scale: f64,
    rows: Option<usize>,
) -> Result<(f64, Option<Released<i64>>), DpError> {
    let t = make_count::<bool, i64>(VectorDomain::new(AtomDomain::default()), SymmetricDistance)?;
    with_noise!(kind, t, scale, |m| {
        let cost = m.map(&NEIGHBOUR_DISTANCE)?;
        let released = match rows {
            Some(n) => Some(Released { value: m.invoke(&vec![true; n])? }),
            None => None,
        };
        Ok((cost, released))
    })
}

/// Cost of a noisy clamped sum at `scale`; with `data`, also the release.
pub(crate) fn sum(
    kind: NoiseKind,
    bounds: (f64, f64),
    scale: f64,
    data: Option<&Vec<f64>>,
) -> Result<(f64, Option<Released<f64>>), DpError> {
    let t = bounded_sum(bounds)?;
    with_noise!(kind, t, scale, |m| {
        let cost = m.map(&NEIGHBOUR_DISTANCE)?;
        let released = match data {
            Some(d) => Some(Released { value: m.invoke(d)? }),
            None => None,
        };
        Ok((cost, released))
    })
}

/// Cost of a noisy histogram over `bins` categories (indices `0..bins`) at
/// `scale`; with `data` (one bin index per row), also the release. Returns
/// the cost and the L1/L2 sensitivity OpenDP reports.
pub(crate) fn histogram(
    kind: NoiseKind,
    bins: usize,
    scale: f64,
    data: Option<&Vec<usize>>,
) -> Result<HistogramRelease, DpError> {
    let categories: Vec<usize> = (0..bins).collect();
    let domain = VectorDomain::new(AtomDomain::<usize>::default());
    match kind {
        NoiseKind::Laplace => {
            let t = make_count_by_categories::<L1Distance<i64>, usize, i64>(
                domain,
                SymmetricDistance,
                categories,
                false,
            )?;
            let sensitivity = t.map(&NEIGHBOUR_DISTANCE)?;
            let noise = make_laplace::<_, _, MaxDivergence>(
                t.output_domain.clone(),
                t.output_metric.clone(),
                scale,
                None,
            )?;
            let m = make_chain_mt(&noise, &t)?;
            let released = data.map(|d| m.invoke(d)).transpose()?.map(|value| Released { value });
            #[expect(clippy::cast_precision_loss, reason = "sensitivity is a small count")]
            Ok((m.map(&NEIGHBOUR_DISTANCE)?, sensitivity as f64, released))
        }
        NoiseKind::Gaussian => {
            let t = make_count_by_categories::<L2Distance<i64>, usize, i64>(
                domain,
                SymmetricDistance,
                categories,
                false,
            )?;
            let sensitivity = t.map(&NEIGHBOUR_DISTANCE)?;
            let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                t.output_domain.clone(),
                t.output_metric.clone(),
                scale,
                None,
            )?;
            let m = make_chain_mt(&noise, &t)?;
            let released = data.map(|d| m.invoke(d)).transpose()?.map(|value| Released { value });
            #[expect(clippy::cast_precision_loss, reason = "sensitivity is a small count")]
            Ok((m.map(&NEIGHBOUR_DISTANCE)?, sensitivity as f64, released))
        }
    }
}

/// Cost of a private `alpha`-quantile over `candidates` at `scale` (clamped
/// to `bounds` first); with `data`, also the release.
pub(crate) fn quantile(
    kind: NoiseKind,
    bounds: (f64, f64),
    candidates: &[f64],
    alpha: f64,
    scale: f64,
    data: Option<&Vec<f64>>,
) -> Result<(f64, Option<Released<f64>>), DpError> {
    let clamp = make_clamp(f64_domain(), SymmetricDistance, bounds)?;
    macro_rules! go {
        ($measure:expr) => {{
            let q = make_private_quantile(
                clamp.output_domain.clone(),
                SymmetricDistance,
                $measure,
                candidates.to_vec(),
                alpha,
                scale,
            )?;
            let m = make_chain_mt(&q, &clamp)?;
            let released = data.map(|d| m.invoke(d)).transpose()?.map(|value| Released { value });
            Ok((m.map(&NEIGHBOUR_DISTANCE)?, released))
        }};
    }
    match kind {
        NoiseKind::Laplace => go!(MaxDivergence),
        NoiseKind::Gaussian => go!(ZeroConcentratedDivergence),
    }
}

/// Finds the smallest scale (up to a relative 1e-6) whose OpenDP cost is at
/// most `target`. Costs scale like `scale^-exponent` (1 for ε, 2 for ρ); the
/// answer is then confirmed with OpenDP's own map, nudging upward if
/// rounding put it a hair over.
pub(crate) fn calibrate(
    target: f64,
    exponent: i32,
    cost_at: impl Fn(f64) -> Result<f64, DpError>,
) -> Result<(f64, f64), DpError> {
    let c1 = cost_at(1.0)?;
    if !(c1.is_finite() && c1 > 0.0) {
        return Err(DpError::OpenDp(format!("unexpected privacy cost {c1} at scale 1")));
    }
    let mut scale = (c1 / target).powf(1.0 / f64::from(exponent)) * (1.0 + 1e-9);
    let mut step = 1e-9;
    for _ in 0..60 {
        let cost = cost_at(scale)?;
        if cost <= target {
            return Ok((scale, cost));
        }
        step *= 4.0;
        scale *= 1.0 + step;
    }
    Err(DpError::OpenDp("could not calibrate the noise scale to the requested budget".into()))
}

/// Half-width of the (1 − `alpha`) interval of the noise OpenDP adds.
pub(crate) fn noise_accuracy(kind: NoiseKind, integer: bool, scale: f64, alpha: f64) -> Result<f64, DpError> {
    Ok(match (kind, integer) {
        (NoiseKind::Laplace, true) => discrete_laplacian_scale_to_accuracy(scale, alpha)?,
        (NoiseKind::Laplace, false) => laplacian_scale_to_accuracy(scale, alpha)?,
        (NoiseKind::Gaussian, true) => discrete_gaussian_scale_to_accuracy(scale, alpha)?,
        (NoiseKind::Gaussian, false) => gaussian_scale_to_accuracy(scale, alpha)?,
    })
}

/// The mechanism name for a noise kind on integer or float output.
pub(crate) fn mechanism(kind: NoiseKind, integer: bool) -> Mechanism {
    match (kind, integer) {
        (NoiseKind::Laplace, true) => Mechanism::DiscreteLaplace,
        (NoiseKind::Laplace, false) => Mechanism::Laplace,
        (NoiseKind::Gaussian, true) => Mechanism::DiscreteGaussian,
        (NoiseKind::Gaussian, false) => Mechanism::Gaussian,
    }
}
