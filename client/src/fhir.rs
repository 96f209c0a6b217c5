//! FHIR R4 import: a JSON file holding a Bundle (each entry becomes one
//! record) or a single resource, turned into records with a
//! [`RecordCategory`] the policy understands.
//!
//! # Category
//!
//! The category is the resource's `resourceType` plus the `code` of every
//! coding in its `category` (an array of CodeableConcepts, or one, as
//! `ImagingStudy`-like resources carry none). Codes that do not fit the
//! policy's code syntax (`[A-Za-z0-9._-]`, at most 64 bytes) are dropped,
//! which can only narrow what a grant reaches (scopes fail closed).
//!
//! # Sensitivity labels
//!
//! A record gets a [`SensitivityLabel`] when any of these holds:
//!
//! | label | `meta.security` codes (HL7 v3 ActCode) | ICD-10 codes in `code` (systems containing `icd-10`) |
//! | --- | --- | --- |
//! | mental-health | `PSY`, `PSYTHPN`, `MH`, `BH` | `F00`–`F09`, `F20`–`F99` (mental and behavioural disorders) |
//! | substance-use | `ETH`, `SUD`, `OPIOIDUD`, `ALCOHOLUD` | `F10`–`F19` (disorders due to psychoactive substance use) |
//! | sexual-health | `SEX`, `HIV`, `STD`, `SDV` | `B20`–`B24`, `Z21` (HIV), `A50`–`A64` (sexually transmitted infections) |
//! | genetics | `GDIS`, `GENE` | — |
//!
//! A labelled record is encrypted under its label's key class and is
//! excluded from every grant that does not name the label.
//!
//! # Record ids
//!
//! A record's id is derived from the owner, the resource type and the
//! resource id ([`fhir_record_id`]), so re-importing the same file maps to
//! the same ids and the patient client skips records already on the server.
//!
//! # Threat model
//!
//! Files are the patient's own but may be malformed or hostile (huge,
//! deeply nested). A file is read with a size limit, parsed in full before
//! anything is encrypted, and any bad entry rejects the whole file with an
//! error naming the entry; nothing from that file is uploaded.

use std::collections::BTreeSet;

use medrelay_crypto::{PrincipalId, RecordCategory, RecordId, SensitivityLabel, MAX_CODE_LEN};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain;

/// Largest FHIR file imported.
pub const MAX_FHIR_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most entries in one Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;
/// The media type of a FHIR record.
pub const FHIR_MEDIA_TYPE: &str = "application/fhir+json";

/// The FHIR resource types imported. A file holding anything else is
/// refused, so a stray JSON document is not uploaded as a medical record.
pub const RESOURCE_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "ClinicalImpression",
    "Condition",
    "Consent",
    "DetectedIssue",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "FamilyMemberHistory",
    "Goal",
    "ImagingStudy",
    "Immunization",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MolecularSequence",
    "Observation",
    "Patient",
    "Procedure",
    "QuestionnaireResponse",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
];

/// Why a FHIR file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The file is larger than [`MAX_FHIR_FILE_BYTES`].
    #[error("file too large (limit {MAX_FHIR_FILE_BYTES} bytes)")]
    TooLarge,
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object with a `resourceType`.
    #[error("{at}: not a FHIR resource (no \"resourceType\")")]
    NoResourceType {
        /// Where (`file` or `entry N`).
        at: String,
    },
    /// A `resourceType` this client does not import.
    #[error("{at}: unsupported resourceType {found:?}")]
    WrongResourceType {
        /// Where.
        at: String,
        /// What was found.
        found: String,
    },
    /// A resource without a valid `id`.
    #[error("{at}: {resource_type} has no valid \"id\" (1-64 characters of [A-Za-z0-9.-])")]
    MissingId {
        /// Where.
        at: String,
        /// Its type.
        resource_type: String,
    },
    /// A Bundle entry without a `resource`.
    #[error("entry {0}: no \"resource\"")]
    EntryWithoutResource(usize),
    /// A Bundle with no entries, or too many.
    #[error("Bundle must hold 1..={MAX_BUNDLE_ENTRIES} entries")]
    BadEntryCount,
    /// The same resource twice in one file.
    #[error("entry {index}: {resource_type}/{id} appears twice")]
    Duplicate {
        /// Where.
        index: usize,
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// The category could not be built.
    #[error("invalid category: {0}")]
    Category(String),
    /// A Bundle inside a Bundle.
    #[error("entry {0}: nested Bundles are not imported")]
    NestedBundle(usize),
}

