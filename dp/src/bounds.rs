//! Bounds on the work and the noise of a plan, checked by [`crate::plan`]
//! before anything runs.
//!
//! OpenDP's samplers are exact: they draw from rational-arithmetic
//! algorithms whose running time grows with the noise scale, and a release
//! that has started cannot be interrupted. A query with a vanishing privacy
//! parameter (ρ = 1e-300) therefore used to pin a CPU for minutes or forever,
//! and a vanishing ε (1e-20) released a "count" of −9.2·10^18 (the integer
//! noise saturated `i64`). The planner now refuses, with a typed
//! [`PlanRefusal`] and before any budget is touched:
//!
//! - a privacy parameter below its floor ([`MIN_EPSILON`], [`MIN_RHO`];
//!   budgets also refuse δ below [`MIN_DELTA`]). Below these floors a
//!   sensitivity-1 count has noise scale ≥ 10^6 (ε) or ≥ 7·10^5 (ρ): pure
//!   noise for any cohort the server can hold ([`crate::MAX_ROWS`] ≈ 10^6);
//! - any component whose noise scale exceeds [`MAX_NOISE_SCALE`] (a schema
//!   with very wide bounds can need this much even above the floors);
//! - any plan whose estimated sampler work exceeds [`MAX_SAMPLER_COST`].
//!
//! # The sampler cost model
//!
//! Work is counted in *sampler units*. Every noise sample costs one unit
//! (OpenDP's Laplace and exponential-mechanism samplers and its float
//! Gaussian sampler grow only with the logarithm of the scale, which
//! [`MAX_NOISE_SCALE`] bounds). OpenDP's discrete Gaussian sampler (integer
//! counts and histograms under ρ) grows linearly with σ; it costs
//! `1 + σ / 10_000` units per sample ([`DISCRETE_GAUSSIAN_UNIT_SCALE`]). A
//! histogram draws one sample per bin, a quantile one per candidate.
//! Measured on a 2-vCPU EPYC with OpenDP optimised: a discrete Gaussian
//! sample at σ = 7·10^4, 7·10^5 and 7·10^6 takes 0.8, 7 and 52 ms, so one
//! unit is about 0.1 ms and the [`MAX_SAMPLER_COST`] of 10,000 units is
//! about one second of one core. A server still runs answers under a
//! deadline and a concurrency bound (the estimate is not a proof).

use crate::budget::Privacy;
use crate::mechanism::Mechanism;

/// Smallest ε a query may spend (pure DP).
pub const MIN_EPSILON: f64 = 1e-6;
/// Smallest ρ a query may spend (zCDP).
pub const MIN_RHO: f64 = 1e-12;
/// Smallest δ a budget may carry (below it every zCDP charge grows with
/// `sqrt(ln 1/δ)` for no protection a patient could notice).
pub const MIN_DELTA: f64 = 1e-12;
/// Largest noise scale (Laplace b, Gaussian σ or selection scale) of any
/// component. At 10^12 the 95% interval is already ±3·10^12, past any
/// statistic a realistic schema bounds; integer releases stay far from
/// `i64` saturation.
pub const MAX_NOISE_SCALE: f64 = 1e12;
/// Largest estimated sampler work of one plan, in sampler units (about
/// 0.1 ms each; see the module documentation).
pub const MAX_SAMPLER_COST: f64 = 10_000.0;
/// σ at which one discrete Gaussian sample costs one extra sampler unit.
pub const DISCRETE_GAUSSIAN_UNIT_SCALE: f64 = 10_000.0;

/// Why the planner refused a well-formed query: it would need unbounded
/// work or release nothing but noise. Nothing was run and nothing spent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanRefusal {
    /// The privacy parameter is below its floor.
    #[error(
        "{parameter} = {value:e} is below the floor {floor:e}: so little privacy loss buys only noise, \
         and the exact samplers' work grows without bound as it shrinks; ask with {parameter} >= {floor:e}"
    )]
    BelowFloor {
        /// `epsilon`, `rho` or `delta`.
        parameter: &'static str,
        /// The value asked for.
        value: f64,
        /// The floor.
        floor: f64,
    },
    /// A component's noise scale exceeds [`MAX_NOISE_SCALE`].
    #[error(
        "the {component} release would need noise of scale {scale:e}, above the limit {limit:e}: \
         spend more privacy on it, or query a field with narrower bounds"
    )]
    NoiseScale {
        /// The component (`count`, `sum`, …).
        component: &'static str,
        /// Its calibrated scale.
        scale: f64,
        /// The limit.
        limit: f64,
    },
    /// The plan's estimated sampler work exceeds [`MAX_SAMPLER_COST`].
    #[error(
        "answering would take about {cost:.0} sampler units, above the limit {limit:.0} (one unit is about \
         0.1 ms): spend more privacy, or ask for fewer bins or candidates"
    )]
    SamplerCost {
        /// The estimate.
        cost: f64,
        /// The limit.
        limit: f64,
    },
    /// OpenDP could not calibrate a component's noise to the requested
    /// parameter (its message is quoted after this explanation).
    #[error(
        "the noise of the {component} release could not be calibrated to the requested privacy parameter \
         (OpenDP: {detail})"
    )]
    Calibration {
        /// The component.
        component: &'static str,
        /// OpenDP's message (names parameters, never data).
        detail: String,
    },
}

