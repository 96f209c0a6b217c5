//! The DP noise each aggregator adds to its aggregate share before a batch
//! leaves it.
//!
//! The study's privacy parameter (ε or ρ per batch release) is split evenly
//! over the non-empty measurement groups; each group's noise scale is
//! calibrated by OpenDP to that share at the group's sensitivity (the L1 or
//! L2 norm of one honest patient's measurement: see
//! [`crate::study::StudyEncoding::sensitivity`]). Discrete Laplace noise
//! (pure ε-DP) or discrete Gaussian noise (ρ-zCDP), sampled exactly by
//! OpenDP, is added to every coordinate.
//!
//! **Each** aggregator adds noise calibrated to the **whole** parameter, so
//! the release is (ε or ρ)-DP as long as one of the two is honest: the
//! other's share is then only post-processing. The analyst's release
//! therefore carries two independent draws per coordinate, which the
//! accuracy intervals account for.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use serde::{Deserialize, Serialize};

use crate::budget::{Privacy, PrivacyCost};
use crate::error::DpError;
use crate::mechanism::{calibrate, mechanism, noise_accuracy, Mechanism, NoiseKind};
use crate::study::encoding::{Group, StudyEncoding};

/// The noise of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupNoise {
    /// The group (`bits`, `values`, `squares`).
    pub group: String,
    /// The noise scale OpenDP calibrated.
    pub scale: f64,
    /// The sensitivity it was calibrated at (L1 for Laplace, L2 rounded up
    /// for Gaussian).
    pub sensitivity: u64,
    /// The privacy cost OpenDP reports for this group at that sensitivity.
    pub cost: f64,
}

/// The noise plan of a study (identical on both aggregators and the
/// analyst's machine: it is a function of the definition alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyNoise {
    /// Laplace (ε) or Gaussian (ρ).
    pub kind: NoiseKind,
    /// The mechanism on each integer coordinate.
    pub mechanism: Mechanism,
    /// Per group of [`Group::ALL`]; `None` for an empty group.
    pub groups: [Option<GroupNoise>; 3],
    /// The total cost of one aggregator's noisy share (Σ over groups), per
    /// batch release and per report.
    pub cost: PrivacyCost,
}

fn laplace_cost(scale: f64, l1: i64) -> Result<f64, DpError> {
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )?;
    Ok(m.map(&l1)?)
}

fn gaussian_cost(scale: f64, l2: i64) -> Result<f64, DpError> {
    let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<i64>::default(),
        scale,
        None,
    )?;
    Ok(m.map(&l2)?)
}

fn sensitivity(e: &StudyEncoding, g: Group, kind: NoiseKind) -> Result<i64, DpError> {
    let (l1, l2sq) = e.sensitivity(g);
    let s = match kind {
        NoiseKind::Laplace => l1,
        NoiseKind::Gaussian => {
            // ⌈√(l2²)⌉ without floating-point doubt.
            #[expect(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "estimate, then corrected exactly"
            )]
            let mut r = (l2sq as f64).sqrt() as u128;
            while r * r < l2sq {
                r += 1;
            }
            while r > 0 && (r - 1) * (r - 1) >= l2sq {
                r -= 1;
            }
            r
        }
    };
    i64::try_from(s).map_err(|_| DpError::InvalidParameter { name: "sensitivity", reason: "exceeds 2^63" })
}