/// One resource, ready to encrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FhirResource {
    /// `resourceType`.
    pub resource_type: String,
    /// `id`.
    pub id: String,
    /// The category for the record header.
    pub category: RecordCategory,
    /// The resource as compact JSON (the record body).
    pub json: Vec<u8>,
}

/// Parses a file's bytes: a Bundle or one resource. All or nothing.
pub fn parse_file(bytes: &[u8]) -> Result<Vec<FhirResource>, FhirError> {
    if bytes.len() as u64 > MAX_FHIR_FILE_BYTES {
        return Err(FhirError::TooLarge);
    }
    // serde_json refuses nesting deeper than 128 levels, so hostile depth
    // is an error, not a stack overflow.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| FhirError::NotJson(e.to_string()))?;
    match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => parse_bundle(&value),
        _ => Ok(vec![parse_resource(&value, "file")?]),
    }
}

fn parse_bundle(bundle: &Value) -> Result<Vec<FhirResource>, FhirError> {
    let entries = bundle.get("entry").and_then(Value::as_array).ok_or(FhirError::BadEntryCount)?;
    if entries.is_empty() || entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(FhirError::BadEntryCount);
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let resource = entry.get("resource").ok_or(FhirError::EntryWithoutResource(i))?;
        if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            return Err(FhirError::NestedBundle(i));
        }
        let r = parse_resource(resource, &format!("entry {i}"))?;
        if !seen.insert((r.resource_type.clone(), r.id.clone())) {
            return Err(FhirError::Duplicate { index: i, resource_type: r.resource_type, id: r.id });
        }
        out.push(r);
    }
    Ok(out)
}

fn valid_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Parses one resource (`at` names it in errors).
pub fn parse_resource(resource: &Value, at: &str) -> Result<FhirResource, FhirError> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::NoResourceType { at: at.to_owned() })?;
    if !RESOURCE_TYPES.contains(&rt) {
        return Err(FhirError::WrongResourceType { at: at.to_owned(), found: rt.chars().take(64).collect() });
    }
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| valid_fhir_id(id))
        .ok_or_else(|| FhirError::MissingId { at: at.to_owned(), resource_type: rt.to_owned() })?;
    let category = categorize(resource, rt)?;
    let json = serde_json::to_vec(resource).map_err(|e| FhirError::NotJson(e.to_string()))?;
    Ok(FhirResource { resource_type: rt.to_owned(), id: id.to_owned(), category, json })
}

fn codings(concept: &Value) -> impl Iterator<Item = &Value> {
    concept.get("coding").and_then(Value::as_array).into_iter().flatten()
}

fn valid_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= MAX_CODE_LEN
        && c.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
}

/// The category codes of a resource (`category[].coding[].code`).
pub fn category_codes(resource: &Value) -> Vec<String> {
    let concepts: Vec<&Value> = match resource.get("category") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    let mut codes = BTreeSet::new();
    for c in concepts {
        for coding in codings(c) {
            if let Some(code) = coding.get("code").and_then(Value::as_str).filter(|c| valid_code(c)) {
                codes.insert(code.to_owned());
            }
        }
    }
    codes.into_iter().take(medrelay_crypto::MAX_CATEGORY_CODES).collect()
}

/// The label an HL7 v3 ActCode security code stands for.
fn label_for_security_code(code: &str) -> Option<SensitivityLabel> {
    match code {
        "PSY" | "PSYTHPN" | "MH" | "BH" => Some(SensitivityLabel::MentalHealth),
        "ETH" | "SUD" | "OPIOIDUD" | "ALCOHOLUD" => Some(SensitivityLabel::SubstanceUse),
        "SEX" | "HIV" | "STD" | "SDV" => Some(SensitivityLabel::SexualHealth),
        "GDIS" | "GENE" => Some(SensitivityLabel::Genetics),
        _ => None,
    }
}

