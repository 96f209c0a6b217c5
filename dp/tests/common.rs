#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Helpers shared by the integration tests.

use medrelay_dp::AnalystId;
use medrelay_dp::{Budget, Delta, Epsilon, Ledger, Schema, Summary, SummaryDoc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];

pub(crate) fn schema() -> Schema {
    Schema::health_basics()
}

pub(crate) fn ledger(epsilon: f64) -> Ledger {
    let budget = Budget { epsilon: Epsilon::new(epsilon).unwrap(), delta: Delta::new(1e-7).unwrap() };
    Ledger::new(AnalystId::from_bytes([1; 32]), "health-basics", budget).unwrap()
}

pub(crate) fn row(schema: &Schema, values: serde_json::Value) -> Summary {
    let doc: SummaryDoc =
        serde_json::from_value(json!({"schema": "health-basics", "values": values})).unwrap();
    Summary::validate(schema, &doc).unwrap()
}

/// `n` synthetic summaries with correlated blood pressure and BMI.
pub(crate) fn population(n: usize, seed: u64) -> Vec<Summary> {
    let schema = schema();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let bmi: f64 = 18.0 + 17.0 * rng.gen::<f64>();
            let sbp = 90.0 + 2.0 * bmi + 20.0 * rng.gen::<f64>();
            let sex = SEXES[rng.gen_range(0..4)];
            row(
                &schema,
                json!({
                    "birth_year": rng.gen_range(1930..2010),
                    "sex": sex,
                    "systolic_bp": sbp,
                    "bmi": bmi,
                    "diabetes": rng.gen_bool(0.1),
                    "hypertension": rng.gen_bool(0.3),
                    "asthma": rng.gen_bool(0.08),
                }),
            )
        })
        .collect()
}
