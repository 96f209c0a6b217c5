//! Real-world charts end to end, with the real binaries: the four Synthea
//! exports in `../shared/fhir-samples/synthea/` import with zero errors,
//! exactly the resources an independent tally of each file finds are
//! stored, a re-import uploads nothing, Bulk Data NDJSON of the same chart
//! maps to the same records; a doctor granted `Condition,Encounter,
//! Observation` on the 1,111-entry chart gets one FHIR Bundle holding
//! exactly the unlabelled in-scope resources, which an independent FHIR
//! library (Python `fhir.resources`, R4 models) loads and whose references
//! resolve except to what was withheld; the "Alcoholism" diagnosis and the
//! visit it was made in are refused (`sensitive_excluded`) and served under
//! `sensitive:substance-use`.
//!
//! `../shared/` cannot be committed (third-party samples): without it these
//! tests say loudly that they were skipped; in CI (`CI=true`) they fail.
//! The Python venv is made once under `target/test-cache/`; without Python
//! or network it is skipped loudly too, except in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use medrelay_crypto::PrincipalId;
use medrelay_fhir::fhir_record_id;
use serde_json::Value;

/// The R4 (4.0.1) models: fhir.resources 6.x (7.x models R5/R4B), on
/// pydantic 1.
const PIP_PINS: [&str; 2] = ["fhir.resources==6.4.0", "pydantic==1.10.21"];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why} (CI=true: this test may not be skipped)");
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn synthea(name_part: &str) -> Option<PathBuf> {
    let dir = workspace().join("../shared/fhir-samples/synthea");
    std::fs::read_dir(dir).ok()?.map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains(name_part))
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap().to_path_buf()
}

/// A venv with the pinned `fhir.resources`, made once (a `.ready` marker
/// is written last, so a half-made venv is remade).
fn fhir_venv() -> Result<PathBuf, String> {
    let dir = target_dir().join("test-cache").join("fhir-resources-venv");
    let python = dir.join("bin/python");
    if dir.join(".ready").is_file() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PIP_PINS))?;
    std::fs::write(dir.join(".ready"), PIP_PINS.join("\n")).map_err(|e| e.to_string())?;
    Ok(python)
}

/// (resourceType, id, fullUrl, resource) of every entry of a Synthea file.
fn entries(path: &Path) -> Vec<(String, String, String, Value)> {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            (
                r["resourceType"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
                e["fullUrl"].as_str().unwrap().to_owned(),
                r.clone(),
            )
        })
        .collect()
}

fn id_of(who: &User) -> PrincipalId {
    who.run(&["whoami", "--json"]).json()["id"].as_str().unwrap().parse().unwrap()
}

