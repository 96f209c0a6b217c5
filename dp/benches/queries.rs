//! Throughput of DP queries over 100,000 generated summaries.
//!
//! Reproduce with:
//!
//! ```text
//! cargo bench -p medrelay-dp --bench queries
//! ```
//!
//! Each query is planned once, then answered repeatedly (each answer builds
//! its OpenDP measurement, filters and maps the rows, releases, and debits a
//! ledger), and the rate is printed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use medrelay_dp::{
    answer, plan, AnalystId, Budget, Delta, Epsilon, Ledger, Query, Schema, Summary, SummaryDoc,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];

const ROWS: usize = 100_000;

fn population(schema: &Schema) -> Vec<Summary> {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    (0..ROWS)
        .map(|_| {
            let bmi: f64 = 18.0 + 17.0 * rng.gen::<f64>();
            let doc: SummaryDoc = serde_json::from_value(json!({"schema": "health-basics", "values": {
                "birth_year": rng.gen_range(1930..2010),
                "sex": SEXES[rng.gen_range(0..4)],
                "systolic_bp": 90.0 + 2.0 * bmi + 20.0 * rng.gen::<f64>(),
                "bmi": bmi,
                "diabetes": rng.gen_bool(0.1),
                "hypertension": rng.gen_bool(0.3),
                "asthma": rng.gen_bool(0.08),
            }}))
            .unwrap();
            Summary::validate(schema, &doc).unwrap()
        })
        .collect()
}

fn run(name: &str, schema: &Schema, rows: &[Summary], query: serde_json::Value) {
    let query: Query = serde_json::from_value(query).unwrap();
    let start = Instant::now();
    let p = plan(schema, &query).unwrap();
    let plan_time = start.elapsed();
    let budget = Budget { epsilon: Epsilon::new(100.0).unwrap(), delta: Delta::new(1e-7).unwrap() };
    let mut done = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) || done < 5 {
        let mut ledger = Ledger::new(AnalystId::from_bytes([0; 32]), "health-basics", budget).unwrap();
        black_box(answer(&p, rows, &mut ledger).unwrap());
        done += 1;
    }
    let per = start.elapsed() / done;
    println!(
        "{name:<40} {:>10.1} queries/s   ({:?} per answer, plan {:?}, {done} runs over {ROWS} summaries)",
        1.0 / per.as_secs_f64(),
        per,
        plan_time
    );
}

fn main() {
    println!("medrelay-dp query throughput; reproduce: cargo bench -p medrelay-dp --bench queries");
    let schema = Schema::health_basics();
    let rows = population(&schema);
    run(
        "count (no filter, ε=0.1)",
        &schema,
        &rows,
        json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 0.1}}),
    );
    run(
        "count (2 filters, ε=0.1)",
        &schema,
        &rows,
        json!({"statistic": {"kind": "count"}, "filters": [
            {"field": "diabetes", "op": "is", "value": true},
            {"field": "birth_year", "op": "range", "min": 1950, "max": 1970}], "privacy": {"epsilon": 0.1}}),
    );
    run(
        "median bmi (1024 candidates, ε=0.1)",
        &schema,
        &rows,
        json!({"statistic": {"kind": "median", "field": "bmi"}, "privacy": {"epsilon": 0.1}}),
    );
    run(
        "quantile 0.9 systolic_bp (ρ=0.01)",
        &schema,
        &rows,
        json!({"statistic": {"kind": "quantile", "field": "systolic_bp", "alpha": 0.9}, "privacy": {"rho": 0.01}}),
    );
    run(
        "mean bmi (ε=0.1)",
        &schema,
        &rows,
        json!({"statistic": {"kind": "mean", "field": "bmi"}, "privacy": {"epsilon": 0.1}}),
    );
}
