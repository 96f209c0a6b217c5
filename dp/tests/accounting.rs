#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Budget accounting against OpenDP's own privacy maps.

mod common;

use medrelay_dp::{
    answer, plan, Budget, Delta, DpError, Epsilon, Ledger, Overspend, PrivacyCost, Query, Rho, MAX_ROWS,
};
use medrelay_dp::{AnalystId, DecodeError};
use opendp::combinators::{make_chain_mt, make_zCDP_to_approxDP};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, SymmetricDistance};
use opendp::traits::InfAdd;
use opendp::transformations::make_count;
use serde_json::json;

fn count_query(privacy: serde_json::Value) -> Query {
    serde_json::from_value(json!({"statistic": {"kind": "count"}, "privacy": privacy})).unwrap()
}

#[test]
fn epsilon_after_k_queries_matches_opendp_maps() {
    let schema = common::schema();
    let rows = common::population(200, 1);
    let p = plan(&schema, &count_query(json!({"epsilon": 0.1}))).unwrap();
    let c = &p.components()[0];

    // OpenDP, independently: count >> discrete Laplace at the plan's scale.
    let t = make_count::<bool, i64>(VectorDomain::new(AtomDomain::default()), SymmetricDistance).unwrap();
    let noise = make_laplace::<_, _, MaxDivergence>(
        AtomDomain::<i64>::default(),
        AbsoluteDistance::<i64>::default(),
        c.scale,
        None,
    )
    .unwrap();
    let m = make_chain_mt(&noise, &t).unwrap();
    let per_query = m.map(&1).unwrap();
    assert_eq!(p.cost(), PrivacyCost::Epsilon(per_query));
    assert!(per_query <= 0.1 && per_query > 0.1 * (1.0 - 1e-6), "calibrated to the request: {per_query}");

    let mut ledger = common::ledger(1.0);
    let mut expected = 0.0f64;
    for k in 1..=7 {
        answer(&p, &rows, &mut ledger).unwrap();
        expected = expected.inf_add(&per_query).unwrap();
        assert_eq!(ledger.spent_pure_epsilon(), expected, "after {k} queries");
        assert_eq!(ledger.spent_epsilon().unwrap(), expected);
        assert_eq!(ledger.queries(), k);
    }
    assert!((ledger.spent_epsilon().unwrap() - 0.7).abs() < 1e-6);
}

#[test]
fn rho_converts_to_epsilon_like_opendp_zcdp_to_approxdp() {
    let delta = 1e-6;
    let budget = Budget { epsilon: Epsilon::new(10.0).unwrap(), delta: Delta::new(delta).unwrap() };
    let mut ledger = Ledger::new(AnalystId::from_bytes([2; 32]), "health-basics", budget).unwrap();

    // Three Gaussian releases of a count, sigma = 4: rho = 1/(2*16) each by OpenDP's map.
    let t = make_count::<bool, i64>(VectorDomain::new(AtomDomain::default()), SymmetricDistance).unwrap();
    let g = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<i64>::default(),
        AbsoluteDistance::<i64>::default(),
        4.0,
        None,
    )
    .unwrap();
    let m = make_chain_mt(&g, &t).unwrap();
    let rho = m.map(&1).unwrap();
    for _ in 0..3 {
        ledger.debit(PrivacyCost::Rho(rho)).unwrap();
    }
    let total_rho = rho.inf_add(&rho).unwrap().inf_add(&rho).unwrap();
    assert_eq!(ledger.spent_rho(), total_rho);

    // OpenDP's own conversion of one measurement with the same total rho
    // (sigma = 4/sqrt(3)) at the same delta.
    let g3 = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<i64>::default(),
        AbsoluteDistance::<i64>::default(),
        (1.0 / (2.0 * total_rho)).sqrt(),
        None,
    )
    .unwrap();
    let approx = make_zCDP_to_approxDP(make_chain_mt(&g3, &t).unwrap()).unwrap();
    let profile = approx.map(&1).unwrap();
    let expected = profile.epsilon(delta).unwrap();
    let got = ledger.spent_epsilon().unwrap();
    assert!((got - expected).abs() <= 1e-9 * expected, "ledger {got} vs OpenDP {expected}");
    // and it is below the classic bound rho + 2 sqrt(rho ln(1/delta))
    let classic = total_rho + 2.0 * (total_rho * (1.0 / delta).ln()).sqrt();
    assert!(got <= classic && got > total_rho, "{got} vs classic {classic}");

    // Pure and zCDP spending add up (RDP argument in the budget module docs).
    ledger.debit(PrivacyCost::Epsilon(0.25)).unwrap();
    assert_eq!(ledger.spent_epsilon().unwrap(), 0.25f64.inf_add(&got).unwrap());
}