/// The label an ICD-10 code implies (see the module docs for the list).
pub fn label_for_icd10(code: &str) -> Option<SensitivityLabel> {
    let code = code.trim().to_ascii_uppercase();
    let mut chars = code.chars();
    let letter = chars.next()?;
    let digits: String = chars.take(2).collect();
    let n: u32 = (digits.len() == 2).then(|| digits.parse().ok()).flatten()?;
    match (letter, n) {
        ('F', 10..=19) => Some(SensitivityLabel::SubstanceUse),
        ('F', _) => Some(SensitivityLabel::MentalHealth),
        ('B', 20..=24) | ('Z', 21) | ('A', 50..=64) => Some(SensitivityLabel::SexualHealth),
        _ => None,
    }
}

/// Every sensitivity label of a resource: from `meta.security` and from
/// ICD-10 codings of its `code`.
pub fn sensitivity_labels(resource: &Value) -> BTreeSet<SensitivityLabel> {
    let mut out = BTreeSet::new();
    let security = resource.get("meta").and_then(|m| m.get("security")).and_then(Value::as_array);
    for coding in security.into_iter().flatten() {
        if let Some(l) = coding.get("code").and_then(Value::as_str).and_then(label_for_security_code) {
            out.insert(l);
        }
    }
    if let Some(code) = resource.get("code") {
        for coding in codings(code) {
            let system = coding.get("system").and_then(Value::as_str).unwrap_or_default();
            if !system.to_ascii_lowercase().contains("icd-10") {
                continue;
            }
            if let Some(l) = coding.get("code").and_then(Value::as_str).and_then(label_for_icd10) {
                out.insert(l);
            }
        }
    }
    out
}

/// The record category of a resource whose type is `resource_type`.
pub fn categorize(resource: &Value, resource_type: &str) -> Result<RecordCategory, FhirError> {
    let codes = category_codes(resource);
    let labels = sensitivity_labels(resource);
    // The type comes from RESOURCE_TYPES and the codes were filtered to the
    // category syntax, so this fails only on a crypto-crate rule change.
    RecordCategory::new(resource_type, codes, labels.iter().copied())
        .map_err(|e| FhirError::Category(e.to_string()))
}

fn id_from(prefix: &[u8], parts: &[&[u8]]) -> RecordId {
    let mut h = Sha256::new();
    h.update(prefix);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    RecordId::from_bytes(id)
}

/// The deterministic record id of a FHIR resource of `owner`.
pub fn fhir_record_id(owner: &PrincipalId, resource_type: &str, id: &str) -> RecordId {
    id_from(domain::FHIR_RECORD_ID, &[owner.as_bytes(), resource_type.as_bytes(), id.as_bytes()])
}

/// The deterministic record id of an uploaded file of `owner` (from its
/// content), so uploading the same file twice is detected.
pub fn file_record_id(owner: &PrincipalId, content: &[u8]) -> RecordId {
    let digest: [u8; 32] = Sha256::digest(content).into();
    id_from(domain::FILE_RECORD_ID, &[owner.as_bytes(), &digest])
}

#[cfg(test)]
mod tests {
    use super::*;
    use medrelay_crypto::KeyClass;
    use serde_json::json;

    #[test]
    fn icd10_code_list() {
        assert_eq!(label_for_icd10("F32.1"), Some(SensitivityLabel::MentalHealth));
        assert_eq!(label_for_icd10("F10.20"), Some(SensitivityLabel::SubstanceUse));
        assert_eq!(label_for_icd10("f19"), Some(SensitivityLabel::SubstanceUse));
        assert_eq!(label_for_icd10("F20"), Some(SensitivityLabel::MentalHealth));
        assert_eq!(label_for_icd10("F09"), Some(SensitivityLabel::MentalHealth));
        assert_eq!(label_for_icd10("B20"), Some(SensitivityLabel::SexualHealth));
        assert_eq!(label_for_icd10("Z21"), Some(SensitivityLabel::SexualHealth));
        assert_eq!(label_for_icd10("A54.0"), Some(SensitivityLabel::SexualHealth));
        for none in ["E11.9", "I10", "J45.909", "B25", "Z20", "", "F", "F1"] {
            assert_eq!(label_for_icd10(none), None, "{none}");
        }
    }

