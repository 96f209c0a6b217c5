//! The three synthetic sample bundles under `tests/data/` parse into the
//! records, categories, labels and key classes their README describes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use medrelay_client::fhir::{fhir_record_id, parse_file};
use medrelay_crypto::{KeyClass, PrincipalId, SensitivityLabel};

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn classes(name: &str) -> BTreeMap<String, (KeyClass, Vec<SensitivityLabel>)> {
    parse_file(&sample(name))
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                format!("{}/{}", r.resource_type, r.id),
                (r.category.key_class(), r.category.sensitivity().to_vec()),
            )
        })
        .collect()
}

#[test]
fn alpha_bundle() {
    let c = classes("fhir-patient-alpha.json");
    assert_eq!(c.len(), 11);
    assert_eq!(c["Observation/alpha-hba1c"], (KeyClass::Laboratory, vec![]));
    assert_eq!(c["Observation/alpha-bp-1"], (KeyClass::General, vec![]));
    assert_eq!(c["Condition/alpha-diabetes"], (KeyClass::General, vec![]));
    // Labelled PSY in meta.security and an ICD-10 F32 code.
    assert_eq!(
        c["Condition/alpha-depression"],
        (KeyClass::MentalHealth, vec![SensitivityLabel::MentalHealth])
    );
    assert_eq!(c["MedicationRequest/alpha-metformin"].0, KeyClass::Medications);
    assert_eq!(c["Patient/synthetic-alpha"].0, KeyClass::General);
    let labs = c.values().filter(|(k, _)| *k == KeyClass::Laboratory).count();
    assert_eq!(labs, 3);
}

#[test]
fn bravo_and_charlie_bundles() {
    let b = classes("fhir-patient-bravo.json");
    assert_eq!(b.len(), 8);
    // F10.20 (alcohol dependence) is substance use by its ICD-10 code alone.
    assert_eq!(b["Condition/bravo-alcohol"], (KeyClass::SubstanceUse, vec![SensitivityLabel::SubstanceUse]));
    assert_eq!(b["Condition/bravo-asthma"], (KeyClass::General, vec![]));
    let c = classes("fhir-patient-charlie.json");
    assert_eq!(c.len(), 7);
    assert!(c.values().all(|(_, labels)| labels.is_empty()));
}

#[test]
fn record_bodies_are_the_resources_and_ids_are_stable() {
    let owner = PrincipalId::from_bytes([9; 32]);
    let a = parse_file(&sample("fhir-patient-alpha.json")).unwrap();
    let again = parse_file(&sample("fhir-patient-alpha.json")).unwrap();
    assert_eq!(a, again);
    for r in &a {
        let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
        assert_eq!(v["resourceType"], r.resource_type.as_str());
        assert_eq!(v["id"], r.id.as_str());
    }
    let ids: std::collections::BTreeSet<_> =
        a.iter().map(|r| fhir_record_id(&owner, &r.resource_type, &r.id)).collect();
    assert_eq!(ids.len(), a.len());
}
