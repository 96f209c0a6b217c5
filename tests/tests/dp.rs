//! Differential privacy end to end with the real binaries: three patients
//! import their FHIR bundles and `contribute` a health-basics summary
//! (derived and clamped on their machine); the server stores exactly what
//! the client showed, a resubmission replaces it and `withdraw` deletes it.
//! An analyst enrolled with `medrelay-server enroll --role analyst` runs
//! `count` and `median`, each debiting exactly the ε asked; a query the
//! remaining budget cannot pay is refused in one line and spends nothing.
//! A patient cannot query (neither through the CLI nor straight at the
//! server), a doctor command on an analyst profile is one clear line, and
//! an unknown schema is a clear error everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use medrelay_client::{ClientError, Http, Passphrase, Profile, ServerOptions};
use medrelay_wire::dp::Query;
use serde_json::{json, Value};

const SCHEMA: &str = "health-basics";

/// A later BMI for Alpha above the schema's public bound (70): the client
/// must clamp it before submitting.
const HIGH_BMI: &str = r#"{"resourceType":"Observation","id":"alpha-bmi-2","status":"final",
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"39156-5","display":"Body mass index (BMI) [Ratio]"}]},
 "subject":{"reference":"Patient/synthetic-alpha"},"effectiveDateTime":"2026-11-20T09:00:00Z",
 "valueQuantity":{"value":82.5,"unit":"kg/m2","system":"http://unitsofmeasure.org","code":"kg/m2"}}"#;

fn expected(name: &str) -> Value {
    match name {
        "alpha" => json!({"birth_year": 1968, "sex": "female", "systolic_bp": 134.0, "bmi": 70.0,
                          "diabetes": true, "hypertension": true, "asthma": false}),
        "bravo" => json!({"birth_year": 1985, "sex": "male", "systolic_bp": 121.0, "bmi": 24.8,
                          "diabetes": false, "hypertension": false, "asthma": true}),
        _ => json!({"birth_year": 1952, "sex": "other", "systolic_bp": 152.0, "bmi": 28.4,
                    "diabetes": false, "hypertension": true, "asthma": false}),
    }
}

fn epsilon_of(cost: &Value) -> f64 {
    cost["epsilon"].as_f64().unwrap_or_else(|| panic!("not an ε cost: {cost}"))
}

/// Summaries the server stores for `schema` (read from sled, server stopped).
fn stored_rows(server: &Server, schema: &str) -> usize {
    let db = sled::Config::new().path(server.data_dir().join("db")).open().unwrap();
    let prefix = [&b"dsu/"[..], schema.as_bytes(), b"/"].concat();
    db.scan_prefix(prefix).count()
}