#[test]
fn overspend_is_refused_and_changes_nothing() {
    let mut ledger = common::ledger(0.5);
    ledger.debit(PrivacyCost::Epsilon(0.4)).unwrap();
    let before = ledger.clone();
    let bytes = ledger.encode();
    let err = ledger.debit(PrivacyCost::Epsilon(0.11)).unwrap_err();
    let DpError::Overspend(o) = err else { panic!("expected overspend, got {err:?}") };
    assert_eq!(o.total, 0.5);
    assert!(o.would_be > 0.5);
    assert_eq!(ledger, before);
    assert_eq!(ledger.encode(), bytes);
    // zCDP cost that would convert beyond the remaining 0.1 is refused too.
    assert!(matches!(ledger.debit(PrivacyCost::Rho(0.01)), Err(DpError::Overspend(_))));
    assert_eq!(ledger, before);
    // Invalid costs are refused without effect.
    for bad in [f64::NAN, -0.1, 0.0, f64::INFINITY] {
        assert!(matches!(ledger.debit(PrivacyCost::Epsilon(bad)), Err(DpError::InvalidParameter { .. })));
    }
    assert_eq!(ledger, before);
    // Conservative rounding: the binary values of 0.4 and 0.1 add up to a hair
    // above 0.5, and the ledger rounds that sum up, so 0.1 does not fit...
    let err = ledger.debit(PrivacyCost::Epsilon(0.1)).unwrap_err();
    assert!(matches!(err, DpError::Overspend(Overspend { would_be, .. }) if would_be > 0.5));
    assert_eq!(ledger, before);
    // ...while a cost just below the remainder does.
    ledger.debit(PrivacyCost::Epsilon(0.0999)).unwrap();
    assert!(ledger.spent_epsilon().unwrap() <= 0.5);
    assert_eq!(ledger.queries(), 2);
}

#[test]
fn answer_refuses_overspend_and_leaves_ledger_untouched() {
    let schema = common::schema();
    let rows = common::population(50, 2);
    let p = plan(&schema, &count_query(json!({"epsilon": 0.3}))).unwrap();
    let mut ledger = common::ledger(0.5);
    answer(&p, &rows, &mut ledger).unwrap();
    let before = ledger.clone();
    assert!(matches!(answer(&p, &rows, &mut ledger), Err(DpError::Overspend(_))));
    assert_eq!(ledger, before);

    // wrong schema ledger: refused, unchanged
    let budget = Budget { epsilon: Epsilon::new(5.0).unwrap(), delta: Delta::new(1e-7).unwrap() };
    let mut other = Ledger::new(AnalystId::from_bytes([3; 32]), "other-schema", budget).unwrap();
    let before = other.clone();
    assert!(matches!(answer(&p, &rows, &mut other), Err(DpError::SchemaMismatch { .. })));
    assert_eq!(other, before);
    assert_eq!(MAX_ROWS, 1 << 20);
}