impl StudyNoise {
    /// Calibrates every non-empty group's scale to its share of the study's
    /// privacy parameter.
    pub fn plan(encoding: &StudyEncoding) -> Result<Self, DpError> {
        let (kind, total) = match encoding.definition().privacy() {
            Privacy::Epsilon(e) => (NoiseKind::Laplace, e.get()),
            Privacy::Rho(r) => (NoiseKind::Gaussian, r.get()),
        };
        let active: Vec<Group> = Group::ALL.into_iter().filter(|g| encoding.group_len(*g) > 0).collect();
        #[expect(clippy::cast_precision_loss, reason = "at most three groups")]
        let share = total / active.len() as f64;
        let mut groups: [Option<GroupNoise>; 3] = Default::default();
        let mut sum = 0.0;
        for g in active {
            let s = sensitivity(encoding, g, kind)?;
            let (scale, cost) = match kind {
                NoiseKind::Laplace => calibrate(share, 1, |scale| laplace_cost(scale, s))?,
                NoiseKind::Gaussian => calibrate(share, 2, |scale| gaussian_cost(scale, s))?,
            };
            sum += cost;
            groups[g.index()] = Some(GroupNoise {
                group: g.name().to_owned(),
                scale,
                sensitivity: u64::try_from(s).unwrap_or(u64::MAX),
                cost,
            });
        }
        let cost = match kind {
            NoiseKind::Laplace => PrivacyCost::Epsilon(sum),
            NoiseKind::Gaussian => PrivacyCost::Rho(sum),
        };
        Ok(Self { kind, mechanism: mechanism(kind, true), groups, cost })
    }

    /// Draws one aggregator's noise: a vector per group of `lens` (OpenDP's
    /// exact discrete samplers on OpenSSL's CSPRNG; build and use on one
    /// thread: OpenDP measurements are not `Send`).
    pub fn sample(&self, lens: [usize; 3]) -> Result<[Vec<i64>; 3], DpError> {
        let mut out: [Vec<i64>; 3] = Default::default();
        for g in Group::ALL {
            let len = lens[g.index()];
            if len == 0 {
                continue;
            }
            let scale = self.groups[g.index()]
                .as_ref()
                .ok_or(DpError::InvalidParameter { name: "noise", reason: "no plan for a non-empty group" })?
                .scale;
            let zeros = vec![0i64; len];
            out[g.index()] = match self.kind {
                NoiseKind::Laplace => make_laplace::<_, _, MaxDivergence>(
                    VectorDomain::new(AtomDomain::<i64>::default()),
                    L1Distance::<i64>::default(),
                    scale,
                    None,
                )?
                .invoke(&zeros)?,
                NoiseKind::Gaussian => make_gaussian::<_, _, ZeroConcentratedDivergence>(
                    VectorDomain::new(AtomDomain::<i64>::default()),
                    L2Distance::<i64>::default(),
                    scale,
                    None,
                )?
                .invoke(&zeros)?,
            };
        }
        Ok(out)
    }

