//! Sensitivity labels of one resource, each with the reason a patient is
//! shown (`import --dry-run`).
//!
//! A resource is labelled by every code anywhere in it (its `code`, a
//! medication's RxNorm coding, a claim's diagnosis and product codes, a
//! value, a component, a contained resource, …: like LEAP SLS, every
//! `Coding` counts), by HL7 sensitivity codes in its `meta.security` (and
//! its contained resources'), and by the labels the patient adds on import.
//! Propagation through references comes on top ([`crate::propagate`]).

use std::fmt;

use medrelay_crypto::SensitivityLabel;
use serde_json::Value;

use crate::sls::{label_for_icd10_range, label_for_security_code, CodeSystem, LabelTable};

/// Why a record carries a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelReason {
    /// The label.
    pub label: SensitivityLabel,
    /// Why.
    pub why: Why,
}

/// The reason behind one label.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// A code listed in a value set of the table.
    Code {
        /// System.
        system: CodeSystem,
        /// The code as found in the resource.
        code: String,
        /// The value set (display form: name and OID).
        value_set: String,
    },
    /// An ICD-10 code in a sensitive chapter range.
    IcdRange {
        /// The code.
        code: String,
    },
    /// An HL7 sensitivity code in `meta.security`.
    Security {
        /// The code.
        code: String,
    },
    /// The patient asked for it (`import --label`).
    Requested,
    /// Another record of the import, through a reference.
    Reference {
        /// `Type/id` of the record the label came from.
        from: String,
        /// The referring element (`reasonReference`, `encounter`, …).
        field: String,
        /// Whether this record refers to `from` (`true`) or `from` refers
        /// to this record (`false`: e.g. the encounter of a labelled
        /// diagnosis).
        refers: bool,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Code { system, code, value_set } => write!(f, "{system} {code} is in {value_set}"),
            Why::IcdRange { code } => write!(f, "ICD-10 {code} is in a sensitive chapter range"),
            Why::Security { code } => write!(f, "meta.security {code}"),
            Why::Requested => f.write_str("added on import (--label)"),
            Why::Reference { from, field, refers: true } => write!(f, "its {field} refers to {from}"),
            Why::Reference { from, field, refers: false } => write!(f, "{from} refers to it as its {field}"),
        }
    }
}

impl fmt::Display for LabelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.label, self.why)
    }
}

/// The label a `--label` argument names: a medrelay label name
/// (`substance-use`) or an HL7 sensitivity code (`ETH`).
pub fn parse_label(text: &str) -> Option<SensitivityLabel> {
    text.parse().ok().or_else(|| label_for_security_code(&text.to_ascii_uppercase()))
}

fn is_action_code_system(system: Option<&str>) -> bool {
    // HL7 v3 ActCode (current and pre-R4 URIs, and the OID); a coding with
    // no system in `meta.security` is read the same way.
    system.is_none_or(|s| {
        s.ends_with("v3-ActCode") || s.ends_with("v3/ActCode") || s == "urn:oid:2.16.840.1.113883.5.4"
    })
}

/// Every label `resource` carries by its own content, with the reasons (one
/// per distinct code; several reasons may give the same label).
pub fn direct_labels(table: &LabelTable, resource: &Value) -> Vec<LabelReason> {
    let mut out = Vec::new();
    walk(table, resource, true, &mut out);
    out
}

fn push(out: &mut Vec<LabelReason>, r: LabelReason) {
    if !out.contains(&r) {
        out.push(r);
    }
}

fn walk(table: &LabelTable, v: &Value, is_resource: bool, out: &mut Vec<LabelReason>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(table, x, false, out)),
        Value::Object(o) => {
            if is_resource || o.get("resourceType").is_some_and(Value::is_string) {
                let security = o.get("meta").and_then(|m| m.get("security")).and_then(Value::as_array);
                for coding in security.into_iter().flatten() {
                    let system = coding.get("system").and_then(Value::as_str);
                    let Some(code) = coding.get("code").and_then(Value::as_str) else { continue };
                    if let Some(label) =
                        label_for_security_code(code).filter(|_| is_action_code_system(system))
                    {
                        push(out, LabelReason { label, why: Why::Security { code: code.to_owned() } });
                    }
                }
            }
            if let (Some(Value::String(system)), Some(Value::String(code))) = (o.get("system"), o.get("code"))
            {
                coding_labels(table, system, code, out);
            }
            for (k, x) in o {
                // `meta` (tags, security, profiles) is not clinical content;
                // security was read above. Contained resources are read.
                if k == "meta" {
                    continue;
                }
                walk(table, x, k == "contained", out);
            }
        }
        _ => {}
    }
}