impl PlanRefusal {
    /// A stable code for clients (`privacy_below_floor`,
    /// `noise_scale_too_large`, `sampler_cost_too_large`,
    /// `calibration_failed`).
    pub fn code(&self) -> &'static str {
        match self {
            PlanRefusal::BelowFloor { .. } => "privacy_below_floor",
            PlanRefusal::NoiseScale { .. } => "noise_scale_too_large",
            PlanRefusal::SamplerCost { .. } => "sampler_cost_too_large",
            PlanRefusal::Calibration { .. } => "calibration_failed",
        }
    }
}

/// Refuses a query's privacy parameter below its floor.
pub(crate) fn check_floor(privacy: Privacy) -> Result<(), PlanRefusal> {
    let (parameter, value, floor) = match privacy {
        Privacy::Epsilon(e) => ("epsilon", e.get(), MIN_EPSILON),
        Privacy::Rho(r) => ("rho", r.get(), MIN_RHO),
    };
    if value < floor {
        return Err(PlanRefusal::BelowFloor { parameter, value, floor });
    }
    Ok(())
}

/// Refuses a component whose noise scale exceeds [`MAX_NOISE_SCALE`].
pub(crate) fn check_scale(component: &'static str, scale: f64) -> Result<(), PlanRefusal> {
    if !(scale.is_finite() && scale <= MAX_NOISE_SCALE) {
        return Err(PlanRefusal::NoiseScale { component, scale, limit: MAX_NOISE_SCALE });
    }
    Ok(())
}

/// Sampler units of `samples` draws of `mechanism` at `scale`.
pub(crate) fn sampler_units(mechanism: Mechanism, scale: f64, samples: usize) -> f64 {
    let per_sample = match mechanism {
        Mechanism::DiscreteGaussian => 1.0 + scale / DISCRETE_GAUSSIAN_UNIT_SCALE,
        Mechanism::DiscreteLaplace
        | Mechanism::Laplace
        | Mechanism::Gaussian
        | Mechanism::ExponentialMechanism => 1.0,
    };
    #[expect(clippy::cast_precision_loss, reason = "at most a few thousand samples")]
    let n = samples as f64;
    per_sample * n
}

/// Refuses a plan whose estimated work exceeds [`MAX_SAMPLER_COST`].
pub(crate) fn check_cost(cost: f64) -> Result<(), PlanRefusal> {
    if !(cost.is_finite() && cost <= MAX_SAMPLER_COST) {
        return Err(PlanRefusal::SamplerCost { cost, limit: MAX_SAMPLER_COST });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::budget::{Epsilon, Rho};

    #[test]
    fn floors_scales_and_costs_have_sharp_edges() {
        assert!(check_floor(Privacy::Epsilon(Epsilon::new(MIN_EPSILON).unwrap())).is_ok());
        let e = check_floor(Privacy::Epsilon(Epsilon::new(MIN_EPSILON / 2.0).unwrap())).unwrap_err();
        assert_eq!(e.code(), "privacy_below_floor");
        assert!(e.to_string().contains("epsilon = 5e-7 is below the floor 1e-6"), "{e}");
        assert!(check_floor(Privacy::Rho(Rho::new(MIN_RHO).unwrap())).is_ok());
        assert!(check_floor(Privacy::Rho(Rho::new(1e-300).unwrap())).is_err());

        assert!(check_scale("count", MAX_NOISE_SCALE).is_ok());
        for bad in [MAX_NOISE_SCALE * 1.01, f64::INFINITY, f64::NAN] {
            assert_eq!(check_scale("count", bad).unwrap_err().code(), "noise_scale_too_large");
        }
        assert!(check_cost(MAX_SAMPLER_COST).is_ok());
        assert_eq!(check_cost(MAX_SAMPLER_COST + 1.0).unwrap_err().code(), "sampler_cost_too_large");

        // A discrete Gaussian sample at σ = 10^4 costs two units; the
        // other samplers one unit per sample whatever the scale.
        assert_eq!(sampler_units(Mechanism::DiscreteGaussian, 1e4, 10), 20.0);
        assert_eq!(sampler_units(Mechanism::DiscreteLaplace, 1e11, 10), 10.0);
        assert_eq!(sampler_units(Mechanism::ExponentialMechanism, 1e6, 4096), 4096.0);
    }
}
