//! What a FHIR record's (encrypted) body holds: one FHIR R4 `Bundle.entry`
//! — the resource exactly as the patient's export had it, its `fullUrl`
//! (so references such as `urn:uuid:…` still resolve in the Bundle a doctor
//! receives), and, if the importer had to give the resource an `id`, an
//! extension saying so.

use serde_json::{json, Map, Value};

use crate::ids::{is_valid_id, IdOrigin};

/// The media type of a record whose body is a [`StoredEntry`].
pub const FHIR_ENTRY_MEDIA_TYPE: &str = "application/vnd.medrelay.fhir-entry+json";
/// The media type of a plain FHIR resource (`application/fhir+json`).
pub const FHIR_MEDIA_TYPE: &str = "application/fhir+json";
/// The extension (on the `Bundle.entry`, never on the resource) marking an
/// `id` the importer assigned; its `valueCode` says from what (`full-url`
/// or `content`).
pub const ASSIGNED_ID_EXTENSION: &str =
    "https://example.invalid/medrelay/fhir/StructureDefinition/assigned-id";
/// Largest record body the importer produces (the envelope must fit the
/// server's 1 MiB limit with the capsule and header).
pub const MAX_RESOURCE_BYTES: usize = 900 * 1024;

/// One stored FHIR resource with its entry data.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    /// The entry's `fullUrl` in the patient's export, if it had one.
    pub full_url: Option<String>,
    /// The resource.
    pub resource: Value,
    /// Set if the importer assigned the resource's `id`.
    pub assigned_id: Option<IdOrigin>,
}

/// A record body that is not a stored entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a stored FHIR entry: {0}")]
pub struct EntryFormatError(pub String);

impl StoredEntry {
    /// `resourceType`.
    pub fn resource_type(&self) -> &str {
        self.resource.get("resourceType").and_then(Value::as_str).unwrap_or_default()
    }

    /// `id`.
    pub fn id(&self) -> &str {
        self.resource.get("id").and_then(Value::as_str).unwrap_or_default()
    }

    /// The `Bundle.entry` JSON (compact), the record body.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_entry(None)).unwrap_or_default()
    }

    /// The `Bundle.entry` object, with `default_full_url` where the export
    /// had no `fullUrl`.
    pub fn to_entry(&self, default_full_url: Option<String>) -> Value {
        let mut e = Map::new();
        if let Some(origin) = self.assigned_id {
            e.insert(
                "extension".into(),
                json!([{ "url": ASSIGNED_ID_EXTENSION, "valueCode": origin.as_str() }]),
            );
        }
        if let Some(u) = self.full_url.clone().or(default_full_url) {
            e.insert("fullUrl".into(), Value::String(u));
        }
        e.insert("resource".into(), self.resource.clone());
        Value::Object(e)
    }

    /// Reads a record body (a stored entry, or — from a plain
    /// `application/fhir+json` record — a bare resource).
    pub fn from_body(body: &[u8]) -> Result<Self, EntryFormatError> {
        let fail = |m: &str| EntryFormatError(m.to_owned());
        let v = crate::json::parse_strict(body).map_err(|e| EntryFormatError(e.reason))?;
        let Value::Object(mut o) = v else { return Err(fail("not a JSON object")) };
        if o.contains_key("resourceType") {
            return Self::from_resource(Value::Object(o));
        }
        let resource = o.remove("resource").ok_or_else(|| fail("no resource"))?;
        let full_url = match o.remove("fullUrl") {
            None => None,
            Some(Value::String(u)) => Some(u),
            Some(_) => return Err(fail("fullUrl is not a string")),
        };
        let assigned_id = match o.remove("extension") {
            None => None,
            Some(Value::Array(exts)) => exts
                .iter()
                .find(|x| x.get("url").and_then(Value::as_str) == Some(ASSIGNED_ID_EXTENSION))
                .and_then(|x| x.get("valueCode").and_then(Value::as_str))
                .map(|c| IdOrigin::parse(c).ok_or_else(|| fail("unknown assigned-id origin")))
                .transpose()?,
            Some(_) => return Err(fail("extension is not an array")),
        };
        if let Some(k) = o.keys().next() {
            return Err(EntryFormatError(format!("unexpected element {k:?}")));
        }
        let mut e = Self::from_resource(resource)?;
        e.full_url = full_url;
        e.assigned_id = assigned_id;
        Ok(e)
    }

    fn from_resource(resource: Value) -> Result<Self, EntryFormatError> {
        let ok = resource.get("resourceType").and_then(Value::as_str).is_some()
            && resource.get("id").and_then(Value::as_str).is_some_and(is_valid_id);
        if !ok {
            return Err(EntryFormatError("the resource has no resourceType or no valid id".into()));
        }
        Ok(Self { full_url: None, resource, assigned_id: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trips() {
        let e = StoredEntry {
            full_url: Some("urn:uuid:6d4f0f3e-8c1e-4b5e-9d1a-0c8b7f6e5d4c".into()),
            resource: json!({"resourceType":"Organization","id":"6d4f0f3e-8c1e-4b5e-9d1a-0c8b7f6e5d4c","name":"Clinic"}),
            assigned_id: Some(IdOrigin::FullUrl),
        };
        let body = e.to_body();
        assert_eq!(StoredEntry::from_body(&body).unwrap(), e);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["extension"][0]["valueCode"], "full-url");
        assert_eq!(v["resource"], e.resource, "the resource is untouched");
        let plain = StoredEntry {
            full_url: None,
            resource: json!({"resourceType":"Patient","id":"p"}),
            assigned_id: None,
        };
        assert_eq!(StoredEntry::from_body(&plain.to_body()).unwrap(), plain);
        // A bare resource body reads as an entry without fullUrl.
        assert_eq!(StoredEntry::from_body(br#"{"resourceType":"Patient","id":"p"}"#).unwrap(), plain);
        assert_eq!(plain.to_entry(Some("https://b/Patient/p".into()))["fullUrl"], "https://b/Patient/p");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"[]"[..],
            b"not json",
            br#"{"fullUrl":"x"}"#,
            br#"{"resource":{"resourceType":"Patient"}}"#,
            br#"{"resource":{"resourceType":"Patient","id":"p"},"fullUrl":1}"#,
            br#"{"resource":{"resourceType":"Patient","id":"p"},"request":{}}"#,
            br#"{"resource":{"resourceType":"Patient","id":"p"},"extension":[{"url":"https://example.invalid/medrelay/fhir/StructureDefinition/assigned-id","valueCode":"x"}]}"#,
            br#"{"resource":{"resourceType":"Patient","id":"p","id":"q"}}"#,
        ] {
            assert!(StoredEntry::from_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