    #[test]
    fn categories_labels_and_key_classes() {
        let lab =
            json!({"resourceType":"Observation","id":"o1","category":[{"coding":[{"code":"laboratory"}]}]});
        let r = parse_resource(&lab, "file").unwrap();
        assert_eq!(r.category.codes(), ["laboratory"]);
        assert_eq!(r.category.key_class(), KeyClass::Laboratory);
        let psy = json!({"resourceType":"Condition","id":"c1",
            "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
            "code":{"coding":[{"system":"http://snomed.info/sct","code":"F10.2"}]}});
        let r = parse_resource(&psy, "file").unwrap();
        // A non-ICD system's F-code is not read as ICD-10.
        assert_eq!(r.category.sensitivity(), [SensitivityLabel::MentalHealth]);
        assert_eq!(r.category.key_class(), KeyClass::MentalHealth);
        let alc = json!({"resourceType":"Condition","id":"c2",
            "code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F10.20"}]}});
        assert_eq!(parse_resource(&alc, "f").unwrap().category.key_class(), KeyClass::SubstanceUse);
        let med =
            json!({"resourceType":"MedicationRequest","id":"m","category":{"coding":[{"code":"bad code!"}]}});
        let r = parse_resource(&med, "f").unwrap();
        assert!(r.category.codes().is_empty());
        assert_eq!(r.category.key_class(), KeyClass::Medications);
    }

    #[test]
    fn malformed_files_are_refused_with_the_entry_named() {
        assert!(matches!(parse_file(b"not json"), Err(FhirError::NotJson(_))));
        assert!(matches!(parse_file(b"[1,2]"), Err(FhirError::NoResourceType { .. })));
        let e = parse_file(br#"{"resourceType":"Invoice","id":"x"}"#).unwrap_err();
        assert_eq!(e, FhirError::WrongResourceType { at: "file".into(), found: "Invoice".into() });
        let e = parse_file(br#"{"resourceType":"Observation"}"#).unwrap_err();
        assert!(matches!(e, FhirError::MissingId { .. }));
        assert!(e.to_string().contains("Observation has no valid \"id\""), "{e}");
        let e = parse_file(br#"{"resourceType":"Observation","id":"../x"}"#).unwrap_err();
        assert!(matches!(e, FhirError::MissingId { .. }));
        let bundle = br#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Observation","id":"a"}},
            {"resource":{"resourceType":"Observation"}}]}"#;
        let e = parse_file(bundle).unwrap_err();
        assert!(e.to_string().starts_with("entry 1:"), "{e}");
        let dup = br#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Observation","id":"a"}},
            {"resource":{"resourceType":"Observation","id":"a"}}]}"#;
        assert!(matches!(parse_file(dup), Err(FhirError::Duplicate { index: 1, .. })));
        assert!(matches!(
            parse_file(br#"{"resourceType":"Bundle","entry":[]}"#),
            Err(FhirError::BadEntryCount)
        ));
        assert!(matches!(
            parse_file(br#"{"resourceType":"Bundle","entry":[{}]}"#),
            Err(FhirError::EntryWithoutResource(0))
        ));
        let nested =
            br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Bundle","entry":[]}}]}"#;
        assert!(matches!(parse_file(nested), Err(FhirError::NestedBundle(0))));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse_file(deep.as_bytes()), Err(FhirError::NotJson(_))));
    }

    #[test]
    fn record_ids_are_deterministic_and_distinct() {
        let a = PrincipalId::from_bytes([1; 32]);
        let b = PrincipalId::from_bytes([2; 32]);
        assert_eq!(fhir_record_id(&a, "Observation", "x"), fhir_record_id(&a, "Observation", "x"));
        assert_ne!(fhir_record_id(&a, "Observation", "x"), fhir_record_id(&b, "Observation", "x"));
        assert_ne!(fhir_record_id(&a, "Observation", "x"), fhir_record_id(&a, "Condition", "x"));
        // Length-prefixed parts: no ambiguity between type and id.
        assert_ne!(fhir_record_id(&a, "Observation", "x"), fhir_record_id(&a, "Observatio", "nx"));
        assert_ne!(file_record_id(&a, b"x"), fhir_record_id(&a, "Observation", "x"));
    }
}
