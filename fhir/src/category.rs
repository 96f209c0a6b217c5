//! A resource's [`RecordCategory`]: its `resourceType`, the `code` of every
//! coding in its `category` (an array of CodeableConcepts, or one), and its
//! sensitivity labels.
//!
//! Codes that do not fit the policy's code syntax (`[A-Za-z0-9._-]`, at
//! most 64 bytes) are dropped, and at most
//! [`medrelay_crypto::MAX_CATEGORY_CODES`] are kept: that can only narrow
//! what a grant naming a category reaches (scopes fail closed). Resources
//! without a `category` element (Claim, Organization, Encounter, …) are
//! reached by a scope naming their type.

use std::collections::BTreeSet;

use medrelay_crypto::{RecordCategory, SensitivityLabel, MAX_CATEGORY_CODES, MAX_CODE_LEN};
use serde_json::Value;

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
        for coding in c.get("coding").and_then(Value::as_array).into_iter().flatten() {
            if let Some(code) = coding.get("code").and_then(Value::as_str).filter(|c| valid_code(c)) {
                codes.insert(code.to_owned());
            }
        }
    }
    codes.into_iter().take(MAX_CATEGORY_CODES).collect()
}

/// The record category of `resource` (of type `resource_type`) with
/// `labels`. Fails only for a resource type outside the category syntax,
/// which FHIR R4 has none of.
pub fn categorize(
    resource: &Value,
    resource_type: &str,
    labels: impl IntoIterator<Item = SensitivityLabel>,
) -> Result<RecordCategory, medrelay_crypto::DecodeError> {
    RecordCategory::new(resource_type, category_codes(resource), labels)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::KeyClass;
    use serde_json::json;

    #[test]
    fn categories_and_key_classes() {
        let lab = json!({"resourceType":"Observation","category":[{"coding":[{"code":"laboratory"}]}]});
        let c = categorize(&lab, "Observation", []).unwrap();
        assert_eq!(c.codes(), ["laboratory"]);
        assert_eq!(c.key_class(), KeyClass::Laboratory);
        let med = json!({"resourceType":"MedicationRequest","category":{"coding":[{"code":"bad code!"}]}});
        let c = categorize(&med, "MedicationRequest", []).unwrap();
        assert!(c.codes().is_empty());
        assert_eq!(c.key_class(), KeyClass::Medications);
        let claim = json!({"resourceType":"Claim","type":{"coding":[{"code":"professional"}]}});
        let c = categorize(&claim, "Claim", [SensitivityLabel::SubstanceUse]).unwrap();
        assert_eq!(c.to_string(), "Claim#substance-use");
        assert_eq!(c.key_class(), KeyClass::SubstanceUse);
        let many: Vec<Value> = (0..40).map(|i| json!({"coding":[{"code":format!("c{i:02}")}]})).collect();
        let c = categorize(&json!({"category": many}), "Observation", []).unwrap();
        assert_eq!(c.codes().len(), MAX_CATEGORY_CODES);
    }
}
