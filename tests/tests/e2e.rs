//! End to end with the real binaries: a patient imports a FHIR bundle and
//! grants a doctor laboratory results only; the doctor gets exactly those
//! and is denied a Condition and a mental-health-labelled lab result;
//! revocation ends access; the auditor's `verify` passes, and fails loudly
//! after a stored log entry is altered on disk. Bad input (malformed FHIR,
//! wrong passphrase, unknown doctor, unreachable server, usage errors) gives
//! one clear line and the documented exit code, and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use medrelay_client::fhir::fhir_record_id;
use medrelay_crypto::PrincipalId;
use medrelay_server::scan::Needles;
use serde_json::Value;

fn id_of(who: &User) -> PrincipalId {
    who.run(&["whoami", "--json"]).json()["id"].as_str().unwrap().parse().unwrap()
}

fn records(p: &User) -> Vec<Value> {
    p.run(&["records", "--json"]).json().as_array().unwrap().clone()
}

/// A laboratory Observation labelled mental health (a synthetic lithium level).
const LITHIUM: &str = r#"{"resourceType":"Observation","id":"alpha-lithium","status":"final",
 "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"14334-7","display":"Lithium [Moles/volume] in Serum or Plasma"}]},
 "subject":{"reference":"Patient/synthetic-alpha"},"valueQuantity":{"value":0.7,"unit":"mmol/L"}}"#;

