#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Planning and answering queries.

mod common;

use medrelay_dp::{
    answer, plan, Accuracy, AnswerValue, DpError, Mechanism, PrivacyCost, Query, QueryError, Summary,
};
use serde_json::json;

fn q(v: serde_json::Value) -> Query {
    serde_json::from_value(v).unwrap()
}

fn scalar(a: &medrelay_dp::Answer) -> f64 {
    match a.value {
        AnswerValue::Scalar(x) => x,
        AnswerValue::Histogram(_) => panic!("expected a scalar"),
    }
}

fn field(rows: &[Summary], name: &str) -> Vec<f64> {
    let s = common::schema();
    let i = s.field(name).unwrap().0;
    rows.iter().filter_map(|r| r.value(i).and_then(|v| v.as_f64())).collect()
}

#[test]
fn query_errors_are_typed() {
    let s = common::schema();
    let cases = [
        (json!({"kind": "sum", "field": "weight"}), json!([])),
        (json!({"kind": "sum", "field": "diabetes"}), json!([])),
        (json!({"kind": "histogram", "field": "bmi", "edges": [30, 20]}), json!([])),
        (json!({"kind": "histogram", "field": "sex", "edges": [1, 2]}), json!([])),
        (json!({"kind": "quantile", "field": "bmi", "alpha": 1.5}), json!([])),
        (json!({"kind": "quantile", "field": "bmi", "alpha": 0.5, "candidates": 100000}), json!([])),
        (json!({"kind": "correlation", "x": "bmi", "y": "bmi"}), json!([])),
        (json!({"kind": "count"}), json!([{"field": "diabetes", "op": "is", "value": "yes"}])),
        (json!({"kind": "count"}), json!([{"field": "sex", "op": "is", "value": "f"}])),
        (json!({"kind": "count"}), json!([{"field": "bmi", "op": "range"}])),
        (json!({"kind": "count"}), json!([{"field": "bmi", "op": "range", "min": 40, "max": 30}])),
        (json!({"kind": "count"}), json!([{"field": "bmi", "op": "one_of", "values": ["a"]}])),
    ];
    for (stat, filters) in cases {
        let query = q(json!({"statistic": stat, "filters": filters, "privacy": {"epsilon": 1.0}}));
        let err = plan(&s, &query).unwrap_err();
        assert!(matches!(err, DpError::Query(_)), "{stat} {filters}: {err:?}");
    }
    let too_many: Vec<_> = (0..17).map(|_| json!({"field": "asthma", "op": "is", "value": true})).collect();
    let err =
        plan(&s, &q(json!({"statistic": {"kind": "count"}, "filters": too_many, "privacy": {"epsilon": 1}})))
            .unwrap_err();
    assert!(matches!(err, DpError::Query(QueryError::TooMany { what: "filters", .. })));
    assert!(matches!(
        plan(&s, &q(json!({"statistic": {"kind": "mean", "field": "bmj"}, "privacy": {"epsilon": 1}}))),
        Err(DpError::Query(QueryError::UnknownField { .. }))
    ));
    // unknown keys in a query document are refused
    assert!(matches!(
        Query::from_json(br#"{"statistic":{"kind":"count","field":"x"},"privacy":{"epsilon":1}}"#),
        Err(DpError::Malformed { what: "query", .. })
    ));
    assert!(matches!(Query::from_json(&vec![b' '; 20_000]), Err(DpError::TooLarge { .. })));
}

#[test]
fn small_filtered_counts_are_always_noisy() {
    let s = common::schema();
    let mut rows = common::population(300, 3);
    // exactly one patient is in this cell
    rows.push(common::row(&s, json!({"bmi": 69.0, "sex": "other", "asthma": true})));
    let query = q(json!({"statistic": {"kind": "count"},
        "filters": [{"field": "bmi", "op": "range", "min": 60}],
        "privacy": {"epsilon": 0.5}}));
    let p = plan(&s, &query).unwrap();
    let mut ledger = common::ledger(100.0);
    let answers: Vec<f64> = (0..40).map(|_| scalar(&answer(&p, &rows, &mut ledger).unwrap())).collect();
    let distinct: std::collections::BTreeSet<i64> = answers.iter().map(|x| *x as i64).collect();
    // P(all 40 equal) for discrete Laplace with scale 2 is below 0.25^39.
    assert!(distinct.len() > 1, "answers must differ: {answers:?}");
    assert!(answers.iter().any(|a| *a != 1.0), "never the exact count every time");
    // and the same for a cell with nobody in it
    let empty = plan(
        &s,
        &q(json!({"statistic": {"kind": "count"},
        "filters": [{"field": "bmi", "op": "range", "min": 1000}], "privacy": {"epsilon": 0.5}})),
    )
    .unwrap();
    let zeros: Vec<f64> = (0..40).map(|_| scalar(&answer(&empty, &rows, &mut ledger).unwrap())).collect();
    assert!(zeros.iter().any(|a| *a != 0.0), "{zeros:?}");
}

#[test]
fn answers_are_accurate_at_high_epsilon_and_carry_their_metadata() {
    let s = common::schema();
    let rows = common::population(5000, 4);
    let bmi = field(&rows, "bmi");
    let sbp = field(&rows, "systolic_bp");
    let n = bmi.len() as f64;
    let mean_bmi = bmi.iter().sum::<f64>() / n;
    let var_bmi = bmi.iter().map(|x| (x - mean_bmi).powi(2)).sum::<f64>() / n;
    let mut ledger = common::ledger(100.0);

    let a = answer(
        &plan(&s, &q(json!({"statistic": {"kind": "mean", "field": "bmi"}, "privacy": {"epsilon": 2.0}})))
            .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!((scalar(&a) - mean_bmi).abs() < 0.5, "{} vs {mean_bmi}", scalar(&a));
    let Accuracy::Interval { low, high, guaranteed: true, .. } = a.accuracy else {
        panic!("{:?}", a.accuracy)
    };
    assert!(low <= scalar(&a) && scalar(&a) <= high && high - low < 2.0);
    assert_eq!(a.components.len(), 2);
    assert_eq!(a.components[0].mechanism, Mechanism::DiscreteLaplace);
    assert_eq!(a.components[1].mechanism, Mechanism::Laplace);
    // OpenDP's float-sum sensitivity is the bound width plus rounding slack.
    let sens = a.components[1].sensitivity.unwrap();
    assert!((70.0..70.1).contains(&sens), "{sens}");
    let PrivacyCost::Epsilon(cost) = a.cost else { panic!() };
    assert!(cost <= 2.0 && cost > 1.999);

    let v = answer(
        &plan(
            &s,
            &q(json!({"statistic": {"kind": "variance", "field": "bmi"}, "privacy": {"epsilon": 15.0}})),
        )
        .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!((scalar(&v) - var_bmi).abs() < 0.2 * var_bmi, "{} vs {var_bmi}", scalar(&v));
    let sd = answer(
        &plan(&s, &q(json!({"statistic": {"kind": "std_dev", "field": "bmi"}, "privacy": {"rho": 3.0}})))
            .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!((scalar(&sd) - var_bmi.sqrt()).abs() < 0.1 * var_bmi.sqrt());
    assert_eq!(sd.components[0].mechanism, Mechanism::DiscreteGaussian);
    assert!(matches!(sd.cost, PrivacyCost::Rho(r) if r <= 3.0));

    let r = answer(&plan(&s, &q(json!({"statistic": {"kind": "correlation", "x": "bmi", "y": "systolic_bp"}, "privacy": {"epsilon": 40.0}}))).unwrap(), &rows, &mut ledger).unwrap();
    let (mx, my) = (mean_bmi, sbp.iter().sum::<f64>() / n);
    let cov: f64 = bmi.iter().zip(&sbp).map(|(x, y)| (x - mx) * (y - my)).sum();
    let true_r = cov
        / (bmi.iter().map(|x| (x - mx).powi(2)).sum::<f64>()
            * sbp.iter().map(|y| (y - my).powi(2)).sum::<f64>())
        .sqrt();
    // Six noisy components (counts, sums, products, squares) feed one ratio:
    // at ε = 12 it missed by more than 0.15 about once in a hundred runs.
    assert!((scalar(&r) - true_r).abs() < 0.15, "{} vs {true_r}", scalar(&r));
    assert_eq!(r.components.len(), 6);

    let mut sorted = bmi.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let m = answer(
        &plan(&s, &q(json!({"statistic": {"kind": "median", "field": "bmi"}, "privacy": {"epsilon": 1.0}})))
            .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!((scalar(&m) - median).abs() < 1.0, "{} vs {median}", scalar(&m));
    assert_eq!(m.components[0].mechanism, Mechanism::ExponentialMechanism);
    let Accuracy::Rank { within, .. } = m.accuracy else { panic!() };
    assert!(within > 0.0 && within < 100.0, "{within}");
    // the released value's rank is within the stated error (plus the candidate spacing)
    let rank = sorted.iter().filter(|x| **x < scalar(&m)).count() as f64;
    assert!((rank - n / 2.0).abs() <= within + 5.0 * n / 1023.0 * (60.0 / 17.0) + 1.0, "rank {rank}");

    let h = answer(
        &plan(
            &s,
            &q(json!({"statistic": {"kind": "histogram", "field": "sex"}, "privacy": {"epsilon": 1.0}})),
        )
        .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    let AnswerValue::Histogram(bins) = &h.value else { panic!() };
    assert_eq!(
        bins.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
        ["female", "male", "other", "unknown"]
    );
    let total: i64 = bins.iter().map(|b| b.count).sum();
    assert!((total - 5000).abs() < 100);
    let Accuracy::PerBin { half_width, .. } = h.accuracy else { panic!() };
    assert!(half_width > 1.0 && half_width < 10.0, "{half_width}");
    for b in bins {
        assert!((b.count - 1250).abs() < 150, "{b:?}");
    }

    let hb = answer(&plan(&s, &q(json!({"statistic": {"kind": "histogram", "field": "bmi", "edges": [10, 20, 30, 70]},
        "filters": [{"field": "sex", "op": "one_of", "values": ["female", "male"]}], "privacy": {"rho": 0.5}}))).unwrap(), &rows, &mut ledger).unwrap();
    let AnswerValue::Histogram(bins) = &hb.value else { panic!() };
    assert_eq!(
        bins.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
        ["[10, 20)", "[20, 30)", "[30, 70]"]
    );

    let spent = ledger.spent_epsilon().unwrap();
    assert!(spent <= 100.0, "{spent}");
}

#[test]
fn out_of_bounds_values_are_clamped() {
    let s = common::schema();
    let rows: Vec<Summary> = (0..400).map(|_| common::row(&s, json!({"bmi": 1000.0}))).collect();
    let mut ledger = common::ledger(10.0);
    let a = answer(
        &plan(&s, &q(json!({"statistic": {"kind": "mean", "field": "bmi"}, "privacy": {"epsilon": 5.0}})))
            .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!(scalar(&a) <= 70.0 && scalar(&a) > 65.0, "{}", scalar(&a));
    let sum = answer(
        &plan(&s, &q(json!({"statistic": {"kind": "sum", "field": "bmi"}, "privacy": {"epsilon": 4.0}})))
            .unwrap(),
        &rows,
        &mut ledger,
    )
    .unwrap();
    assert!((scalar(&sum) - 400.0 * 70.0).abs() < 300.0, "{}", scalar(&sum));
}

#[test]
fn plans_are_send_and_serializable() {
    fn assert_send<T: Send + Sync>() {}
    assert_send::<medrelay_dp::Plan>();
    assert_send::<medrelay_dp::Answer>();
    assert_send::<medrelay_dp::Ledger>();
    let s = common::schema();
    let p = plan(&s, &q(json!({"statistic": {"kind": "quantile", "field": "birth_year", "alpha": 0.9}, "privacy": {"rho": 0.1}}))).unwrap();
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["components"][0]["mechanism"], "exponential_mechanism");
    assert!(matches!(p.cost(), PrivacyCost::Rho(r) if r <= 0.1 && r > 0.0999));
}

/// Finding 2 of issue 12: vanishing privacy parameters pinned a CPU (ρ =
/// 1e-300: the exact discrete Gaussian sampler's work grows with σ) or
/// released garbage (ε = 1e-20: a "count" of −9.2e18). The planner refuses
/// them, and plans whose noise or sampler work is past the bounds, before
/// anything runs or is spent; in-bounds neighbours still plan.
#[test]
fn vanishing_privacy_and_unbounded_work_are_refused_at_planning() {
    use medrelay_dp::{PlanRefusal, MAX_SAMPLER_COST, MIN_EPSILON, MIN_RHO};
    let s = common::schema();
    let refusal = |stat: serde_json::Value, privacy: serde_json::Value| -> PlanRefusal {
        match plan(&s, &q(json!({"statistic": stat, "privacy": privacy}))) {
            Err(DpError::Refused(r)) => r,
            other => panic!("{stat} {privacy}: {other:?}"),
        }
    };
    let count = json!({"kind": "count"});
    for privacy in
        [json!({"rho": 1e-300}), json!({"rho": 1e-13}), json!({"epsilon": 1e-20}), json!({"epsilon": 1e-300})]
    {
        let r = refusal(count.clone(), privacy.clone());
        assert_eq!(r.code(), "privacy_below_floor", "{privacy}");
        assert!(r.to_string().contains("below the floor"), "{r}");
    }
    // The floors themselves plan, and a count's noise stays far from i64.
    for privacy in [json!({"epsilon": MIN_EPSILON}), json!({"rho": MIN_RHO})] {
        let p = plan(&s, &q(json!({"statistic": count, "privacy": privacy}))).unwrap();
        assert!(p.components()[0].scale < 1e7, "{privacy}: {}", p.components()[0].scale);
    }
    let mut ledger = common::ledger(100.0);
    let rows = common::population(50, 9);
    let p = plan(&s, &q(json!({"statistic": count, "privacy": {"epsilon": MIN_EPSILON}}))).unwrap();
    let released = scalar(&answer(&p, &rows, &mut ledger).unwrap());
    assert!(released.abs() < 1e9, "{released}");

    // Sampler work: 256 discrete Gaussian bins at σ ≈ 7e5 are ~18,000 units,
    // 10 bins are ~720.
    let edges = |n: usize| -> Vec<f64> { (0..=n).map(|i| 1900.0 + i as f64 * 0.5).collect() };
    let r = refusal(
        json!({"kind": "histogram", "field": "birth_year", "edges": edges(256)}),
        json!({"rho": 1e-12}),
    );
    match r {
        PlanRefusal::SamplerCost { cost, limit } => {
            assert_eq!(limit, MAX_SAMPLER_COST);
            assert!(cost > 15_000.0 && cost < 20_000.0, "{cost}");
        }
        other => panic!("{other:?}"),
    }
    plan(
        &s,
        &q(json!({"statistic": {"kind": "histogram", "field": "birth_year", "edges": edges(10)},
        "privacy": {"rho": 1e-12}})),
    )
    .unwrap();
    plan(
        &s,
        &q(json!({"statistic": {"kind": "histogram", "field": "birth_year", "edges": edges(256)},
        "privacy": {"rho": 1e-6}})),
    )
    .unwrap();

    // Noise scale: a schema with very wide bounds needs more noise than the
    // bound allows even above the floor.
    let wide = medrelay_dp::Schema::from_json(
        br#"{"name": "wide", "description": "wide bounds", "fields": [
            {"name": "charges", "description": "total charges", "type": "float", "min": 0, "max": 1e9,
             "derive": {"from": "latest_observation", "unit": "USD",
                        "codes": [{"system": "http://loinc.org", "code": "0000-0"}]}}]}"#,
    )
    .unwrap();
    let r = match plan(
        &wide,
        &q(json!({"statistic": {"kind": "sum", "field": "charges"}, "privacy": {"epsilon": 1e-4}})),
    ) {
        Err(DpError::Refused(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.code(), "noise_scale_too_large");
    assert!(r.to_string().contains("sum"), "{r}");
    plan(&wide, &q(json!({"statistic": {"kind": "sum", "field": "charges"}, "privacy": {"epsilon": 0.1}})))
        .unwrap();
}

#[test]
fn budgets_refuse_a_delta_below_the_floor() {
    use medrelay_dp::{Delta, MIN_DELTA};
    assert!(Delta::new(MIN_DELTA).is_ok());
    for bad in [MIN_DELTA / 10.0, 1e-300] {
        match Delta::new(bad) {
            Err(DpError::InvalidParameter { name: "delta", reason }) => {
                assert!(reason.contains("floor"), "{reason}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}