#[test]
fn patients_contribute_and_an_analyst_queries_within_the_budget() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    let analyst_token = server.enroll("analyst", "Analyst Example");
    server.start();
    let url = server.url();

    // ------------------------------------------------------------ patients
    let names = ["alpha", "bravo", "charlie"];
    let patients: Vec<User> = names.iter().map(|n| User::new("medrelay-patient", root.path(), n)).collect();
    for (name, p) in names.iter().zip(&patients) {
        p.run(&["init", "--server", &url, "--name", name]).ok();
        let bundle = data(&format!("fhir-patient-{name}.json"));
        p.run(&["import", bundle.to_str().unwrap()]).ok();
    }
    let alpha = &patients[0];
    let extra = root.path().join("alpha-bmi-2.json");
    std::fs::write(&extra, HIGH_BMI).unwrap();
    alpha.run(&["import", extra.to_str().unwrap()]).ok();
    // A non-FHIR file is not part of any summary.
    let scan = root.path().join("scan.pdf");
    std::fs::write(&scan, b"%PDF-1.4 synthetic scan, not a real document").unwrap();
    alpha.run(&["upload", scan.to_str().unwrap(), "--category", "imaging"]).ok();

    // The schema list names the fields and bounds.
    let out = alpha.run(&["schemas"]).ok();
    assert!(out.contains("health-basics: "), "{out}");
    assert!(out.contains("bmi") && out.contains("10..70"), "{out}");

    // The preview shows the clamped field and sends nothing.
    let out = alpha.run(&["summary", "--schema", SCHEMA]).ok();
    assert!(out.contains("derived on this machine from 17 of your FHIR records"), "{out}");
    assert!(out.lines().any(|l| l.contains("bmi") && l.contains("70") && l.contains("(clamped)")), "{out}");
    assert!(out.contains("Clamped into the schema's public bounds: bmi"), "{out}");
    assert!(out.contains("nothing was sent"), "{out}");
    assert_eq!(alpha.run(&["summary", "--schema", SCHEMA, "--stored", "--json"]).json(), Value::Null);
    // Without a terminal and without --yes nothing is sent.
    alpha.run(&["contribute", "--schema", SCHEMA]).fails_with("pass --yes");
    assert_eq!(alpha.run(&["summary", "--schema", SCHEMA, "--stored", "--json"]).json(), Value::Null);

    // Everyone contributes; the server stores exactly what each client showed.
    let records_used = [17, 8, 7];
    for ((name, p), used) in names.iter().zip(&patients).zip(records_used) {
        let out = p.run(&["contribute", "--schema", SCHEMA, "--yes", "--json"]).json();
        let summary = &out["summary"];
        assert_eq!(summary["schema"], SCHEMA);
        assert_eq!(summary["records_used"], used, "{name}: {out}");
        assert_eq!(summary["doc"]["values"], expected(name), "{name}: {out}");
        let clamped = if *name == "alpha" { json!(["bmi"]) } else { json!([]) };
        assert_eq!(summary["clamped"], clamped, "{name}");
        assert_eq!(out["receipt"]["action"], "submitted", "{name}: {out}");
        assert_eq!(out["receipt"]["schema"], SCHEMA);
        let stored = p.run(&["summary", "--schema", SCHEMA, "--stored", "--json"]).json();
        assert_eq!(stored, summary["doc"], "{name}: the server stores what the client showed");
    }

    // A resubmission replaces (the human-readable form says so).
    let out = alpha.run(&["contribute", "--schema", SCHEMA, "--yes"]).ok();
    assert!(out.contains("replaced your earlier summary for schema health-basics"), "{out}");
    assert!(out.contains("bmi") && out.contains("(clamped)"), "{out}");

    // Withdraw removes Charlie's; a second withdraw says there is none.
    let charlie = &patients[2];
    let w = charlie.run(&["withdraw", "--schema", SCHEMA, "--json"]).json();
    assert_eq!(w["action"], "withdrawn");
    assert_eq!(charlie.run(&["summary", "--schema", SCHEMA, "--stored", "--json"]).json(), Value::Null);
    charlie
        .run(&["withdraw", "--schema", SCHEMA])
        .fails_with("you have no summary stored for schema \"health-basics\"");

    // Unknown schema: one clear line for the patient.
    alpha.run(&["contribute", "--schema", "no-such", "--yes"]).fails_with("unknown schema \"no-such\"");
    alpha.run(&["contribute", "--schema", "../v1", "--yes"]).fails_with("invalid schema name");

    // ------------------------------------------------------------ analyst
    let analyst = User::new("medrelay-doctor", root.path(), "analyst");
    let id = analyst
        .run(&["init", "--analyst", "--server", &url, "--enrollment-token", &analyst_token, "--json"])
        .json();
    assert_eq!(id["role"], "analyst");
    assert_eq!(id["pre_key_fingerprint"], Value::Null);
    assert_eq!(analyst.run(&["whoami", "--json"]).json()["id"], id["id"]);
    let schemas = analyst.run(&["schemas", "--json"]).json();
    assert_eq!(schemas[0]["name"], SCHEMA);

    let budget = |a: &User| a.run(&["budget", "--schema", SCHEMA, "--json"]).json();
    let b0 = budget(&analyst);
    assert_eq!((b0["total_epsilon"].as_f64(), b0["spent_epsilon"].as_f64()), (Some(1.0), Some(0.0)));
    assert_eq!(b0["remaining_epsilon"].as_f64(), Some(1.0));

    // count at ε = 0.3: the remaining budget drops by exactly what was asked
    // (OpenDP's reported cost, which is the ε asked up to calibration's 1e-6).
    let drop_by = |before: &Value, after: &Value| {
        before["remaining_epsilon"].as_f64().unwrap() - after["remaining_epsilon"].as_f64().unwrap()
    };
    let a1 = analyst.run(&["query", "--schema", SCHEMA, "--epsilon", "0.3", "count", "--json"]).json();
    assert!(a1["answer"]["value"]["scalar"].is_number(), "{a1}");
    assert_eq!(a1["answer"]["components"][0]["mechanism"], "discrete_laplace");
    let cost1 = epsilon_of(&a1["answer"]["cost"]);
    assert!(cost1 <= 0.3 && cost1 > 0.3 * (1.0 - 1e-6), "{cost1}");
    let b1 = budget(&analyst);
    assert_eq!(b1, a1["budget"], "the answer carries the budget after its debit");
    assert!((drop_by(&b0, &b1) - cost1).abs() < 1e-12, "{b0} → {b1}");
    assert!((drop_by(&b0, &b1) - 0.3).abs() < 1e-6);
    assert_eq!(b1["queries"], 1);

    // median bmi at ε = 0.25 over the two remaining summaries.
    let a2 =
        analyst.run(&["query", "--schema", SCHEMA, "--epsilon", "0.25", "median", "bmi", "--json"]).json();
    assert_eq!(
        a2["answer"]["query"]["statistic"],
        json!({"kind": "median", "field": "bmi", "candidates": null})
    );
    assert_eq!(a2["answer"]["components"][0]["mechanism"], "exponential_mechanism");
    let median = a2["answer"]["value"]["scalar"].as_f64().unwrap();
    assert!((10.0..=70.0).contains(&median), "a median candidate lies within the bounds: {median}");
    let cost2 = epsilon_of(&a2["answer"]["cost"]);
    let b2 = budget(&analyst);
    assert!((drop_by(&b1, &b2) - cost2).abs() < 1e-12, "{b1} → {b2}");
    assert!((drop_by(&b1, &b2) - 0.25).abs() < 1e-6);

    // The human-readable answer: value, mechanism, scale, interval, budget.
    let out = analyst
        .run(&[
            "query",
            "--schema",
            SCHEMA,
            "--epsilon",
            "0.1",
            "count",
            "--where",
            "diabetes=true",
            "--where",
            "sex=female,male",
        ])
        .ok();
    assert!(out.starts_with("count over schema health-basics (ε = 0.1; charged ε = 0.1)"), "{out}");
    assert!(out.contains("value:"), "{out}");
    assert!(out.contains("95% interval: ["), "{out}");
    assert!(out.contains("discrete laplace"), "{out}");
    assert!(out.contains("remaining ε 0.35"), "{out}");
    let b3 = budget(&analyst);
    assert!((drop_by(&b2, &b3) - 0.1).abs() < 1e-6);
    assert_eq!(b3["queries"], 3);

    // Overspend: refused in one line, nothing spent, nothing counted.
    let e = analyst
        .run(&["query", "--schema", SCHEMA, "--epsilon", "0.5", "mean", "bmi"])
        .fails_with("privacy budget exceeded");
    assert!(e.contains("nothing was spent"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert_eq!(budget(&analyst), b3);

    // A bad query is refused before anything is sent.
    analyst
        .run(&["query", "--schema", SCHEMA, "--epsilon", "0.1", "mean", "sex"])
        .fails_with("mean needs a numeric field; sex is a category field");
    analyst
        .run(&["query", "--schema", SCHEMA, "--epsilon", "0.1", "count", "--where", "smoker=true"])
        .fails_with("schema health-basics has no field \"smoker\"");
    analyst.run(&["query", "--schema", SCHEMA, "count"]).fails_with("--epsilon E");
    assert_eq!(
        analyst.run(&["query", "--schema", SCHEMA, "--epsilon", "0.1", "--rho", "0.1", "count"]).code,
        2
    );
    assert_eq!(budget(&analyst), b3);

    // A raw query file goes through as written.
    let qfile = root.path().join("q.json");
    std::fs::write(&qfile, r#"{"statistic":{"kind":"count"},"filters":[{"op":"is","field":"asthma","value":true}],"privacy":{"epsilon":0.05}}"#).unwrap();
    let a4 =
        analyst.run(&["query", "--schema", SCHEMA, "--query-file", qfile.to_str().unwrap(), "--json"]).json();
    assert_eq!(a4["answer"]["query"]["filters"][0]["field"], "asthma");
    assert_eq!(a4["budget"]["queries"], 4);

    // Unknown schema: one clear line for the analyst.
    analyst
        .run(&["query", "--schema", "no-such", "--epsilon", "0.1", "count"])
        .fails_with("unknown schema \"no-such\"");
    analyst.run(&["budget", "--schema", "no-such"]).fails_with("unknown schema \"no-such\"");

    // Roles: a patient profile cannot query, an analyst profile cannot fetch.
    let as_patient = User::new("medrelay-doctor", root.path(), "alpha");
    as_patient
        .run(&["query", "--schema", SCHEMA, "--epsilon", "0.1", "count"])
        .fails_with("`query` needs an analyst profile");
    analyst.run(&["shared"]).fails_with("`shared` needs a doctor profile");
    // And the server itself refuses a patient's query.
    let keys = Profile::open(&alpha.profile).unwrap().open_keys(&Passphrase::new(PASS).unwrap()).unwrap();
    let http =
        Http::new(&ServerOptions::new(url.clone())).unwrap().with_identity(Arc::new(keys.signing_key()));
    let q: Query =
        serde_json::from_value(json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 0.1}})).unwrap();
    match http.dp_query(SCHEMA, &q) {
        Err(ClientError::Server { status: 403, code, .. }) => assert_eq!(code, "wrong_role"),
        other => panic!("a patient's query: {other:?}"),
    }
    assert!(matches!(http.dp_budget(SCHEMA), Err(ClientError::Server { status: 403, .. })));

    // One row per contributing patient: Alpha's resubmission replaced its
    // row, Charlie's withdrawal removed it.
    server.stop();
    assert_eq!(stored_rows(&server, SCHEMA), 2);
}