#[test]
fn scoped_grant_fetch_revoke_audit_and_tamper_detection() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    let doctor_token = server.enroll("doctor", "Dr Example");
    let auditor_token = server.enroll("auditor", "Auditor Example");
    server.start();
    let url = server.url();

    let patient = User::new("medrelay-patient", root.path(), "patient");
    let doctor = User::new("medrelay-doctor", root.path(), "doctor");
    let auditor = User::new("medrelay-auditor", root.path(), "auditor");
    patient.run(&["init", "--server", &url, "--name", "Alpha"]).ok();
    doctor.run(&["init", "--server", &url, "--name", "Dr Example", "--enrollment-token", &doctor_token]).ok();
    auditor.run(&["init", "--server", &url, "--enrollment-token", &auditor_token]).ok();
    let pid = id_of(&patient);
    let did = id_of(&doctor);

    // Import the bundle and the labelled lab result; a re-run uploads nothing.
    let lithium = root.path().join("lithium.json");
    std::fs::write(&lithium, LITHIUM).unwrap();
    let bundle = data("fhir-patient-alpha.json");
    let out = patient.run(&["import", bundle.to_str().unwrap(), lithium.to_str().unwrap()]).ok();
    assert!(out.contains("11 uploaded, 0 already present"), "{out}");
    assert!(out.contains("1 uploaded, 0 already present"), "{out}");
    let out = patient.run(&["import", bundle.to_str().unwrap()]).ok();
    assert!(out.contains("0 uploaded, 11 already present"), "{out}");
    assert_eq!(records(&patient).len(), 12);
    // Any other file: uploaded once, recognised on a second upload.
    let scan = root.path().join("scan.pdf");
    std::fs::write(&scan, b"%PDF-1.4 synthetic scan, not a real document").unwrap();
    let out = patient.run(&["upload", scan.to_str().unwrap(), "--category", "imaging"]).ok();
    assert!(out.contains("as record"), "{out}");
    let out = patient.run(&["upload", scan.to_str().unwrap(), "--category", "imaging"]).ok();
    assert!(out.contains("already uploaded"), "{out}");
    assert_eq!(records(&patient).len(), 13);

    // No plaintext reaches the server's disk (regular files; the admin
    // socket is not data).
    let mut needles = Needles::new();
    for canary in ["Hemoglobin A1c", "alpha-hba1c", "Lithium"] {
        needles.text(canary, canary.as_bytes());
    }
    let scan = needles.scan_dir(&server.data_dir()).unwrap();
    assert!(scan.files > 0 && scan.hits.is_empty(), "{scan:?}");

    // The patient reads their own record back.
    let hba1c = fhir_record_id(&pid, "Observation", "alpha-hba1c");
    let own: Value = serde_json::from_str(&patient.run(&["read", &hba1c.to_string()]).ok()).unwrap();
    assert_eq!(own["id"], "alpha-hba1c");

    // Grant laboratory results only.
    let g = patient
        .run(&[
            "grant",
            &did.to_string(),
            "--scope",
            "Observation?category=laboratory",
            "--expires",
            "30d",
            "--purpose",
            "treatment",
            "--yes",
            "--json",
        ])
        .json();
    let grant_id = g["grant_id"].as_str().unwrap().to_owned();

    // The doctor sees exactly the three unlabelled lab results.
    let shared = doctor.run(&["shared", "--json"]).json();
    let shared = shared.as_array().unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0]["patient"], pid.to_string());
    let got: BTreeSet<String> = shared[0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = ["alpha-hba1c", "alpha-glucose", "alpha-ldl"]
        .iter()
        .map(|id| fhir_record_id(&pid, "Observation", id).to_string())
        .collect();
    assert_eq!(got, want);

    // fetch-all writes exactly those, identical to the source resources.
    let out_dir = root.path().join("fetched");
    doctor.run(&["fetch-all", "--patient", &pid.to_string(), "--out", out_dir.to_str().unwrap()]).ok();
    let source: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3);
    for f in &files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let original = source["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["id"] == v["id"])
            .unwrap();
        assert_eq!(&v, original);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    // Denied: a Condition (out of scope) and the mental-health lab result.
    let condition = fhir_record_id(&pid, "Condition", "alpha-diabetes");
    doctor.run(&["fetch", &condition.to_string()]).fails_with("out_of_scope");
    let depression = fhir_record_id(&pid, "Condition", "alpha-depression");
    doctor.run(&["fetch", &depression.to_string()]).fails_with("out_of_scope");
    let labelled = fhir_record_id(&pid, "Observation", "alpha-lithium");
    doctor.run(&["fetch", &labelled.to_string()]).fails_with("sensitive_excluded");
    let one = doctor.run(&["fetch", &hba1c.to_string()]).ok();
    assert!(one.contains("\"alpha-hba1c\""), "{one}");
    let file = root.path().join("hba1c.json");
    doctor.run(&["fetch", &hba1c.to_string(), "-o", file.to_str().unwrap()]).ok();
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["id"], "alpha-hba1c");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The patient's history shows the accesses and the denials, verified.
    let h = patient.run(&["history", "--json"]).json();
    let items = h["items"].as_array().unwrap();
    let served = items.iter().filter(|i| i["kind"] == "reencryption_served").count();
    assert_eq!(served, 5);
    let denied: BTreeSet<&str> = items
        .iter()
        .filter(|i| i["kind"] == "access_denied")
        .map(|i| i["detail"].as_str().unwrap())
        .collect();
    assert_eq!(denied, BTreeSet::from(["denied: out_of_scope", "denied: sensitive_excluded"]));
    // The doctor's own history: their accesses and refusals, verified too.
    let dh = doctor.run(&["history", "--json"]).json();
    let kinds: Vec<&str> =
        dh["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "reencryption_served").count(), 5, "{dh}");
    assert_eq!(kinds.iter().filter(|k| **k == "access_denied").count(), 3, "{dh}");
    assert!(!kinds.contains(&"record_published"), "the patient's records are not the doctor's events");

    // The auditor: the log verifies and the listings come from it.
    let out = auditor.run(&["verify"]).ok();
    assert!(out.starts_with("ok: "), "{out}");
    // The full audit replays every entry: all five accesses matched the grant.
    let report = auditor.run(&["audit", "--full", "--json"]).json();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["counts"]["reencryption_served"], 5, "{report}");
    assert_eq!(report["active_grants"], 1, "{report}");
    let out = auditor.run(&["audit", "--full"]).ok();
    assert!(out.contains("ok: every access matched a valid grant"), "{out}");
    let grants = auditor.run(&["grants", "--patient", &pid.to_string(), "--json"]).json();
    assert_eq!(grants.as_array().unwrap().len(), 1);
    assert_eq!(grants[0]["signature_valid"], true);
    let accesses = auditor.run(&["accesses", "--doctor", &did.to_string(), "--json"]).json();
    assert_eq!(accesses.as_array().unwrap().iter().filter(|a| a["outcome"] == "served").count(), 5);

    // Revoke: the doctor is denied, and shares nothing.
    patient.run(&["revoke", &grant_id]).ok();
    doctor.run(&["fetch", &hba1c.to_string()]).fails_with("revoked");
    assert!(doctor.run(&["shared", "--json"]).json().as_array().unwrap().is_empty());
    let grants = patient.run(&["grants", "--json"]).json();
    assert_eq!(grants[0]["revoked"], true);
    assert!(auditor.run(&["verify"]).ok().starts_with("ok: "));

    // Tamper: stop the server, flip a byte of a stored log entry, restart.
    server.stop();
    {
        let db = sled::Config::new().path(server.data_dir().join("db")).open().unwrap();
        let key = [&b"l/"[..], &5u64.to_be_bytes()].concat();
        let mut value = db.get(&key).unwrap().expect("log entry 5").to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        db.insert(&key, value).unwrap();
        db.flush().unwrap();
    }
    server.start();
    auditor.run(&["verify"]).fails_with("LOG INTEGRITY FAILURE");
    auditor.run(&["audit", "--full"]).fails_with("LOG INTEGRITY FAILURE");
    // Entry 5 is one of the patient's records being published: the
    // patient's verified history notices too.
    patient.run(&["history"]).fails_with("LOG INTEGRITY FAILURE: log entry 5");
}