    /// Half-width `w` such that a sum of `draws` independent noise draws of
    /// `group` lies in `[−w, w]` with probability at least `1 − alpha`.
    ///
    /// Always valid: a union bound over the draws with OpenDP's accuracy of
    /// one draw. For Gaussian noise also the sub-Gaussian bound
    /// `σ·√(2·draws·ln(2/alpha))` (the discrete Gaussian of scale σ is
    /// σ-sub-Gaussian, Canonne–Kamath–Steinke 2020), and the smaller of the
    /// two is returned.
    pub fn half_width(&self, group: Group, draws: usize, alpha: f64) -> Result<f64, DpError> {
        if draws == 0 {
            return Ok(0.0);
        }
        let scale = self.groups[group.index()]
            .as_ref()
            .ok_or(DpError::InvalidParameter { name: "noise", reason: "no plan for this group" })?
            .scale;
        #[expect(clippy::cast_precision_loss, reason = "a few thousand draws at most")]
        let d = draws as f64;
        let union = d * noise_accuracy(self.kind, true, scale, alpha / d)?;
        Ok(match self.kind {
            NoiseKind::Laplace => union,
            NoiseKind::Gaussian => union.min(scale * (2.0 * d * (2.0 / alpha).ln()).sqrt()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::study::encoding::tests::encoding;

    #[test]
    fn every_group_is_calibrated_to_its_share_and_the_total_fits() {
        let e = encoding();
        let n = StudyNoise::plan(&e).unwrap();
        assert_eq!(n.kind, NoiseKind::Laplace);
        let PrivacyCost::Epsilon(total) = n.cost else { panic!("{:?}", n.cost) };
        assert!(total <= 1.0 && total > 0.999, "{total}");
        for g in Group::ALL {
            let gn = n.groups[g.index()].as_ref().unwrap();
            let (l1, _) = e.sensitivity(g);
            assert_eq!(u128::from(gn.sensitivity), l1);
            // Discrete Laplace: ε = Δ₁ / scale.
            #[expect(clippy::cast_precision_loss)]
            let expect = l1 as f64 / gn.scale;
            assert!((gn.cost - expect).abs() < 1e-6 * expect, "{g:?}");
            assert!(gn.cost <= 1.0 / 3.0);
        }
        // Sampling gives the right lengths and noise of about the right size.
        let lens = Group::ALL.map(|g| e.group_len(g));
        let draws = n.sample([4000, 0, 0]).unwrap();
        assert_eq!(draws[0].len(), 4000);
        let scale = n.groups[0].as_ref().unwrap().scale;
        #[expect(clippy::cast_precision_loss)]
        let mean_abs = draws[0].iter().map(|x| x.unsigned_abs() as f64).sum::<f64>() / 4000.0;
        // E|X| of a discrete Laplace of scale b ≈ b for b ≫ 1 (here b ≈ 12):
        // 4000 draws put the mean within 15 % with overwhelming probability.
        assert!((mean_abs / scale - 1.0).abs() < 0.15, "{mean_abs} vs {scale}");
        let full = n.sample(lens).unwrap();
        assert_eq!(full.each_ref().map(Vec::len), lens);
        // A 95 % half-width for one draw, and wider for a sum of four.
        let one = n.half_width(Group::Bits, 1, 0.05).unwrap();
        assert!(one > 2.0 * scale && one < 4.0 * scale, "{one} vs {scale}");
        assert!(n.half_width(Group::Bits, 4, 0.05).unwrap() > 4.0 * one);
    }

    #[test]
    fn gaussian_plans_use_l2_sensitivity_and_sub_gaussian_sums() {
        let e = encoding();
        let mut doc: serde_json::Value =
            serde_json::from_slice(&e.definition().canonical_json().unwrap()).unwrap();
        doc["privacy"] = serde_json::json!({"rho": 0.5});
        let def = crate::study::StudyDefinition::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let e = crate::study::StudyEncoding::new(e.schema(), &def).unwrap();
        let n = StudyNoise::plan(&e).unwrap();
        assert_eq!(n.kind, NoiseKind::Gaussian);
        let PrivacyCost::Rho(total) = n.cost else { panic!("{:?}", n.cost) };
        assert!(total <= 0.5 && total > 0.4999, "{total}");
        let g = n.groups[Group::Squares.index()].as_ref().unwrap();
        // ρ = Δ₂² / (2σ²) with Δ₂ = ⌈√(l2²)⌉.
        let (_, l2sq) = e.sensitivity(Group::Squares);
        assert!(u128::from(g.sensitivity).pow(2) >= l2sq && u128::from(g.sensitivity - 1).pow(2) < l2sq);
        #[expect(clippy::cast_precision_loss)]
        let rho = (g.sensitivity as f64).powi(2) / (2.0 * g.scale * g.scale);
        assert!((rho - g.cost).abs() < 1e-6 * rho, "{rho} vs {}", g.cost);
        // A sum of 100 draws: the sub-Gaussian bound is far below the union bound.
        let w = n.half_width(Group::Squares, 100, 0.05).unwrap();
        let bound = g.scale * (200.0 * (2.0f64 / 0.05).ln()).sqrt();
        assert!((w - bound).abs() < 1e-9 * bound, "{w} vs {bound}");
        // Empirically: sums of 100 draws stay inside w (95 %) far more often than not.
        let mut inside = 0;
        for _ in 0..200 {
            let draws = n.sample([0, 0, 100]).unwrap();
            #[expect(clippy::cast_precision_loss)]
            let s = draws[2].iter().sum::<i64>() as f64;
            inside += usize::from(s.abs() <= w);
        }
        // P(outside) ≤ 0.05 per trial (in fact ≈ 0.007): more than 20 of
        // 200 outside has probability about 1e-3 even at exactly 5 %.
        assert!(inside >= 180, "{inside} of 200 sums inside the 95 % bound");
    }
}