fn stored_ids(p: &User) -> BTreeSet<String> {
    p.run(&["records", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every `reference` string in a resource.
fn references(v: &Value) -> Vec<String> {
    match v {
        Value::Object(o) => {
            let mut out: Vec<String> =
                o.get("reference").and_then(Value::as_str).map(str::to_owned).into_iter().collect();
            out.extend(o.values().flat_map(references));
            out
        }
        Value::Array(a) => a.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// The record ids a file's entries map to, from the JSON alone.
fn tally_ids(pid: &PrincipalId, e: &[(String, String, String, Value)]) -> BTreeSet<String> {
    e.iter().map(|(t, id, _, _)| fhir_record_id(pid, t, id).to_string()).collect()
}

#[test]
fn a_synthea_chart_reaches_the_doctor_as_one_bundle_without_its_substance_use_records() {
    let Some(fletcher) = synthea("Fletcher_Hyatt") else {
        return skip(
            "synthea chart e2e",
            "../shared/fhir-samples/ is not present (the samples cannot be committed)",
        );
    };
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    let token = server.enroll("doctor", "Dr Example");
    server.start();
    let url = server.url();
    let patient = User::new("medrelay-patient", root.path(), "fletcher");
    let doctor = User::new("medrelay-doctor", root.path(), "doctor");
    patient.run(&["init", "--server", &url, "--name", "Fletcher"]).ok();
    doctor.run(&["init", "--server", &url, "--name", "Dr Example", "--enrollment-token", &token]).ok();
    let pid = id_of(&patient);
    let did = id_of(&doctor);
    let source = entries(&fletcher);
    assert_eq!(source.len(), 1111);
    let file = fletcher.to_str().unwrap();

    // What would be labelled, and why, before anything leaves.
    let dry = patient.run(&["import", "--dry-run", file]).ok();
    assert!(dry.contains("1111 resources: 1111 records to import"), "{dry}");
    assert!(
        dry.contains("labelled substance-use: 4 records, e.g. Condition/e352f1cf-51c1-4a68-9b62-f8682135d87d (SNOMED CT 7200002 is in C2S Alcohol Use Disorders - SNOMEDCT"),
        "{dry}"
    );
    assert!(dry.contains("; 1 through references"), "{dry}");
    assert!(stored_ids(&patient).is_empty());

    let t = Instant::now();
    let out = patient.run(&["import", file]).ok();
    let import_secs = t.elapsed().as_secs_f64();
    assert!(out.contains("1111 resources: 1111 uploaded, 0 already present"), "{out}");
    assert_eq!(
        stored_ids(&patient),
        tally_ids(&pid, &source),
        "stored = the file's resources, by type and id"
    );
    let out = patient.run(&["import", file]).ok();
    assert!(out.contains("0 uploaded, 1111 already present"), "{out}");

    // The alcoholism diagnosis and its visit, found here from the JSON.
    let (_, cond_id, _, cond) = source
        .iter()
        .find(|(t, _, _, r)| t == "Condition" && r["code"]["coding"][0]["code"] == "7200002")
        .unwrap();
    let enc_id =
        cond["encounter"]["reference"].as_str().unwrap().strip_prefix("urn:uuid:").unwrap().to_owned();
    let labelled =
        BTreeSet::from([("Condition".to_owned(), cond_id.clone()), ("Encounter".to_owned(), enc_id.clone())]);

    let grant = |scope: &str| {
        patient
            .run(&["grant", &did.to_string(), "--scope", scope, "--expires", "1d", "--yes", "--json"])
            .json()["grant_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = grant("Condition,Encounter,Observation");
    let out_dir = root.path().join("chart");
    let t = Instant::now();
    let report = doctor
        .run(&["fetch-all", "--patient", &pid.to_string(), "--out", out_dir.to_str().unwrap(), "--json"])
        .json();
    let fetch_secs = t.elapsed().as_secs_f64();
    let chart: Value = serde_json::from_slice(&std::fs::read(out_dir.join("bundle.json")).unwrap()).unwrap();
    let in_scope = ["Condition", "Encounter", "Observation"];
    let want: BTreeSet<(String, String)> = source
        .iter()
        .filter(|(t, id, _, _)| {
            in_scope.contains(&t.as_str()) && !labelled.contains(&(t.clone(), id.clone()))
        })
        .map(|(t, id, _, _)| (t.clone(), id.clone()))
        .collect();
    let got: BTreeSet<(String, String)> = chart["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            (r["resourceType"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(got, want, "exactly the unlabelled in-scope resources");
    assert_eq!(report["resources"], want.len());
    // Need to know: the server listed only what the grant covers, so the
    // doctor learns nothing of the other 1111 - n records, not even a count.
    assert_eq!(report["withheld"], serde_json::json!({}), "{report}");
    // Each entry: the source entry's fullUrl and resource, unchanged.
    let by_url: BTreeMap<&str, &Value> = source.iter().map(|(_, _, u, r)| (u.as_str(), r)).collect();
    for e in chart["entry"].as_array().unwrap() {
        assert_eq!(&&e["resource"], by_url.get(e["fullUrl"].as_str().unwrap()).unwrap());
    }

    // An independent FHIR library loads the Bundle; every reference
    // resolves, except those to records the doctor was not given.
    match fhir_venv() {
        Err(why) => skip("the fhir.resources check of the doctor's Bundle", &why),
        Ok(python) => {
            let out = Command::new(python)
                .arg(workspace().join("tests/tools/check_bundle.py"))
                .arg(out_dir.join("bundle.json"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let check: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(check["fhir_version"], "4.0.1");
            assert_eq!(check["entries"], want.len());
            let withheld_urls: BTreeSet<&str> = source
                .iter()
                .filter(|(t, id, _, _)| !want.contains(&(t.clone(), id.clone())))
                .map(|(_, _, u, _)| u.as_str())
                .collect();
            let unresolved = check["unresolved"].as_array().unwrap();
            for u in unresolved {
                let r = u["reference"].as_str().unwrap();
                assert!(withheld_urls.contains(r), "{r} does not resolve and is not a withheld record");
            }
            // Counted here from the source: references to what the Bundle holds.
            let kept_urls: BTreeSet<&str> = source
                .iter()
                .filter(|(t, id, _, _)| want.contains(&(t.clone(), id.clone())))
                .map(|(_, _, u, _)| u.as_str())
                .collect();
            let mut to_kept = 0u64;
            for (t, id, _, r) in &source {
                if want.contains(&(t.clone(), id.clone())) {
                    to_kept += references(r).iter().filter(|x| kept_urls.contains(x.as_str())).count() as u64;
                }
            }
            let resolved = check["references"].as_u64().unwrap() - unresolved.len() as u64;
            assert_eq!(resolved, to_kept, "every reference to a record in the Bundle resolves");
            assert!(resolved > 300, "{resolved}");
            eprintln!(
                "fhir.resources (R4 4.0.1) loaded the Bundle: {} references, {resolved} resolve in it",
                check["references"]
            );
        }
    }

    // The labelled diagnosis and visit: refused under the plain grant…
    let cond_rec = fhir_record_id(&pid, "Condition", cond_id).to_string();
    let enc_rec = fhir_record_id(&pid, "Encounter", &enc_id).to_string();
    doctor.run(&["fetch", &cond_rec]).fails_with("sensitive_excluded");
    doctor.run(&["fetch", &enc_rec]).fails_with("sensitive_excluded");
    // …served under one that names the label.
    patient.run(&["revoke", &first]).ok();
    grant("Condition,Encounter,sensitive:substance-use");
    let served: Value = serde_json::from_str(&doctor.run(&["fetch", &cond_rec]).ok()).unwrap();
    assert_eq!(&served, cond);
    let served: Value = serde_json::from_str(&doctor.run(&["fetch", &enc_rec]).ok()).unwrap();
    assert_eq!(served["id"], enc_id.as_str());
    eprintln!(
        "1,111-entry chart: import {import_secs:.1} s ({:.0} resources/s), fetch-all of {} resources {fetch_secs:.1} s; \
         whole test {:.1} s (debug build)",
        1111.0 / import_secs,
        want.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_other_synthea_exports_and_bulk_data_ndjson_import_with_zero_errors() {
    let (Some(luigi), Some(giovanni), Some(lourdes)) =
        (synthea("Luigi_Wiegand"), synthea("Giovanni_Balistreri"), synthea("Lourdes_Alcantar"))
    else {
        return skip(
            "synthea imports",
            "../shared/fhir-samples/ is not present (the samples cannot be committed)",
        );
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    server.start();
    let url = server.url();
    for (name, path) in [("giovanni", &giovanni), ("lourdes", &lourdes)] {
        let p = User::new("medrelay-patient", root.path(), name);
        p.run(&["init", "--server", &url, "--name", name]).ok();
        let source = entries(path);
        let out = p.run(&["import", path.to_str().unwrap()]).ok();
        assert!(
            out.contains(&format!("{n} resources: {n} uploaded, 0 already present", n = source.len())),
            "{out}"
        );
        assert!(!out.contains("bad entries") && !out.contains("skipped"), "{out}");
        assert_eq!(stored_ids(&p), tally_ids(&id_of(&p), &source), "{name}");
    }
    // Luigi's chart as FHIR Bulk Data: a folder of one NDJSON file per
    // resource type, as `$export` writes it. Then the transaction Bundle of
    // the same chart: the same records, so nothing new is uploaded.
    let source = entries(&luigi);
    let export = root.path().join("luigi-export");
    std::fs::create_dir_all(&export).unwrap();
    let mut by_type: BTreeMap<&str, String> = BTreeMap::new();
    for (t, _, _, r) in &source {
        let f = by_type.entry(t).or_default();
        f.push_str(&r.to_string());
        f.push('\n');
    }
    for (t, lines) in &by_type {
        std::fs::write(export.join(format!("{t}.ndjson")), lines).unwrap();
    }
    let p = User::new("medrelay-patient", root.path(), "luigi");
    p.run(&["init", "--server", &url, "--name", "Luigi"]).ok();
    let out = p.run(&["import", export.to_str().unwrap()]).ok();
    assert_eq!(out.matches("uploaded, 0 already present").count(), by_type.len(), "{out}");
    assert_eq!(stored_ids(&p), tally_ids(&id_of(&p), &source));
    let out = p.run(&["import", luigi.to_str().unwrap()]).ok();
    assert!(out.contains(&format!("0 uploaded, {} already present", source.len())), "{out}");
}

#[test]
fn an_interrupted_import_resumes_without_duplicates() {
    // The library's import, with the server stopped after the first round
    // of 64 records is stored; run again against the restarted server, it
    // uploads only the rest.
    use medrelay_client::{ClientError, Connect, ImportRequest, Passphrase, Patient, ServerOptions};
    use medrelay_server::LocalServer;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    medrelay_server::init(&data).unwrap();
    let pass = Passphrase::new(PASS).unwrap();
    let server = LocalServer::start(&data, "test/log", 2).unwrap();
    let profile = root.path().join("patient");
    let patient = Patient::init(&profile, &ServerOptions::new(server.url()), "Interrupted", &pass).unwrap();
    let entries: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"fullUrl":"urn:uuid:00000000-0000-4000-8000-{i:012}","resource":{{"resourceType":"Observation","status":"final","valueQuantity":{{"value":{i}}}}}}}"#))
        .collect();
    let file = root.path().join("export.json");
    std::fs::write(
        &file,
        format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#, entries.join(",")),
    )
    .unwrap();
    let request = ImportRequest { paths: vec![file], ..ImportRequest::default() };
    let mut running = Some(server);
    let err = patient
        .import(&request, &mut |p| {
            if p.done >= 64 {
                if let Some(s) = running.take() {
                    s.stop().unwrap();
                }
            }
        })
        .unwrap_err();
    match &err {
        ClientError::Interrupted { uploaded: 64, total: 150, .. } => {}
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("run the same import again to resume"), "{err}");
    let server = LocalServer::start(&data, "test/log", 2).unwrap();
    let patient =
        Patient::open(&profile, &Connect { server: Some(server.url()), ca_cert: None }, &pass).unwrap();
    assert_eq!(patient.records().unwrap().len(), 64);
    let report = patient.import(&request, &mut |_| ()).unwrap();
    assert_eq!((report.uploaded(), report.already_present()), (86, 64));
    let rows = patient.records().unwrap();
    assert_eq!(rows.len(), 150);
    assert!(rows.iter().all(|r| r.source.as_deref().is_some_and(|s| s.contains("#Observation/"))));
    server.stop().unwrap();
}
