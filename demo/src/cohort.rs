//! The synthetic cohort of the DP study: generated patients' FHIR bundles.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// A synthetic patient's bundle: a Patient, a blood-pressure panel, a BMI
/// and some of diabetes / hypertension / asthma. Values are drawn from
/// `rng`; nothing describes a real person.
pub(crate) fn cohort_bundle(rng: &mut StdRng, i: usize) -> String {
    let id = format!("cohort-{:02}", i + 1);
    let sex = if rng.gen_bool(0.5) { "female" } else { "male" };
    let birth_year = rng.gen_range(1940..2005);
    let hypertension = rng.gen_bool(0.35);
    let systolic = if hypertension { rng.gen_range(135..175) } else { rng.gen_range(105..138) };
    let bmi = (rng.gen_range(190..380) as f64) / 10.0;
    let diabetes = rng.gen_bool(0.25);
    let asthma = rng.gen_bool(0.1);
    let subject = json!({ "reference": format!("Patient/{id}") });
    let loinc = |code: &str, display: &str| json!({ "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] });
    let mut entries = vec![
        json!({ "resourceType": "Patient", "id": id,
            "meta": { "tag": [{ "system": "https://medrelay.example/tags", "code": "synthetic" }] },
            "name": [{ "family": format!("Synthetic-Cohort-{:02}", i + 1) }],
            "gender": sex, "birthDate": format!("{birth_year}-06-15") }),
        json!({ "resourceType": "Observation", "id": format!("{id}-bp"), "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
            "code": loinc("85354-9", "Blood pressure panel"), "subject": subject,
            "effectiveDateTime": "2026-10-01T09:00:00Z",
            "component": [
                { "code": loinc("8480-6", "Systolic blood pressure"),
                  "valueQuantity": { "value": systolic, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                { "code": loinc("8462-4", "Diastolic blood pressure"),
                  "valueQuantity": { "value": systolic * 2 / 3, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }] }),
        json!({ "resourceType": "Observation", "id": format!("{id}-bmi"), "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
            "code": loinc("39156-5", "Body mass index (BMI) [Ratio]"), "subject": subject,
            "effectiveDateTime": "2026-10-01T09:00:00Z",
            "valueQuantity": { "value": bmi, "unit": "kg/m2", "system": "http://unitsofmeasure.org", "code": "kg/m2" } }),
    ];
    let conditions = [
        (diabetes, "diabetes", "E11.9", "Type 2 diabetes mellitus without complications"),
        (hypertension, "hypertension", "I10", "Essential (primary) hypertension"),
        (asthma, "asthma", "J45.909", "Unspecified asthma, uncomplicated"),
    ];
    for (present, slug, code, display) in conditions {
        if present {
            entries.push(json!({ "resourceType": "Condition", "id": format!("{id}-{slug}"),
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display }] },
                "subject": subject }));
        }
    }
    let entry: Vec<Value> = entries.into_iter().map(|r| json!({ "resource": r })).collect();
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entry }).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn cohort_bundles_parse_as_fhir_and_derive_every_field() {
        let schema =
            medrelay_dp::Schema::from_json(include_bytes!("../../dp/schemas/health-basics.json")).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..20 {
            let bundle = cohort_bundle(&mut rng, i);
            let source = medrelay_fhir::Source {
                name: "bundle.json",
                bytes: bundle.as_bytes(),
                format: medrelay_fhir::Format::Json,
            };
            let plan = medrelay_fhir::plan_import(&[source], &medrelay_fhir::ImportOptions::default());
            assert!(plan.records.len() >= 3 && plan.problems() == 0, "{bundle}");
            let values: Vec<Value> = plan
                .records
                .iter()
                .map(|r| medrelay_fhir::StoredEntry::from_body(&r.body).unwrap().resource)
                .collect();
            let summary = medrelay_dp::derive_summary(&schema, &values).unwrap();
            let doc = summary.to_doc(&schema);
            for field in ["birth_year", "sex", "systolic_bp", "bmi", "diabetes", "hypertension", "asthma"] {
                assert!(
                    doc.values.get(field).is_some_and(Option::is_some),
                    "{field} not derived from {bundle}"
                );
            }
        }
    }
}
