//! The importer on every input shape a patient may hold, and on hostile
//! files: what becomes a record, what is skipped and why, what is refused,
//! and that a refused file contributes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::SensitivityLabel;
use medrelay_fhir::{
    plan_import, FhirError, Format, IdOrigin, ImportOptions, ImportPlan, ProblemKind, SkipReason, Source,
    StoredEntry, MAX_RESOURCE_BYTES,
};
use serde_json::{json, Value};

fn plan(files: &[(&str, &[u8])], opts: &ImportOptions) -> ImportPlan {
    let sources: Vec<Source<'_>> =
        files.iter().map(|(n, b)| Source { name: n, bytes: b, format: Format::for_name(n) }).collect();
    plan_import(&sources, opts)
}

fn one(name: &str, bytes: &[u8]) -> ImportPlan {
    plan(&[(name, bytes)], &ImportOptions::default())
}

fn refs(p: &ImportPlan) -> Vec<String> {
    p.records.iter().map(|r| r.reference()).collect()
}

#[test]
fn single_resources_ndjson_and_bundles_of_every_type() {
    let p = one("obs.json", br#"{"resourceType":"Observation","id":"o1","status":"final"}"#);
    assert_eq!(refs(&p), ["Observation/o1"]);
    let nd = b"{\"resourceType\":\"Patient\",\"id\":\"p\"}\r\n\n{\"resourceType\":\"Observation\",\"id\":\"o\",\"subject\":{\"reference\":\"Patient/p\"}}\n";
    let p = one("Observation.ndjson", nd);
    assert_eq!(refs(&p), ["Patient/p", "Observation/o"]);
    assert_eq!(p.records[1].at.to_string(), "line 3");
    for ty in ["collection", "transaction", "batch", "document", "searchset", "history", "message"] {
        let b = json!({"resourceType":"Bundle","type":ty,"entry":[
            {"fullUrl":"urn:uuid:8a7b1c52-1111-4c3d-9e0f-000000000001","resource":{"resourceType":"Composition","status":"final"}},
            {"resource":{"resourceType":"OperationOutcome","issue":[]},"search":{"mode":"outcome"}},
            {"request":{"method":"GET","url":"Patient/1"}}]});
        let p = one("b.json", b.to_string().as_bytes());
        assert_eq!(refs(&p), ["Composition/8a7b1c52-1111-4c3d-9e0f-000000000001"], "{ty}");
        let skipped: Vec<String> = p.files[0].skipped.iter().map(|s| s.reason.to_string()).collect();
        assert_eq!(
            skipped,
            ["exchange infrastructure, not patient data", "entry without a resource (GET request)"]
        );
    }
    // A batch-response holding searchset Bundles: read recursively.
    let inner = |id: &str| json!({"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","id":id}}]});
    let b = json!({"resourceType":"Bundle","type":"batch-response","entry":[
        {"resource": inner("a"), "response":{"status":"200"}},
        {"resource": inner("b"), "response":{"status":"200"}},
        {"response":{"status":"404"}}]});
    let p = one("resp.json", b.to_string().as_bytes());
    assert_eq!(refs(&p), ["Observation/a", "Observation/b"]);
    assert_eq!(p.records[1].at.to_string(), "entry 1 > entry 0");
    // Conformance and terminology resources alone: skipped, not errors.
    let p = one("vs.json", br#"{"resourceType":"ValueSet","id":"v"}"#);
    assert!(p.records.is_empty() && p.files[0].problems.is_empty());
    assert_eq!(
        p.files[0].skipped[0].reason,
        SkipReason::NotPatientData(medrelay_fhir::types::NotPatientData::Terminology)
    );
}