#[test]
fn privacy_parameters_are_validated() {
    assert!(Epsilon::new(0.0).is_err());
    assert!(Epsilon::new(f64::NAN).is_err());
    assert!(Epsilon::new(1000.0).is_err());
    assert!(Rho::new(-1.0).is_err());
    assert!(Delta::new(0.5).is_err());
    assert!(Query::from_json(br#"{"statistic":{"kind":"count"},"privacy":{"epsilon":-1}}"#).is_err());
    assert!(Query::from_json(br#"{"statistic":{"kind":"count"},"privacy":{"rho":0}}"#).is_err());
}

#[test]
fn ledger_encoding_round_trips_and_rejects_bad_bytes() {
    let mut ledger = common::ledger(2.0);
    ledger.debit(PrivacyCost::Epsilon(0.3)).unwrap();
    ledger.debit(PrivacyCost::Rho(0.01)).unwrap();
    let bytes = ledger.encode();
    assert_eq!(Ledger::decode(&bytes).unwrap(), ledger);
    let json = serde_json::to_value(&ledger).unwrap();
    assert_eq!(json["schema"], "health-basics");

    for cut in 0..bytes.len() {
        assert!(
            matches!(Ledger::decode(&bytes[..cut]), Err(DpError::Decode(DecodeError::Truncated))),
            "truncated at {cut}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(Ledger::decode(&trailing), Err(DpError::Decode(DecodeError::TrailingBytes))));
    let mut version = bytes.clone();
    version[4] = 9;
    assert!(matches!(
        Ledger::decode(&version),
        Err(DpError::Decode(DecodeError::UnsupportedVersion { found: 9 }))
    ));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(matches!(Ledger::decode(&magic), Err(DpError::Decode(DecodeError::WrongMagic))));
    assert!(matches!(Ledger::decode(&vec![0; 4096]), Err(DpError::Decode(DecodeError::TooLarge { .. }))));
    // spent epsilon replaced by NaN: invalid, not accepted
    let n = bytes.len();
    let mut nan = bytes.clone();
    nan[n - 24..n - 16].copy_from_slice(&f64::NAN.to_bits().to_be_bytes());
    assert!(matches!(Ledger::decode(&nan), Err(DpError::Decode(DecodeError::Invalid(_)))));
    // budget epsilon negative: invalid
    let mut neg = bytes.clone();
    let off = 5 + 32 + 2 + "health-basics".len();
    neg[off..off + 8].copy_from_slice(&(-1.0f64).to_bits().to_be_bytes());
    assert!(matches!(Ledger::decode(&neg), Err(DpError::Decode(DecodeError::Invalid(_)))));
}

#[test]
fn mutated_ledger_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut ledger = common::ledger(3.0);
    ledger.debit(PrivacyCost::Epsilon(0.5)).unwrap();
    let bytes = ledger.encode();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
    let mut accepted = 0;
    for _ in 0..5000 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..b.len());
            b[i] = rng.gen();
        }
        if let Ok(l) = Ledger::decode(&b) {
            // whatever decodes is internally valid
            accepted += 1;
            assert!(l.spent_pure_epsilon().is_finite() && l.spent_pure_epsilon() >= 0.0);
            assert!(l.budget().epsilon.get() > 0.0);
        }
    }
    assert!(accepted < 5000, "mutations must be caught at least sometimes");
}

#[test]
fn set_budget_keeps_spending_and_never_refunds() {
    let mut ledger = common::ledger(0.5);
    ledger.debit(PrivacyCost::Epsilon(0.25)).unwrap();
    let new = Budget { epsilon: Epsilon::new(2.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
    ledger.set_budget(new);
    assert_eq!(ledger.budget(), new);
    assert_eq!(ledger.spent_pure_epsilon(), 0.25);
    assert_eq!(ledger.queries(), 1);
    assert_eq!(ledger.remaining_epsilon().unwrap(), 1.75);
    // Lowering the total below the spending leaves nothing, not a refund.
    ledger.set_budget(Budget { epsilon: Epsilon::new(0.1).unwrap(), ..new });
    assert_eq!(ledger.remaining_epsilon().unwrap(), 0.0);
    assert!(matches!(ledger.debit(PrivacyCost::Epsilon(0.01)), Err(DpError::Overspend(_))));
    assert_eq!(ledger.spent_pure_epsilon(), 0.25);
}
