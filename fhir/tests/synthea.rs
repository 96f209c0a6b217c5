//! The Synthea samples in `../shared/fhir-samples/synthea/` (the SMART
//! sandbox's own exports): every file plans with zero errors, the records
//! per resource type equal a tally taken here straight from the JSON, every
//! code the shipped table marks sensitive labels its resource, the
//! "Alcoholism" diagnosis and everything that states it (its visit, the
//! claim and the explanation of benefit) carry `substance-use`, and the
//! negative controls (opioid painkillers prescribed for pain, pain scores)
//! stay unlabelled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use medrelay_crypto::SensitivityLabel;
use medrelay_fhir::sls::TABLE_CSV;
use medrelay_fhir::{plan_import, Format, ImportOptions, ImportPlan, Source, StoredEntry};
use serde_json::Value;

fn plan_of(bytes: &[u8], name: &str) -> ImportPlan {
    plan_import(&[Source { name, bytes, format: Format::Json }], &ImportOptions::default())
}

/// The table, read here from the CSV (not through the crate's matcher):
/// (FHIR system URI, code) → labels.
fn table() -> BTreeMap<(String, String), BTreeSet<String>> {
    let uri = |s: &str| match s {
        "snomed" => "http://snomed.info/sct",
        "rxnorm" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "loinc" => "http://loinc.org",
        "icd-10-cm" => "http://hl7.org/fhir/sid/icd-10-cm",
        "icd-9-cm" => "http://hl7.org/fhir/sid/icd-9-cm",
        _ => "hcpcs",
    };
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in TABLE_CSV.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.entry((uri(f[0]).to_owned(), f[1].to_owned())).or_default().insert(f[2].to_owned());
    }
    out
}

