#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Schema and summary validation.

mod common;

use medrelay_dp::{DpError, FieldType, Schema, SchemaError, Summary, SummaryError, MAX_SCHEMA_BYTES};
use serde_json::json;

fn schema_err(doc: serde_json::Value) -> SchemaError {
    match Schema::from_json(doc.to_string().as_bytes()) {
        Err(DpError::Schema(e)) => e,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

fn one_field(field: serde_json::Value) -> serde_json::Value {
    json!({"name": "s", "fields": [field]})
}

#[test]
fn default_schema_is_valid_and_round_trips() {
    let s = Schema::from_json(medrelay_dp::HEALTH_BASICS_JSON.as_bytes()).unwrap();
    assert_eq!(s, Schema::health_basics());
    assert_eq!(s.name(), "health-basics");
    let names: Vec<_> = s.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["birth_year", "sex", "systolic_bp", "bmi", "diabetes", "hypertension", "asthma"]);
    assert_eq!(s.field("bmi").unwrap().1.field_type, FieldType::Float { min: 10.0, max: 70.0 });
    let again = Schema::from_json(s.to_json().unwrap().as_bytes()).unwrap();
    assert_eq!(again, s);
}

#[test]
fn inverted_and_non_finite_bounds_are_refused() {
    let e = schema_err(one_field(json!({"name": "x", "type": "float", "min": 5, "max": 1,
        "derive": {"from": "latest_observation", "codes": [{"system": "http://loinc.org", "code": "1"}]}})));
    assert_eq!(e, SchemaError::InvertedBounds { field: "x".into(), min: 5.0, max: 1.0 });
    let e = schema_err(one_field(json!({"name": "x", "type": "float", "min": 1, "max": 1,
        "derive": {"from": "latest_observation", "codes": [{"system": "http://loinc.org", "code": "1"}]}})));
    assert!(matches!(e, SchemaError::InvertedBounds { .. }));
    let e = schema_err(one_field(json!({"name": "y", "type": "integer", "min": 0.5, "max": 3,
        "derive": {"from": "patient_birth_year"}})));
    assert_eq!(e, SchemaError::NonIntegerBounds { field: "y".into() });
}

#[test]
fn duplicate_names_empty_categories_and_bad_names_are_refused() {
    let f = json!({"name": "a", "type": "bool", "derive": {"from": "condition_present",
        "codes": [{"system": "http://snomed.info/sct", "code": "1"}]}});
    let e = schema_err(json!({"name": "s", "fields": [f.clone(), f]}));
    assert_eq!(e, SchemaError::DuplicateField { name: "a".into() });
    let e = schema_err(one_field(json!({"name": "g", "type": "category", "values": [],
        "derive": {"from": "patient_gender"}})));
    assert_eq!(e, SchemaError::EmptyCategories { field: "g".into() });
    let e = schema_err(one_field(json!({"name": "g", "type": "category", "values": ["female", "male"],
        "derive": {"from": "patient_gender"}})));
    assert_eq!(e, SchemaError::MissingGender { field: "g".into(), missing: "other" });
    let e = schema_err(one_field(
        json!({"name": "Bad Name", "type": "bool", "derive": {"from": "condition_present",
        "codes": [{"system": "x", "code": "1"}]}}),
    ));
    assert!(matches!(e, SchemaError::InvalidName { .. }));
    assert_eq!(schema_err(json!({"name": "s", "fields": []})), SchemaError::NoFields);
}

#[test]
fn derivation_must_fit_the_field_type() {
    let e = schema_err(one_field(json!({"name": "d", "type": "float", "min": 0, "max": 1,
        "derive": {"from": "condition_present", "codes": [{"system": "x", "code": "1"}]}})));
    assert!(
        matches!(e, SchemaError::DerivationType { derivation: "condition_present", field_type: "float", .. }),
        "{e:?}"
    );
    let e = schema_err(one_field(json!({"name": "d", "type": "bool",
        "derive": {"from": "condition_present", "codes": []}})));
    assert!(matches!(e, SchemaError::DerivationCodes { .. }));
}

#[test]
fn unknown_keys_wrong_types_and_oversize_are_malformed() {
    for doc in [
        json!({"name": "s", "fields": [{"name": "a", "type": "bool", "bounds": 3,
            "derive": {"from": "condition_present", "codes": [{"system": "x", "code": "1"}]}}]}),
        json!({"name": "s", "fields": [{"name": "a", "type": "decimal", "derive": {"from": "patient_birth_year"}}]}),
        json!({"name": "s", "fields": [{"name": "a", "type": "integer", "min": "0", "max": 3, "derive": {"from": "patient_birth_year"}}]}),
        json!({"name": "s", "extra": 1, "fields": []}),
    ] {
        assert!(
            matches!(
                Schema::from_json(doc.to_string().as_bytes()),
                Err(DpError::Malformed { what: "schema", .. })
            ),
            "{doc}"
        );
    }
    let big = vec![b' '; MAX_SCHEMA_BYTES + 1];
    assert!(matches!(Schema::from_json(&big), Err(DpError::TooLarge { .. })));
    assert!(matches!(Schema::from_json(b"{\"name\":"), Err(DpError::Malformed { .. })));
}

fn summary_err(values: serde_json::Value) -> SummaryError {
    let s = Schema::health_basics();
    let bytes = json!({"schema": "health-basics", "values": values}).to_string();
    match Summary::from_json(&s, bytes.as_bytes()) {
        Err(DpError::Summary(e)) => e,
        other => panic!("expected a summary error, got {other:?}"),
    }
}

#[test]
fn summaries_with_wrong_types_or_unknown_fields_are_refused() {
    assert_eq!(
        summary_err(json!({"bmi": "27"})),
        SummaryError::WrongType { field: "bmi".into(), expected: "a number" }
    );
    assert_eq!(
        summary_err(json!({"birth_year": 1980.5})),
        SummaryError::WrongType { field: "birth_year".into(), expected: "a whole number" }
    );
    assert_eq!(
        summary_err(json!({"diabetes": 1})),
        SummaryError::WrongType { field: "diabetes".into(), expected: "true or false" }
    );
    assert_eq!(summary_err(json!({"sex": "f"})), SummaryError::UnknownCategory { field: "sex".into() });
    assert_eq!(summary_err(json!({"weight": 80})), SummaryError::UnknownField { field: "weight".into() });
    let s = Schema::health_basics();
    let other = json!({"schema": "other", "values": {}}).to_string();
    assert!(matches!(
        Summary::from_json(&s, other.as_bytes()),
        Err(DpError::Summary(SummaryError::WrongSchema { .. }))
    ));
}

#[test]
fn summary_round_trips_and_keeps_out_of_bounds_values() {
    let s = Schema::health_basics();
    let bytes = json!({"schema": "health-basics", "values": {"bmi": 95.5, "birth_year": 1975, "asthma": null, "sex": "male"}})
        .to_string();
    let summary = Summary::from_json(&s, bytes.as_bytes()).unwrap();
    let (bmi, _) = s.field("bmi").unwrap();
    assert_eq!(summary.value(bmi).and_then(|v| v.as_f64()), Some(95.5), "clamping happens at query time");
    let doc = summary.to_doc(&s);
    assert_eq!(Summary::validate(&s, &doc).unwrap(), summary);
}
