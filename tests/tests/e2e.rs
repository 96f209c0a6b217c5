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
use medrelay_crypto::PrincipalId;
use medrelay_fhir::fhir_record_id;
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
    let out = patient.run(&["import", "--dry-run", bundle.to_str().unwrap(), lithium.to_str().unwrap()]).ok();
    assert!(out.contains("16 resources: 16 records to import"), "{out}");
    assert!(out.contains("labelled mental-health: 4 records, e.g. Condition/alpha-depression (SNOMED CT 370143000 is in C2S Mental Health Disorders - SNOMEDCT"), "{out}");
    assert!(out.contains("  Encounter/alpha-visit-2  mental-health: Condition/alpha-depression refers to it as its encounter"), "{out}");
    assert!(out.contains("dry run: nothing was encrypted or uploaded (17 records would be"), "{out}");
    assert!(records(&patient).is_empty(), "a dry run uploads nothing");
    let out = patient.run(&["import", bundle.to_str().unwrap(), lithium.to_str().unwrap()]).ok();
    assert!(out.contains("16 resources: 16 uploaded, 0 already present"), "{out}");
    assert!(out.contains("1 resources: 1 uploaded, 0 already present"), "{out}");
    let out = patient.run(&["import", bundle.to_str().unwrap()]).ok();
    assert!(out.contains("0 uploaded, 16 already present"), "{out}");
    assert_eq!(records(&patient).len(), 17);
    // Any other file: uploaded once, recognised on a second upload.
    let scan = root.path().join("scan.pdf");
    std::fs::write(&scan, b"%PDF-1.4 synthetic scan, not a real document").unwrap();
    let out = patient.run(&["upload", scan.to_str().unwrap(), "--category", "imaging"]).ok();
    assert!(out.contains("as record"), "{out}");
    let out = patient.run(&["upload", scan.to_str().unwrap(), "--category", "imaging"]).ok();
    assert!(out.contains("already uploaded"), "{out}");
    assert_eq!(records(&patient).len(), 18);

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

    // A scope naming a type no record can have is refused before anything
    // is signed (a typo would otherwise grant nothing, silently).
    patient
        .run(&["grant", &did.to_string(), "--scope", "Observaton", "--yes"])
        .fails_with("\"Observaton\", which is not a FHIR R4 resource type");
    assert!(patient.run(&["grants", "--json"]).json().as_array().unwrap().is_empty());

    // Grant laboratory results only. Before signing, the client shows every
    // key class the grant exposes (here one) and what a colluding server and
    // doctor could read (review finding F6).
    let out = patient.run(&[
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
    ]);
    let review = out.stderr.clone();
    assert!(
        review.contains("Key classes this grant exposes (1):\n  laboratory  laboratory results\n"),
        "{review}"
    );
    assert!(review.contains("could read every record of these classes"), "{review}");
    assert!(!review.contains("general") && !review.contains("imaging"), "{review}");
    let g = out.json();
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

    // fetch-all writes one Bundle of exactly those, each entry identical
    // to the source entry (fullUrl and resource).
    let out_dir = root.path().join("fetched");
    let out =
        doctor.run(&["fetch-all", "--patient", &pid.to_string(), "--out", out_dir.to_str().unwrap()]).ok();
    assert!(out.contains("a FHIR R4 Bundle of 3 resources"), "{out}");
    // Need to know: the doctor is told nothing of the 15 records the grant
    // does not cover, not even their number.
    assert!(!out.contains("out_of_scope") && !out.contains("sensitive_excluded"), "{out}");
    // Their Patient, Encounter and Practitioner were not shared.
    assert!(out.contains("6 references point at records not in the Bundle (not shared with you)"), "{out}");
    let source: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files, [out_dir.join("bundle.json")]);
    let chart: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(
        (chart["resourceType"].as_str(), chart["type"].as_str()),
        (Some("Bundle"), Some("collection"))
    );
    let entries = chart["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        let original =
            source["entry"].as_array().unwrap().iter().find(|s| s["fullUrl"] == e["fullUrl"]).unwrap();
        assert_eq!(e["resource"], original["resource"]);
        assert!(e.get("extension").is_none(), "no id was assigned to these");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // NDJSON, Bulk Data style.
    let nd_dir = root.path().join("fetched-ndjson");
    doctor
        .run(&[
            "fetch-all",
            "--patient",
            &pid.to_string(),
            "--out",
            nd_dir.to_str().unwrap(),
            "--format",
            "ndjson",
        ])
        .ok();
    let nd = std::fs::read_to_string(nd_dir.join("Observation.ndjson")).unwrap();
    assert_eq!(nd.lines().count(), 3);

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
    assert_eq!(served, 8);
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
    // Every access the patient sees served was this doctor's.
    assert_eq!(kinds.iter().filter(|k| **k == "reencryption_served").count(), served, "{dh}");
    assert_eq!(kinds.iter().filter(|k| **k == "access_denied").count(), 3, "{dh}");
    assert!(!kinds.contains(&"record_published"), "the patient's records are not the doctor's events");

    // The auditor: the log verifies and the listings come from it.
    let out = auditor.run(&["verify"]).ok();
    assert!(out.starts_with("ok: "), "{out}");
    // The full audit replays every entry: all eight accesses matched the grant.
    let report = auditor.run(&["audit", "--full", "--json"]).json();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["counts"]["reencryption_served"], 8, "{report}");
    assert_eq!(report["active_grants"], 1, "{report}");
    let out = auditor.run(&["audit", "--full"]).ok();
    assert!(out.contains("ok: every access matched a valid grant"), "{out}");
    let grants = auditor.run(&["grants", "--patient", &pid.to_string(), "--json"]).json();
    assert_eq!(grants.as_array().unwrap().len(), 1);
    assert_eq!(grants[0]["signature_valid"], true);
    let accesses = auditor.run(&["accesses", "--doctor", &did.to_string(), "--json"]).json();
    assert_eq!(accesses.as_array().unwrap().iter().filter(|a| a["outcome"] == "served").count(), 8);

    // Revoke: the doctor is denied, and shares nothing.
    patient.run(&["revoke", &grant_id]).ok();
    doctor.run(&["fetch", &hba1c.to_string()]).fails_with("revoked");
    assert!(doctor.run(&["shared", "--json"]).json().as_array().unwrap().is_empty());
    let grants = patient.run(&["grants", "--json"]).json();
    assert_eq!(grants[0]["revoked"], true);
    assert!(auditor.run(&["verify"]).ok().starts_with("ok: "));

    // Tamper: stop the server, flip a byte of a stored log entry, restart.
    server.stop();
    tamper_log_entry(&server.data_dir(), 5);
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
    // Malformed FHIR: a file that is not JSON, or hostile (a duplicate key
    // in entry 2), is refused whole with the entry named: nothing of it is
    // uploaded. A bad entry (an unknown type, an invalid id) is reported
    // with its index and skipped; --strict refuses its file instead.
    let dir = root.path();
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "this is not JSON").unwrap();
    let hostile = dir.join("hostile.json");
    std::fs::write(
        &hostile,
        r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Observation","id":"h-0","status":"final"}},
            {"resource":{"resourceType":"Observation","id":"h-1","status":"final"}},
            {"resource":{"resourceType":"Observation","id":"h-2","status":"final","status":"cancelled"}}]}"#,
    )
    .unwrap();
    let unknown = dir.join("unknown-type.json");
    std::fs::write(&unknown, r#"{"resourceType":"Invoicee","id":"i1"}"#).unwrap();
    let bad_id = dir.join("bad-id.json");
    std::fs::write(
        &bad_id,
        r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Observation","id":"ok-1","status":"final"}},
            {"resource":{"resourceType":"Observation","id":"../x","status":"final"}}]}"#,
    )
    .unwrap();
    let strict = patient.run(&["import", "--strict", bad_id.to_str().unwrap()]);
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(
        strict.stderr.contains("bad-id.json: refused whole (strict): 1 bad entry; the first: entry 1: Observation has an invalid \"id\" \"../x\""),
        "{}",
        strict.stderr
    );
    assert!(records(&patient).is_empty(), "--strict uploaded part of a bad file");
    let out = patient.run(&[
        "import",
        not_json.to_str().unwrap(),
        hostile.to_str().unwrap(),
        unknown.to_str().unwrap(),
        bad_id.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not-json.json: file: not acceptable JSON"), "{}", out.stderr);
    assert!(
        out.stderr.contains("hostile.json: entry 2: not acceptable JSON: duplicate key \"status\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("bad entry: ")
            && out.stderr.contains("unknown-type.json: file: unknown resourceType \"Invoicee\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bad-id.json: entry 1: Observation has an invalid \"id\""), "{}", out.stderr);
    assert!(out.stderr.contains("error: 2 of 4 files refused, 2 bad entries skipped"), "{}", out.stderr);
    assert!(
        out.stdout.contains("bad-id.json: 2 resources: 1 uploaded, 0 already present, 1 bad entries"),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("panicked"));
    let ids: BTreeSet<String> =
        records(&patient).iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    let pid = id_of(&patient);
    assert_eq!(
        ids,
        BTreeSet::from([fhir_record_id(&pid, "Observation", "ok-1").to_string()]),
        "only the good entry"
    );
    // A good file next to a bad one is imported; the bad one is not.
    let out = patient.run(&[
        "import",
        data("fhir-patient-charlie.json").to_str().unwrap(),
        not_json.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("7 uploaded"), "{out:?}");
    assert_eq!(records(&patient).len(), 8);
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
    assert_eq!(records(&patient).len(), 78);

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