#[test]
fn ids_are_assigned_stably_and_recorded() {
    let b = br#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:5D4B9DF1-93AE-3BC9-B680-03249990E558","resource":{"resourceType":"Organization","name":"Clinic"},"request":{"method":"POST","url":"Organization"}},
        {"fullUrl":"http://example.org/fhir/Practitioner/dr-1","resource":{"resourceType":"Practitioner"}},
        {"resource":{"resourceType":"Location","name":"Room 1"}},
        {"resource":{"resourceType":"Location","name":"Room 1"}}]}"#;
    let p = one("tx.json", b);
    assert_eq!(p.records.len(), 3, "{:?}", refs(&p));
    assert_eq!(p.records[0].id, "5d4b9df1-93ae-3bc9-b680-03249990e558");
    assert_eq!(p.records[0].assigned_id, Some(IdOrigin::FullUrl));
    assert_eq!(p.records[1].id, "dr-1");
    assert_eq!(p.records[2].assigned_id, Some(IdOrigin::Content));
    // The identical second Location is a duplicate, reported and not fatal.
    let d = &p.files[0].duplicates[0];
    assert!(d.identical && d.at.to_string() == "entry 3" && d.first_at.to_string() == "entry 2", "{d:?}");
    // The body records the assignment on the entry, and the resource got
    // only its id.
    let e = StoredEntry::from_body(&p.records[0].body).unwrap();
    assert_eq!(e.assigned_id, Some(IdOrigin::FullUrl));
    assert_eq!(
        e.resource,
        json!({"resourceType":"Organization","name":"Clinic","id":"5d4b9df1-93ae-3bc9-b680-03249990e558"})
    );
    assert_eq!(e.full_url.as_deref(), Some("urn:uuid:5D4B9DF1-93AE-3BC9-B680-03249990E558"));
    // Same file again: same ids.
    let again = one("tx.json", b);
    assert_eq!(refs(&again), refs(&p));
}

#[test]
fn duplicates_several_patients_and_bad_entries_are_reported() {
    let b = json!({"resourceType":"Bundle","type":"collection","entry":[
        {"resource":{"resourceType":"Patient","id":"p1"}},
        {"resource":{"resourceType":"Patient","id":"p2"}},
        {"resource":{"resourceType":"Observation","id":"o","status":"final"}},
        {"resource":{"resourceType":"Observation","id":"o","status":"amended"}},
        {"resource":{"resourceType":"Observation","id":"../etc"}},
        {"resource":{"resourceType":"Invoicee","id":"x"}},
        {"resource":{"id":"x"}},
        {"resource":{"resourceType":"Observation","id":"big","note":[{"text":"x".repeat(MAX_RESOURCE_BYTES)}]}},
        "not an entry",
        {"fullUrl":7,"resource":{"resourceType":"Observation","id":"u"}},
        {"resource":{"resourceType":"Observation","id":"ok"}}]});
    let bytes = b.to_string();
    let p = one("mixed.json", bytes.as_bytes());
    let f = &p.files[0];
    assert!(f.error.is_none());
    assert_eq!(refs(&p), ["Patient/p1", "Patient/p2", "Observation/o", "Observation/ok"]);
    assert!(f.warnings[0].contains("Patient/p1, Patient/p2"), "{:?}", f.warnings);
    assert!(!f.duplicates[0].identical, "the second Observation/o differs");
    let problems: Vec<String> = f.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(
        problems[0].starts_with("entry 4: Observation has an invalid \"id\" \"../etc\""),
        "{}",
        problems[0]
    );
    assert!(problems.iter().any(|p| p.starts_with("entry 5: unknown resourceType \"Invoicee\"")));
    assert!(problems.iter().any(|p| p.starts_with("entry 6: not a FHIR resource")));
    assert!(problems
        .iter()
        .any(|p| p.starts_with("entry 7: Observation is ") && p.contains("more than a record may hold")));
    assert!(problems.iter().any(|p| p == "entry 8: malformed Bundle entry: not a JSON object"));
    assert!(problems.iter().any(|p| p == "entry 9: malformed Bundle entry: fullUrl is not a string"));
    // --strict: the file is refused whole, and contributes nothing.
    let strict = ImportOptions { strict: true, ..ImportOptions::default() };
    let good = br#"{"resourceType":"Observation","id":"g"}"#;
    let p = plan(&[("mixed.json", bytes.as_bytes()), ("good.json", good)], &strict);
    match &p.files[0].error {
        Some(FhirError::Strict { count: 6, first }) => assert_eq!(first.at.to_string(), "entry 4"),
        other => panic!("{other:?}"),
    }
    assert_eq!(refs(&p), ["Observation/g"]);
}

