//! The synthetic bundles under `tests/data/` (written for medrelay's tests
//! and demo; they describe no real person) plan into the records,
//! categories, labels and key classes their README describes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use medrelay_crypto::{KeyClass, PrincipalId, SensitivityLabel};
use medrelay_fhir::export::{collection_bundle, unresolved_references};
use medrelay_fhir::{
    fhir_record_id, plan_import, Format, IdOrigin, ImportOptions, ImportPlan, Source, StoredEntry,
};

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn plan(name: &str) -> ImportPlan {
    let bytes = sample(name);
    plan_import(&[Source { name, bytes: &bytes, format: Format::Json }], &ImportOptions::default())
}

fn classes(name: &str) -> BTreeMap<String, (KeyClass, Vec<SensitivityLabel>)> {
    let p = plan(name);
    assert!(p.files[0].error.is_none() && p.files[0].problems.is_empty(), "{name}: {:?}", p.files[0]);
    p.records
        .into_iter()
        .map(|r| (r.reference(), (r.category.key_class(), r.category.sensitivity().to_vec())))
        .collect()
}

#[test]
fn alpha_is_a_transaction_export_with_a_labelled_snomed_diagnosis() {
    let c = classes("fhir-patient-alpha.json");
    assert_eq!(c.len(), 16);
    assert_eq!(c["Observation/alpha-hba1c"], (KeyClass::Laboratory, vec![]));
    assert_eq!(c["Observation/alpha-bp-1"], (KeyClass::General, vec![]));
    assert_eq!(c["Condition/alpha-diabetes"], (KeyClass::General, vec![]));
    let mh = (KeyClass::MentalHealth, vec![SensitivityLabel::MentalHealth]);
    // SNOMED CT 370143000, major depressive disorder: labelled by its code;
    // the visit it was diagnosed in and the claim billing it, through
    // their references.
    assert_eq!(c["Condition/alpha-depression"], mh);
    assert_eq!(c["Encounter/alpha-visit-2"], mh);
    assert_eq!(c["Claim/alpha-claim-2"], mh);
    assert_eq!(c["Encounter/alpha-visit-1"], (KeyClass::General, vec![]));
    assert_eq!(c["MedicationRequest/alpha-metformin"].0, KeyClass::Medications);
    assert_eq!(c["Patient/synthetic-alpha"].0, KeyClass::General);
    // Organization and Practitioner have no id: assigned from the urn:uuid.
    assert!(c.contains_key("Organization/a1a1a1a1-0000-4000-8000-000000000001"));
    assert!(c.contains_key("Practitioner/a1a1a1a1-0000-4000-8000-000000000002"));
    let p = plan("fhir-patient-alpha.json");
    let org = p.records.iter().find(|r| r.resource_type == "Organization").unwrap();
    assert_eq!(org.assigned_id, Some(IdOrigin::FullUrl));
    let labs = c.values().filter(|(k, _)| *k == KeyClass::Laboratory).count();
    assert_eq!(labs, 3);
    // Every urn:uuid reference resolves in the Bundle a doctor would get.
    let entries: Vec<StoredEntry> =
        p.records.iter().map(|r| StoredEntry::from_body(&r.body).unwrap()).collect();
    let bundle = collection_bundle(&entries, "b", "2026-01-01T00:00:00Z");
    assert_eq!(unresolved_references(&bundle), []);
}

#[test]
fn bravo_and_charlie_bundles() {
    let b = classes("fhir-patient-bravo.json");
    assert_eq!(b.len(), 8);
    // F10.20 (alcohol dependence) is substance use by its ICD-10-CM code.
    assert_eq!(b["Condition/bravo-alcohol"], (KeyClass::SubstanceUse, vec![SensitivityLabel::SubstanceUse]));
    assert_eq!(b["Condition/bravo-asthma"], (KeyClass::General, vec![]));
    let c = classes("fhir-patient-charlie.json");
    assert_eq!(c.len(), 7);
    assert!(c.values().all(|(_, labels)| labels.is_empty()));
}

#[test]
fn record_bodies_hold_the_resources_and_ids_are_stable() {
    let owner = PrincipalId::from_bytes([9; 32]);
    let a = plan("fhir-patient-alpha.json");
    let again = plan("fhir-patient-alpha.json");
    let ids = |p: &ImportPlan| p.records.iter().map(|r| r.record_id(&owner)).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&again));
    let source: serde_json::Value = serde_json::from_slice(&sample("fhir-patient-alpha.json")).unwrap();
    for (r, e) in a.records.iter().zip(source["entry"].as_array().unwrap()) {
        let stored = StoredEntry::from_body(&r.body).unwrap();
        assert_eq!(stored.full_url.as_deref(), e["fullUrl"].as_str());
        let mut original = e["resource"].clone();
        if stored.assigned_id.is_some() {
            original["id"] = serde_json::json!(r.id);
        }
        assert_eq!(stored.resource, original);
        assert_eq!(r.record_id(&owner), fhir_record_id(&owner, &r.resource_type, &r.id));
    }
    let distinct: std::collections::BTreeSet<_> = ids(&a).into_iter().collect();
    assert_eq!(distinct.len(), a.records.len());
}
