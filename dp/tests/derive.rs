#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Deriving a summary from FHIR R4 resources.

use medrelay_dp::{derive_summary, DeriveError, FieldValue, Schema};
use serde_json::{json, Value};

fn bp_panel(date: &str, systolic: f64) -> Value {
    json!({"resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "effectiveDateTime": date,
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": systolic, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "code": "mm[Hg]"}}
    ]})
}

fn systolic(date: &str, value: f64, status: &str) -> Value {
    json!({"resourceType": "Observation", "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "code": "mm[Hg]"}})
}

fn condition(system: &str, code: &str, verification: Option<&str>) -> Value {
    let mut c = json!({"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}});
    if let Some(v) = verification {
        c["verificationStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": v}]});
    }
    c
}

fn get<'a>(schema: &Schema, s: &'a medrelay_dp::Summary, name: &str) -> Option<&'a FieldValue> {
    s.value(schema.field(name).unwrap().0)
}

#[test]
fn derives_latest_observations_and_condition_flags() {
    let schema = Schema::health_basics();
    let resources = vec![
        json!({"resourceType": "Patient", "birthDate": "1958-11-30", "gender": "male"}),
        systolic("2023-01-05T10:00:00Z", 150.0, "final"),
        bp_panel("2024-06-01T09:30:00+02:00", 128.0),
        // later, but entered in error: ignored
        systolic("2025-01-01", 300.0, "entered-in-error"),
        // the panel is at 07:30Z; this one, at 08:00Z, is the latest valid reading
        systolic("2024-06-01T08:00:00Z", 131.0, "final"),
        // wrong unit: ignored
        json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "effectiveDateTime": "2030-01-01", "valueQuantity": {"value": 17.0, "code": "kPa"}}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]},
                "effectivePeriod": {"start": "2022-03-01"}, "valueQuantity": {"value": 31.2, "code": "kg/m2"}})},
            {"resource": condition("http://hl7.org/fhir/sid/icd-10-cm", "E11.65", None)},
        ]}),
        condition("http://snomed.info/sct", "38341003", Some("confirmed")),
        condition("http://snomed.info/sct", "195967001", Some("refuted")),
    ];
    let s = derive_summary(&schema, &resources).unwrap();
    assert_eq!(get(&schema, &s, "birth_year"), Some(&FieldValue::Integer(1958)));
    assert_eq!(get(&schema, &s, "sex"), Some(&FieldValue::Category("male".into())));
    assert_eq!(get(&schema, &s, "systolic_bp"), Some(&FieldValue::Float(131.0)));
    assert_eq!(get(&schema, &s, "bmi"), Some(&FieldValue::Float(31.2)));
    assert_eq!(get(&schema, &s, "diabetes"), Some(&FieldValue::Bool(true)));
    assert_eq!(get(&schema, &s, "hypertension"), Some(&FieldValue::Bool(true)));
    assert_eq!(get(&schema, &s, "asthma"), Some(&FieldValue::Bool(false)), "refuted conditions do not count");
}

#[test]
fn panel_component_wins_when_it_is_latest_and_missing_sources_stay_unknown() {
    let schema = Schema::health_basics();
    let resources = vec![systolic("2023-01-05", 150.0, "final"), bp_panel("2024-02-01T12:00:00Z", 122.0)];
    let s = derive_summary(&schema, &resources).unwrap();
    assert_eq!(get(&schema, &s, "systolic_bp"), Some(&FieldValue::Float(122.0)));
    assert_eq!(get(&schema, &s, "birth_year"), None);
    assert_eq!(get(&schema, &s, "bmi"), None);
    assert_eq!(get(&schema, &s, "diabetes"), Some(&FieldValue::Bool(false)));
    // The derived summary is a valid summary of the schema.
    let doc = s.to_doc(&schema);
    assert_eq!(medrelay_dp::Summary::validate(&schema, &doc).unwrap(), s);
}

#[test]
fn bad_resources_are_typed_errors() {
    let schema = Schema::health_basics();
    assert_eq!(
        derive_summary(&schema, &[json!({"no": "type"})]).unwrap_err(),
        DeriveError::NotAResource { index: 0 }
    );
    assert_eq!(
        derive_summary(&schema, &[json!({"resourceType": "Patient", "birthDate": "30/11/1958"})])
            .unwrap_err(),
        DeriveError::BadBirthDate
    );
    let two = [
        json!({"resourceType": "Patient", "birthDate": "1958"}),
        json!({"resourceType": "Patient", "birthDate": "1960-01-01"}),
    ];
    assert_eq!(
        derive_summary(&schema, &two).unwrap_err(),
        DeriveError::ConflictingPatients { what: "birthDate" }
    );
}