#[test]
fn bad_input_gives_one_clear_line_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    server.start();
    let url = server.url();
    let patient = User::new("medrelay-patient", root.path(), "patient");
    patient.run(&["init", "--server", &url]).ok();
    // Malformed FHIR: each file gets its own error line; nothing uploaded.
    let dir = root.path();
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "this is not JSON").unwrap();
    let wrong_type = dir.join("wrong-type.json");
    std::fs::write(&wrong_type, r#"{"resourceType":"Invoice","id":"i1"}"#).unwrap();
    let missing_id = dir.join("missing-id.json");
    std::fs::write(
        &missing_id,
        r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Observation","id":"ok-1","status":"final"}},
            {"resource":{"resourceType":"Observation","status":"final"}}]}"#,
    )
    .unwrap();
    let out = patient.run(&[
        "import",
        not_json.to_str().unwrap(),
        wrong_type.to_str().unwrap(),
        missing_id.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not-json.json: not JSON"), "{}", out.stderr);
    assert!(
        out.stderr.contains("wrong-type.json: file: unsupported resourceType \"Invoice\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("missing-id.json: entry 1: Observation has no valid \"id\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    assert!(records(&patient).is_empty(), "a malformed file uploaded something");
    // A good file next to a bad one is imported; the bad one is not.
    let out = patient.run(&[
        "import",
        data("fhir-patient-charlie.json").to_str().unwrap(),
        not_json.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("7 uploaded"), "{out:?}");
    assert_eq!(records(&patient).len(), 7);
    // A bundle larger than one upload batch (64 records) goes up in several.
    let entries: Vec<String> = (0..70)
        .map(|i| {
            format!(
                r#"{{"resource":{{"resourceType":"Observation","id":"big-{i}","status":"final",
                "category":[{{"coding":[{{"code":"vital-signs"}}]}}],"valueQuantity":{{"value":{i}}}}}}}"#
            )
        })
        .collect();
    let big = dir.join("big.json");
    std::fs::write(
        &big,
        format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#, entries.join(",")),
    )
    .unwrap();
    let out = patient.run(&["import", big.to_str().unwrap()]).ok();
    assert!(out.contains("70 uploaded, 0 already present"), "{out}");
    assert_eq!(records(&patient).len(), 77);

    // Wrong passphrase.
    let before = std::fs::read(patient.profile.join("keys.mrkf")).unwrap();
    patient.run_with(&["records"], "not the passphrase").fails_with("wrong passphrase");
    assert_eq!(std::fs::read(patient.profile.join("keys.mrkf")).unwrap(), before);

    // Unknown doctor id.
    let nobody = "ab".repeat(32);
    patient.run(&["grant", &nobody, "--scope", "Observation", "--yes"]).fails_with("unknown doctor id");
    assert!(patient.run(&["grants", "--json"]).json().as_array().unwrap().is_empty());

    // Unreachable server.
    let closed = format!("http://127.0.0.1:{}", free_port());
    patient.run(&["--server", &closed, "records"]).fails_with(&format!("cannot reach server at {closed}"));

    // Usage errors exit 2; a bad scope or duration is refused before anything is sent.
    assert_eq!(patient.run(&["grant"]).code, 2);
    assert_eq!(patient.run(&["frobnicate"]).code, 2);
    assert_eq!(patient.run(&["grant", &nobody, "--scope", "observation"]).code, 2);
    patient
        .run(&["grant", &nobody, "--scope", "Observation", "--expires", "forever", "--yes"])
        .fails_with("invalid duration");
    // A second init of the same profile is refused.
    patient.run(&["init", "--server", &url]).fails_with("already initialized");
    drop(server);
}
