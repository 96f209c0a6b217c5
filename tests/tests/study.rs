//! A private study end to end with the real binaries: two aggregator
//! processes (`medrelay-server serve --aggregator leader|helper`, each with
//! its own data directory, HPKE key and log, sharing a token file), a
//! patient CLI contributing from imported FHIR records, 200 synthetic
//! patients contributing through the client library on loopback, and an
//! analyst CLI releasing the batch and computing the statistics.
//!
//! Checked: the released mean, standard deviation and correlation of
//! systolic blood pressure and BMI contain the true values computed here
//! from the clear data, with informative widths; an out-of-range share is
//! rejected by the proof and counted; a batch below the minimum size is
//! not released; a second release is refused; neither aggregator's data
//! directory holds any summary value (raw, as text, in base64, or as f64
//! bytes); the auditor sees the study and its release with its cost.
//!
//! Flake rate: the coverage checks use intervals at confidence 1 − 10⁻⁶
//! each, so the seven of them fail together with probability below 10⁻⁵.
//! The width checks have wide margins (a typical run: systolic mean ±2.5
//! mmHg, standard deviation within [12, 19] against a bound of 30, the
//! correlation's 95 % lower end near 0.6 against 0.2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use medrelay_client::{Http, ServerOptions};
use medrelay_crypto::{domain, PatientSecretKeys, SigningKey};
use medrelay_dp::study::testing::seal_out_of_range_report;
use medrelay_dp::study::{ReportSealer, StudyDefinition, StudyEncoding, StudyResults};
use medrelay_dp::{derive_summary, Schema, Summary, SummaryDoc};
use medrelay_server::scan::Needles;
use medrelay_wire::{registration_message, RegisterRequest, Role, B64};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const STUDY: &str = "bp-bmi";
const SYNTHETIC: usize = 200;
const FIRST_WAVE: usize = 120;
const MIN_BATCH: u64 = 150;

/// The study's schema: two vital signs with bounds that fit the population
/// (the tighter the public bounds around the data, the less noise per
/// patient's possible contribution).
const VITALS: &str = r#"{
  "name": "vitals",
  "description": "Latest systolic blood pressure and BMI",
  "fields": [
    {"name": "systolic_bp", "type": "float", "min": 80, "max": 180,
     "derive": {"from": "latest_observation",
                "codes": [{"system": "http://loinc.org", "code": "8480-6"}],
                "component_of": [{"system": "http://loinc.org", "code": "85354-9"}],
                "unit": "mm[Hg]"}},
    {"name": "bmi", "type": "float", "min": 15, "max": 45,
     "derive": {"from": "latest_observation",
                "codes": [{"system": "http://loinc.org", "code": "39156-5"}],
                "unit": "kg/m2"}}
  ]
}"#;

