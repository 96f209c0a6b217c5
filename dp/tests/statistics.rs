#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Statistical checks of the released noise.
//!
//! Each test releases a fixed count many times and checks that the sample
//! variance of the noise matches the variance implied by the scale OpenDP was
//! given. The acceptance band is z = 5 standard errors of the sample
//! variance (estimated from the exact fourth moment), so under the normal
//! approximation each check fails spuriously with probability below 1e-6
//! (α = 1e-6); the mean is checked with the same α.

mod common;

use medrelay_dp::{answer, plan, AnswerValue, Query};
use serde_json::json;

const RELEASES: usize = 4000;
const Z: f64 = 5.0;

/// Second and fourth central moments of a symmetric distribution on the
/// integers with the given unnormalised weights.
fn moments(weight: impl Fn(f64) -> f64) -> (f64, f64) {
    let (mut z, mut m2, mut m4) = (0.0, 0.0, 0.0);
    for k in -2000..=2000 {
        let x = f64::from(k);
        let w = weight(x);
        z += w;
        m2 += w * x * x;
        m4 += w * x.powi(4);
    }
    (m2 / z, m4 / z)
}

fn releases(privacy: serde_json::Value, true_count: usize, releases: usize) -> (Vec<f64>, f64) {
    let s = common::schema();
    let rows = common::population(true_count, 9);
    let query: Query =
        serde_json::from_value(json!({"statistic": {"kind": "count"}, "privacy": privacy})).unwrap();
    let p = plan(&s, &query).unwrap();
    let scale = p.components()[0].scale;
    let out = (0..releases)
        .map(|_| {
            let mut ledger = common::ledger(10.0);
            match answer(&p, &rows, &mut ledger).unwrap().value {
                AnswerValue::Scalar(x) => x - true_count as f64,
                AnswerValue::Histogram(_) => panic!(),
            }
        })
        .collect();
    (out, scale)
}

fn check(noise: &[f64], m2: f64, m4: f64) {
    let n = noise.len() as f64;
    let mean = noise.iter().sum::<f64>() / n;
    let var = noise.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let se_mean = (m2 / n).sqrt();
    let se_var = ((m4 - m2 * m2) / n).sqrt();
    assert!(mean.abs() < Z * se_mean, "noise mean {mean}, band ±{}", Z * se_mean);
    assert!((var - m2).abs() < Z * se_var, "noise variance {var}, expected {m2} ± {}", Z * se_var);
}

#[test]
fn discrete_laplace_count_noise_has_the_stated_scale() {
    let (noise, scale) = releases(json!({"epsilon": 0.5}), 120, RELEASES);
    assert!((scale - 2.0).abs() < 1e-6, "sensitivity 1 at ε = 0.5 gives scale 2, got {scale}");
    let (m2, m4) = moments(|x| (-x.abs() / scale).exp());
    // Discrete Laplace variance 2e^{-1/s}/(1-e^{-1/s})^2 ≈ 7.836 at s = 2.
    assert!((m2 - 7.836).abs() < 0.01, "{m2}");
    check(&noise, m2, m4);
}

#[test]
fn discrete_gaussian_count_noise_has_the_stated_scale() {
    // zCDP accounting converts ρ to ε per answer (a few ms), so fewer releases.
    let (noise, scale) = releases(json!({"rho": 0.02}), 80, RELEASES / 2);
    assert!((scale - 5.0).abs() < 1e-6, "sensitivity 1 at ρ = 0.02 gives σ = 5, got {scale}");
    let (m2, m4) = moments(|x| (-x * x / (2.0 * scale * scale)).exp());
    check(&noise, m2, m4);
}