#[test]
fn hostile_files_are_refused_whole_naming_the_entry() {
    let entry = |inner: &str| {
        format!(
            r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"Patient","id":"p"}}}},{{"resource":{inner}}}]}}"#
        )
    };
    // Duplicate keys.
    let dup = entry(r#"{"resourceType":"Observation","id":"a","status":"final","status":"cancelled"}"#);
    // Deep nesting.
    let deep = entry(&format!(
        r#"{{"resourceType":"Observation","id":"a","x":{}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    ));
    // Invalid UTF-8.
    let mut bad_utf8 =
        entry(r#"{"resourceType":"Observation","id":"a","note":[{"text":"XX"}]}"#).into_bytes();
    let at = bad_utf8.windows(2).position(|w| w == b"XX").unwrap();
    bad_utf8[at] = 0xff;
    // A million entries.
    let mut flood = String::from(r#"{"resourceType":"Bundle","entry":["#);
    flood.push_str(&vec![r#"{"resource":{"resourceType":"Basic","id":"b"}}"#; 1_000_000].join(","));
    flood.push_str("]}");
    // Bundles nested beyond the limit.
    let mut nested = r#"{"resourceType":"Observation","id":"deep"}"#.to_owned();
    for _ in 0..5 {
        nested = format!(r#"{{"resourceType":"Bundle","entry":[{{"resource":{nested}}}]}}"#);
    }
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("dup.json", dup.into_bytes(), "entry 1: not acceptable JSON: duplicate key \"status\""),
        ("deep.json", deep.into_bytes(), "entry 1: not acceptable JSON: nested deeper than 64 levels"),
        ("utf8.json", bad_utf8, "entry 1: not acceptable JSON: invalid unicode code point"),
        (
            "flood.json",
            flood.into_bytes(),
            "entry 50000: not acceptable JSON: more than 50000 Bundle entries",
        ),
        (
            "nested.json",
            nested.into_bytes(),
            "entry 0 > entry 0 > entry 0 > entry 0: Bundles nested more than 4 deep",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = plan(
            &[(name, &bytes), ("good.json", br#"{"resourceType":"Observation","id":"g"}"#)],
            &ImportOptions::default(),
        );
        let e = p.files[0].error.as_ref().unwrap_or_else(|| panic!("{name} was not refused"));
        assert!(e.to_string().contains(want), "{name}: {e}");
        // Nothing from the refused file; the good one is unaffected.
        assert_eq!(refs(&p), ["Observation/g"], "{name}");
    }
    // A huge string in an NDJSON line: that line is refused (too large),
    // the others import.
    let mut nd = br#"{"resourceType":"Observation","id":"a"}"#.to_vec();
    nd.extend_from_slice(
        format!(
            "\n{{\"resourceType\":\"Observation\",\"id\":\"b\",\"x\":\"{}\"}}\n",
            "y".repeat(2 * MAX_RESOURCE_BYTES)
        )
        .as_bytes(),
    );
    nd.extend_from_slice(b"{\"resourceType\":\n");
    let p = one("x.ndjson", &nd);
    assert_eq!(refs(&p), ["Observation/a"]);
    let problems: Vec<String> = p.files[0].problems.iter().map(ToString::to_string).collect();
    assert!(problems[0].starts_with("line 2: Observation is "), "{problems:?}");
    assert!(problems[1].starts_with("line 3: not acceptable JSON"), "{problems:?}");
    assert!(matches!(p.files[0].problems[1].kind, ProblemKind::Json(_)));
}

#[test]
fn labels_propagate_across_files_and_can_be_added() {
    let cond = br#"{"resourceType":"Condition","id":"hiv","code":{"coding":[{"system":"http://snomed.info/sct","code":"111880001"}]}}"#;
    let med =
        br#"{"resourceType":"MedicationRequest","id":"m","reasonReference":[{"reference":"Condition/hiv"}]}"#;
    let p = plan(&[("c.json", cond), ("m.json", med)], &ImportOptions::default());
    assert!(
        p.records.iter().all(|r| r.category.sensitivity() == [SensitivityLabel::SexualHealth]),
        "{:?}",
        p.records
    );
    let opts = ImportOptions { extra_labels: vec![SensitivityLabel::Genetics], ..ImportOptions::default() };
    let p = plan(&[("m.json", med)], &opts);
    assert_eq!(p.records[0].category.sensitivity(), [SensitivityLabel::Genetics]);
    assert_eq!(p.records[0].reasons[0].why.to_string(), "added on import (--label)");
    let s = p.label_summary();
    assert_eq!((s[0].records, s[0].direct), (1, 1));
}

#[test]
fn the_bodies_are_the_resources_unchanged() {
    let v: Value = json!({"resourceType":"Observation","id":"x","valueQuantity":{"value":1.50,"unit":"%"},
        "note":[{"text":"naïve — ünïcödé"}]});
    let p = one("o.json", v.to_string().as_bytes());
    let e = StoredEntry::from_body(&p.records[0].body).unwrap();
    assert_eq!(e.resource, v);
    assert_eq!(e.full_url, None);
}