fn hpke_key(server: &Server) -> String {
    let out = std::process::Command::new(bin("medrelay-server"))
        .args(["aggregator", "key", "--data"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["hpke_public_key"].as_str().unwrap().to_owned()
}

fn operator(server: &Server, what: &str, file: &std::path::Path) -> String {
    let out = std::process::Command::new(bin("medrelay-server"))
        .args([what, "add", "--data"])
        .arg(server.data_dir())
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A synthetic patient: registered over HTTP with a fresh signing key (PRE
/// keys play no part in studies: one public key set serves them all).
fn register(url: &str, pre: &[u8], i: usize) -> Http {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    let sk = SigningKey::from_seed(&seed);
    let vk = sk.verifying_key();
    let name = format!("synthetic-{i}");
    let signature = sk.sign(domain::SIG_REGISTRATION, &registration_message(Role::Patient, &name, &vk, pre));
    let http = Http::new(&ServerOptions::new(url)).unwrap().with_identity(Arc::new(sk));
    http.register(&RegisterRequest {
        role: Role::Patient,
        name,
        signing_key: vk,
        pre_public_keys: B64(pre.to_vec()),
        enrollment_token: None,
        signature,
    })
    .unwrap();
    http
}

fn summary(schema: &Schema, values: Value) -> Summary {
    let doc: SummaryDoc = serde_json::from_value(json!({"schema": schema.name(), "values": values})).unwrap();
    Summary::validate(schema, &doc).unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn corr(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>() / x.len() as f64 / (sd(x) * sd(y))
}

#[test]
fn two_aggregators_release_a_private_study_within_its_stated_accuracy() {
    let root = tempfile::tempdir().unwrap();
    let mut leader = Server::init();
    let mut helper = Server::init();
    let analyst_token = leader.enroll("analyst", "Analyst Ana");
    let auditor_token = leader.enroll("auditor", "Auditor Ada");

    // The schema and the study both operators install: blood pressure and
    // BMI, their correlation and a blood-pressure histogram, ρ = 20 per
    // release (a batch of ~200 needs a weak parameter for tight intervals;
    // larger batches afford a strong one: see docs/BENCHMARKS.md).
    let schema = Schema::from_json(VITALS.as_bytes()).unwrap();
    let schema_file = root.path().join("vitals.json");
    std::fs::write(&schema_file, VITALS).unwrap();
    for server in [&leader, &helper] {
        assert!(operator(server, "schema", &schema_file).contains("installed schema vitals"));
    }
    let schema_sha = hex::encode(Sha256::digest(serde_json::to_vec(&schema).unwrap()));
    let suite = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";
    let doc = json!({
        "name": STUDY,
        "description": "Systolic blood pressure and BMI",
        "schema": "vitals",
        "schema_sha256": schema_sha,
        "numeric": ["systolic_bp", "bmi"],
        "correlations": [["systolic_bp", "bmi"]],
        "histograms": [{"field": "systolic_bp", "edges": [80, 100, 120, 140, 160, 180]}],
        "value_bits": 6,
        "min_batch_size": MIN_BATCH,
        "privacy": {"rho": 20.0},
        "opens_at": 1_577_836_800u64,
        "closes_at": 4_102_444_800u64,
        "aggregators": {
            "leader": {"hpke_suite": suite, "hpke_public_key": hpke_key(&leader)},
            "helper": {"hpke_suite": suite, "hpke_public_key": hpke_key(&helper)}
        }
    });
    let file = root.path().join("study.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    assert!(operator(&leader, "study", &file).contains("as its leader"));
    assert!(operator(&helper, "study", &file).contains("as its helper"));
    let token_file = root.path().join("aggregator.token");
    let token =
        std::process::Command::new(bin("medrelay-server")).args(["aggregator", "token"]).output().unwrap();
    std::fs::write(&token_file, &token.stdout).unwrap();

    let tf = token_file.as_os_str();
    helper.start_with(&["--aggregator".as_ref(), "helper".as_ref(), "--aggregator-token-file".as_ref(), tf]);
    let helper_url = helper.url();
    // 200 patients register and log in from this one loopback address.
    leader.start_with(&[
        "--register-rate-per-source".as_ref(),
        "off".as_ref(),
        "--register-rate".as_ref(),
        "off".as_ref(),
        "--login-rate-per-source".as_ref(),
        "off".as_ref(),
        "--aggregator".as_ref(),
        "leader".as_ref(),
        "--helper-url".as_ref(),
        helper_url.as_ref(),
        "--aggregator-token-file".as_ref(),
        tf,
    ]);
    let url = leader.url();

    // ---------------------------------------------- Alpha, with the real CLI
    let alpha = User::new("medrelay-patient", root.path(), "alpha");
    alpha.run(&["init", "--server", &url, "--name", "Alpha"]).ok();
    let bundle = data("fhir-patient-alpha.json");
    alpha.run(&["import", bundle.to_str().unwrap()]).ok();
    let listed = alpha.run(&["study", "list", "--json"]).json();
    assert_eq!(listed[0]["name"], STUDY);
    let out = alpha.run(&["study", "contribute", "--study", STUDY, "--yes", "--json"]).json();
    assert_eq!(out["upload"]["accepted"], 1, "{out}");
    alpha.run(&["study", "contribute", "--study", STUDY, "--yes"]).fails_with("over_quota");
    // What Alpha's client derived (and clamped) on Alpha's machine.
    let alpha_values = &out["summary"]["doc"]["values"];
    let alpha_doc: Value = serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let derived = derive_summary(&schema, &[alpha_doc]).unwrap().to_doc(&schema).values;
    assert_eq!(derived["systolic_bp"].clone().unwrap(), alpha_values["systolic_bp"], "in bounds: unchanged");

    // -------------------------------------------- 200 synthetic patients
    let def = StudyDefinition::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
    let sealer = ReportSealer::new(StudyEncoding::new(&schema, &def).unwrap()).unwrap();
    let pre =
        PatientSecretKeys::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1)).public_keys().to_bytes();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2026);
    let now = medrelay_client::time::now().unix_seconds();
    let mut bp = vec![alpha_values["systolic_bp"].as_f64().unwrap()];
    let mut bmi = vec![alpha_values["bmi"].as_f64().unwrap()];
    let mut needles = Needles::new();
    let mut people = Vec::with_capacity(SYNTHETIC);
    for _ in 0..SYNTHETIC {
        // Correlated, with many digits so that no value can appear on disk by chance.
        let x: f64 = 125.0 + 40.0 * (rng.gen::<f64>() + rng.gen::<f64>() - 1.0);
        let y: f64 = 0.25 * x - 5.0 + rng.gen_range(-2.0..2.0) + rng.gen::<f64>() * 1e-6;
        for v in [x, y] {
            needles.text(&format!("value {v}"), v.to_string().as_bytes());
            needles.raw("value bits (LE)", &v.to_le_bytes());
            needles.raw("value bits (BE)", &v.to_be_bytes());
        }
        bp.push(x);
        bmi.push(y);
        people.push(summary(&schema, json!({"systolic_bp": x, "bmi": y})));
    }
    let upload = |http: &Http, s: &Summary, rng: &mut rand_chacha::ChaCha20Rng| {
        let report = sealer.seal(rng, s, now).unwrap().encode();
        let r = http.upload_study_reports(STUDY, vec![report]).unwrap();
        assert_eq!((r.accepted, r.refused.len()), (1, 0), "{r:?}");
    };
    for (i, s) in people.iter().enumerate().take(FIRST_WAVE) {
        upload(&register(&url, &pre, i), s, &mut rng);
    }
    // One more patient sends an out-of-range count with an honest proof:
    // accepted at upload (nothing to see there), rejected by the proof.
    let cheat = register(&url, &pre, 10_000);
    let bad = seal_out_of_range_report(&sealer, &mut rng, &people[0], now).unwrap();
    assert_eq!(cheat.upload_study_reports(STUDY, vec![bad.encode()]).unwrap().accepted, 1);

    // ------------------------------------------- the analyst, with the CLI
    let ana = User::new("medrelay-doctor", root.path(), "ana");
    ana.run(&["init", "--analyst", "--server", &url, "--enrollment-token", &analyst_token, "--name", "Ana"])
        .ok();
    assert_eq!(ana.run(&["study", "list", "--json"]).json()[0]["name"], STUDY);
    // 121 valid reports < 150: not released, nothing logged.
    ana.run(&["study", "release", "--study", STUDY]).fails_with("batch_too_small");
    let status = ana.run(&["study", "status", "--study", STUDY, "--json"]).json();
    assert_eq!(
        (status["open_batch"].as_u64(), status["ready"].as_bool()),
        (Some(0), Some(false)),
        "{status}"
    );

    for (i, s) in people.iter().enumerate().skip(FIRST_WAVE) {
        upload(&register(&url, &pre, i), s, &mut rng);
    }
    let release = ana.run(&["study", "release", "--study", STUDY, "--json"]).json();
    assert_eq!(release["batch"], 0);
    assert_eq!(release["rejected"]["invalid_proof"], 1, "{}", release["rejected"]);
    assert!(release["noise"]["cost"]["rho"].as_f64().unwrap() <= 20.0);
    ana.run(&["study", "release", "--study", STUDY, "--batch", "0"]).fails_with("already_released");

    let results: StudyResults = serde_json::from_value(
        ana.run(&["study", "results", "--study", STUDY, "--json", "--confidence", "0.999999"]).json(),
    )
    .unwrap();
    let fields = &results.overall.fields;
    let (f_bp, f_bmi) = (&fields[0], &fields[1]);
    assert_eq!((f_bp.field.as_str(), f_bmi.field.as_str()), ("systolic_bp", "bmi"));
    let n = bp.len() as f64;
    assert!(results.overall.count.contains(n), "{:?} vs {n}", results.overall.count);
    for (f, v) in [(f_bp, &bp), (f_bmi, &bmi)] {
        assert!(f.mean.contains(mean(v)), "{}: mean {:?} vs {}", f.field, f.mean, mean(v));
        assert!(f.std_dev.contains(sd(v)), "{}: std {:?} vs {}", f.field, f.std_dev, sd(v));
    }
    let r = &results.overall.correlations[0];
    let true_r = corr(&bp, &bmi);
    assert!(r.r.contains(true_r), "r {:?} vs {true_r}", r.r);
    // Informative, not vacuous, even at that confidence: the means within
    // a few units, the standard deviations far below their maxima (50 and 15).
    assert!(f_bp.mean.high - f_bp.mean.low < 12.0, "{:?}", f_bp.mean);
    assert!(f_bmi.mean.high - f_bmi.mean.low < 4.0, "{:?}", f_bmi.mean);
    assert!(f_bp.std_dev.high < 30.0 && f_bmi.std_dev.high < 10.0, "{:?} {:?}", f_bp.std_dev, f_bmi.std_dev);
    // At the usual 95 %, the strong correlation is clearly detected.
    let usual: StudyResults =
        serde_json::from_value(ana.run(&["study", "results", "--study", STUDY, "--json"]).json()).unwrap();
    let r95 = &usual.overall.correlations[0].r;
    assert!(r95.low > 0.2, "{r95:?} (true {true_r})");
    // The human-readable form shows the same.
    let text = ana.run(&["study", "results", "--study", STUDY]).ok();
    assert!(text.contains("corr(systolic_bp, bmi)") && text.contains("95.0% confidence"), "{text}");

    // ---------------------------------------- the auditor sees the release
    let ada = User::new("medrelay-auditor", root.path(), "ada");
    ada.run(&["init", "--server", &url, "--enrollment-token", &auditor_token]).ok();
    let audit = ada.run(&["audit"]).ok();
    for kind in ["study_added", "study_reports_uploaded", "study_reports_aggregated", "study_batch_released"]
    {
        assert!(audit.contains(kind), "{kind} missing from the audit: {audit}");
    }

    // --------------------- neither aggregator stored a value, in any form
    leader.stop();
    helper.stop();
    for server in [&leader, &helper] {
        let scan = needles.scan_dir(&server.data_dir()).unwrap();
        assert!(scan.files > 0 && scan.bytes > 0);
        let hits: Vec<String> =
            scan.hits.iter().map(|h| format!("{} in {}", h.label, h.path.display())).collect();
        assert!(hits.is_empty(), "summary values on an aggregator's disk: {hits:?}");
    }
}
