//! Record ids, and the ids the importer assigns to resources that have
//! none.

use medrelay_crypto::{PrincipalId, RecordId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{CONTENT_ID, FHIR_RECORD_ID, FILE_RECORD_ID};

/// Whether `id` is a FHIR id: 1–64 characters of `[A-Za-z0-9.-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
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

/// The deterministic record id of a FHIR resource of `owner`: re-importing
/// the same resource maps to the same record.
pub fn fhir_record_id(owner: &PrincipalId, resource_type: &str, id: &str) -> RecordId {
    id_from(FHIR_RECORD_ID, &[owner.as_bytes(), resource_type.as_bytes(), id.as_bytes()])
}

/// The deterministic record id of an uploaded file of `owner` (from its
/// content), so uploading the same file twice is detected.
pub fn file_record_id(owner: &PrincipalId, content: &[u8]) -> RecordId {
    let digest: [u8; 32] = Sha256::digest(content).into();
    id_from(FILE_RECORD_ID, &[owner.as_bytes(), &digest])
}

/// Where an assigned id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdOrigin {
    /// The entry's `fullUrl` (`urn:uuid:…`, `urn:oid:…`, or a RESTful URL
    /// ending in the type and an id).
    FullUrl,
    /// A hash of the resource's content (no usable `fullUrl`).
    Content,
}

impl IdOrigin {
    /// `full-url` or `content` (the value of the assigned-id extension).
    pub const fn as_str(self) -> &'static str {
        match self {
            IdOrigin::FullUrl => "full-url",
            IdOrigin::Content => "content",
        }
    }

    /// The inverse of [`IdOrigin::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full-url" => Some(IdOrigin::FullUrl),
            "content" => Some(IdOrigin::Content),
            _ => None,
        }
    }
}

/// The id to give a resource of `resource_type` that has none: from its
/// `fullUrl` when that names one, otherwise from its content (canonical
/// JSON: keys sorted, compact), so a re-import assigns the same id.
pub fn assign_id(resource_type: &str, full_url: Option<&str>, resource: &Value) -> (String, IdOrigin) {
    if let Some(u) = full_url {
        let from_urn = u.strip_prefix("urn:uuid:").or_else(|| u.strip_prefix("urn:oid:"));
        if let Some(id) = from_urn.map(str::to_ascii_lowercase).filter(|id| is_valid_id(id)) {
            return (id, IdOrigin::FullUrl);
        }
        if let Some((rt, id)) = crate::reference::type_and_id(u) {
            if rt == resource_type {
                return (id.to_owned(), IdOrigin::FullUrl);
            }
        }
    }
    // serde_json's map is ordered by key, so this is canonical for a value.
    let canonical = serde_json::to_vec(resource).unwrap_or_default();
    let digest = Sha256::new().chain_update(CONTENT_ID).chain_update(&canonical).finalize();
    (format!("mr-{}", hex::encode(&digest[..16])), IdOrigin::Content)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const KAT_RECORD_ID: &str = "7cdee310e8fee247434e6193c8a4d274";

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
        // The known answer, so a change of derivation is noticed.
        assert_eq!(fhir_record_id(&a, "Observation", "x").to_string(), KAT_RECORD_ID);
    }

    #[test]
    fn assigned_ids() {
        let r = json!({"resourceType":"Organization","name":"x"});
        assert_eq!(
            assign_id("Organization", Some("urn:uuid:5D4B9DF1-93AE-3BC9-B680-03249990E558"), &r),
            ("5d4b9df1-93ae-3bc9-b680-03249990e558".to_owned(), IdOrigin::FullUrl)
        );
        assert_eq!(
            assign_id("Organization", Some("urn:oid:1.2.3.4"), &r),
            ("1.2.3.4".to_owned(), IdOrigin::FullUrl)
        );
        assert_eq!(
            assign_id("Organization", Some("http://x.org/fhir/Organization/7/_history/2"), &r),
            ("7".to_owned(), IdOrigin::FullUrl)
        );
        // A URL naming another type, or none: from the content, stably.
        let (id, origin) = assign_id("Organization", Some("http://x.org/fhir/Patient/7"), &r);
        assert_eq!(origin, IdOrigin::Content);
        assert!(id.starts_with("mr-") && is_valid_id(&id), "{id}");
        assert_eq!(assign_id("Organization", None, &r).0, id);
        let other = json!({"resourceType":"Organization","name":"y"});
        assert_ne!(assign_id("Organization", None, &other).0, id);
        for o in [IdOrigin::FullUrl, IdOrigin::Content] {
            assert_eq!(IdOrigin::parse(o.as_str()), Some(o));
        }
    }

    #[test]
    fn fhir_ids() {
        assert!(is_valid_id("a-b.C9"));
        assert!(is_valid_id(&"x".repeat(64)));
        for bad in ["", "../x", "a b", "a_b", "é"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        assert!(!is_valid_id(&"x".repeat(65)));
    }
}