fn codings<'v>(v: &'v Value, out: &mut Vec<(&'v str, &'v str)>) {
    match v {
        Value::Object(o) => {
            if let (Some(Value::String(s)), Some(Value::String(c))) = (o.get("system"), o.get("code")) {
                out.push((s, c));
            }
            for (k, x) in o {
                if k != "meta" {
                    codings(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| codings(x, out)),
        _ => {}
    }
}

#[test]
fn every_synthea_file_plans_with_zero_errors_and_the_counts_of_an_independent_tally() {
    let Some(shared) = shared() else {
        return skip("synthea counts", "../shared/ is not present (the samples cannot be committed)");
    };
    let files = synthea_files(&shared);
    assert_eq!(files.len(), 4);
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The tally, from the JSON alone.
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let mut tally: BTreeMap<String, usize> = BTreeMap::new();
        for e in doc["entry"].as_array().unwrap() {
            *tally.entry(e["resource"]["resourceType"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let plan = plan_of(&bytes, &name);
        let f = &plan.files[0];
        assert!(f.error.is_none(), "{name}: {:?}", f.error);
        assert!(f.problems.is_empty(), "{name}: {:?}", f.problems);
        assert!(
            f.skipped.is_empty() && f.duplicates.is_empty(),
            "{name}: {:?} {:?}",
            f.skipped,
            f.duplicates
        );
        assert!(f.warnings.is_empty(), "{name}: one Patient per file: {:?}", f.warnings);
        let mut planned: BTreeMap<String, usize> = BTreeMap::new();
        for r in &plan.records {
            *planned.entry(r.resource_type.clone()).or_default() += 1;
        }
        assert_eq!(planned, tally, "{name}");
        // Bodies: the resource unchanged, the fullUrl kept, no id assigned.
        let source: BTreeMap<&str, &Value> = doc["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["fullUrl"].as_str().unwrap(), &e["resource"]))
            .collect();
        for r in &plan.records {
            let e = StoredEntry::from_body(&r.body).unwrap();
            let url = e.full_url.as_deref().unwrap();
            assert_eq!(&e.resource, source[url], "{name} {url}");
            assert!(e.assigned_id.is_none());
        }
        // Re-planning gives the same records (ids, labels, bodies).
        let again = plan_of(&bytes, &name);
        let key = |p: &ImportPlan| {
            p.records
                .iter()
                .map(|r| (r.reference(), r.category.to_string(), r.body.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&again), key(&plan));
    }
}

#[test]
fn every_sensitive_code_labels_its_resource_and_the_controls_stay_unlabelled() {
    let Some(shared) = shared() else {
        return skip("synthea labels", "../shared/ is not present (the samples cannot be committed)");
    };
    let table = table();
    let mut sensitive_seen = 0;
    for path in synthea_files(&shared) {
        let bytes = std::fs::read(&path).unwrap();
        let plan = plan_of(&bytes, "synthea.json");
        for r in &plan.records {
            let e = StoredEntry::from_body(&r.body).unwrap();
            let mut found = Vec::new();
            codings(&e.resource, &mut found);
            let labels: BTreeSet<String> = r.category.sensitivity().iter().map(|l| l.to_string()).collect();
            for (system, code) in found {
                if !matches!(
                    system,
                    "http://snomed.info/sct"
                        | "http://www.nlm.nih.gov/research/umls/rxnorm"
                        | "http://loinc.org"
                ) {
                    continue;
                }
                if let Some(want) = table.get(&(system.to_owned(), code.to_owned())) {
                    sensitive_seen += 1;
                    assert!(
                        want.is_subset(&labels),
                        "{}: {system}|{code} wants {want:?}, has {labels:?}",
                        r.reference()
                    );
                }
            }
        }
    }
    assert!(sensitive_seen >= 3, "the samples hold the Alcoholism code three times");

    // Fletcher Hyatt: the alcoholism diagnosis and what states it.
    let fletcher =
        synthea_files(&shared).into_iter().find(|p| p.to_string_lossy().contains("Fletcher")).unwrap();
    let bytes = std::fs::read(&fletcher).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let plan = plan_of(&bytes, "fletcher.json");
    let by_ref: BTreeMap<String, &medrelay_fhir::PlannedRecord> =
        plan.records.iter().map(|r| (r.reference(), r)).collect();
    let resources: Vec<&Value> = doc["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    let alcoholism = resources
        .iter()
        .find(|r| r["resourceType"] == "Condition" && r["code"]["coding"][0]["code"] == "7200002")
        .unwrap();
    let su = [SensitivityLabel::SubstanceUse];
    let cond = by_ref[&format!("Condition/{}", alcoholism["id"].as_str().unwrap())];
    assert_eq!(cond.category.sensitivity(), su);
    let enc_url = alcoholism["encounter"]["reference"].as_str().unwrap();
    let enc_id = enc_url.strip_prefix("urn:uuid:").unwrap();
    let enc = by_ref[&format!("Encounter/{enc_id}")];
    assert_eq!(enc.category.sensitivity(), su, "the visit the diagnosis was made in");
    assert!(enc.reasons[0].why.to_string().contains("refers to it as its encounter"), "{}", enc.reasons[0]);
    // The claim and EOB that list the diagnosis.
    let cond_url = format!("urn:uuid:{}", alcoholism["id"].as_str().unwrap());
    let mut billing = 0;
    for r in &resources {
        if matches!(r["resourceType"].as_str(), Some("Claim" | "ExplanationOfBenefit"))
            && r.to_string().contains(&cond_url)
        {
            let p = by_ref[&format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())];
            assert_eq!(p.category.sensitivity(), su, "{}", p.reference());
            billing += 1;
        }
    }
    assert_eq!(billing, 2);
    // Exactly those four records are labelled in Fletcher's chart.
    let labelled: Vec<String> =
        plan.records.iter().filter(|r| !r.category.sensitivity().is_empty()).map(|r| r.reference()).collect();
    assert_eq!(labelled.len(), 4, "{labelled:?}");
    let summary = plan.label_summary();
    assert_eq!(summary.len(), 1);
    assert_eq!((summary[0].label, summary[0].records), (SensitivityLabel::SubstanceUse, 4));
    assert!(summary[0].example_why.contains("SNOMED CT 7200002"), "{}", summary[0].example_why);

    // Negative controls: opioid painkillers (prescribed for pain) and pain
    // scores are not labelled.
    let mut opioids = 0;
    let mut pain_scores = 0;
    for r in &plan.records {
        let e = StoredEntry::from_body(&r.body).unwrap();
        let text = e.resource.to_string().to_ascii_lowercase();
        let opioid =
            ["oxycodone", "hydrocodone", "fentanyl", "meperidine", "tramadol", "morphine", "codeine"]
                .iter()
                .any(|o| text.contains(o));
        if r.resource_type == "MedicationRequest" && opioid {
            opioids += 1;
            assert!(r.category.sensitivity().is_empty(), "{}", r.reference());
        }
        if r.resource_type == "Observation" && e.resource["code"]["coding"][0]["code"] == "72514-3" {
            pain_scores += 1;
            assert!(r.category.sensitivity().is_empty(), "{}", r.reference());
        }
    }
    assert!(
        opioids > 0 && pain_scores > 0,
        "controls present: {opioids} opioid prescriptions, {pain_scores} pain scores"
    );
}