fn coding_labels(table: &LabelTable, system: &str, code: &str, out: &mut Vec<LabelReason>) {
    let Some(cs) = CodeSystem::from_uri(system) else { return };
    for m in table.lookup(cs, code) {
        push(
            out,
            LabelReason {
                label: m.label,
                why: Why::Code {
                    system: cs,
                    code: code.trim().to_owned(),
                    value_set: m.value_set.to_string(),
                },
            },
        );
    }
    if cs == CodeSystem::Icd10Cm {
        if let Some(label) = label_for_icd10_range(code) {
            if !out
                .iter()
                .any(|r| r.label == label && matches!(&r.why, Why::Code { code: c, .. } if c == code.trim()))
            {
                push(out, LabelReason { label, why: Why::IcdRange { code: code.trim().to_owned() } });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;
    use SensitivityLabel::*;

    fn labels(v: Value) -> Vec<SensitivityLabel> {
        let mut l: Vec<_> = direct_labels(LabelTable::embedded(), &v).into_iter().map(|r| r.label).collect();
        l.sort();
        l.dedup();
        l
    }

    #[test]
    fn codes_anywhere_label_the_resource() {
        let alcoholism = json!({"resourceType":"Condition","id":"c",
            "code":{"coding":[{"system":"http://snomed.info/sct","code":"7200002","display":"Alcoholism"}]}});
        assert_eq!(labels(alcoholism.clone()), [SubstanceUse]);
        let r = &direct_labels(LabelTable::embedded(), &alcoholism)[0];
        assert_eq!(
            r.to_string(),
            "substance-use: SNOMED CT 7200002 is in C2S Alcohol Use Disorders - SNOMEDCT (2.16.840.1.113762.1.4.1142.1)"
        );
        // A claim's diagnosis, deep inside.
        let claim = json!({"resourceType":"Claim","diagnosis":[{"sequence":1,"diagnosisCodeableConcept":
            {"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F11.20"}]}}]});
        assert_eq!(labels(claim), [SubstanceUse]);
        // A medication by RxNorm, a contained Medication.
        let mr = json!({"resourceType":"MedicationRequest","medicationReference":{"reference":"#m"},
            "contained":[{"resourceType":"Medication","id":"m","code":{"coding":[
                {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1819"}]}}]});
        assert_eq!(labels(mr), [SubstanceUse]);
        // An ICD-10 code the value sets miss but whose chapter is sensitive.
        let dep = json!({"resourceType":"Condition","code":{"coding":[
            {"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F39"}]}});
        assert_eq!(labels(dep), [MentalHealth]);
    }

    #[test]
    fn meta_security_and_negative_controls() {
        let psy = json!({"resourceType":"Observation",
            "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}],
                    "tag":[{"system":"http://snomed.info/sct","code":"7200002"}]}});
        // The tag is not content: only the security code counts.
        assert_eq!(labels(psy), [MentalHealth]);
        let other_system = json!({"resourceType":"Observation",
            "meta":{"security":[{"system":"http://example.org/local","code":"PSY"}]}});
        assert!(labels(other_system).is_empty());
        let contained = json!({"resourceType":"List","contained":[{"resourceType":"Observation","id":"x",
            "meta":{"security":[{"code":"HIV"}]}}]});
        assert_eq!(labels(contained), [SexualHealth]);
        let pain = json!({"resourceType":"Observation","code":{"coding":[
            {"system":"http://loinc.org","code":"72514-3","display":"Pain severity"}]},"valueQuantity":{"value":4}});
        assert!(labels(pain).is_empty());
        let oxycodone = json!({"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[
            {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1049221"}]},
            "reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"22253000"}]}]});
        assert!(labels(oxycodone).is_empty());
        let smoker = json!({"resourceType":"Condition","code":{"coding":[
            {"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F17.210"}]}});
        assert!(labels(smoker).is_empty(), "tobacco is not substance use here");
    }

    #[test]
    fn label_arguments() {
        assert_eq!(parse_label("substance-use"), Some(SubstanceUse));
        assert_eq!(parse_label("eth"), Some(SubstanceUse));
        assert_eq!(parse_label("PSY"), Some(MentalHealth));
        assert_eq!(parse_label("GDIS"), Some(Genetics));
        assert_eq!(parse_label("secret"), None);
    }
}
