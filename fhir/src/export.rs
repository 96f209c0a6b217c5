//! What a doctor receives: one FHIR R4 `collection` Bundle of the records
//! they may read, or Bulk Data NDJSON files per resource type.
//!
//! Every resource is the JSON value the patient published, unchanged (an
//! `id` the importer assigned is marked by an extension on its entry, never
//! on the resource). Each entry keeps the export's `fullUrl`, so references
//! such as `urn:uuid:…` resolve; a resource whose export had no `fullUrl`
//! gets `{DEFAULT_BASE}{Type}/{id}`, so relative `Type/id` references
//! between such resources resolve too. [`unresolved_references`] lists what
//! does not resolve (typically: records the doctor was not granted).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::entry::StoredEntry;
use crate::reference::{references_in, Resolution, Resolver};

/// The base of the `fullUrl` given to resources whose export had none (a
/// reserved `.invalid` name: it identifies, it is not a server).
pub const DEFAULT_BASE: &str = "https://medrelay.invalid/fhir/";

/// The `fullUrl` an entry gets in the doctor's Bundle.
pub fn full_url_of(entry: &StoredEntry) -> String {
    entry
        .full_url
        .clone()
        .unwrap_or_else(|| format!("{DEFAULT_BASE}{}/{}", entry.resource_type(), entry.id()))
}

fn sort_key(e: &StoredEntry) -> (bool, &str, &str) {
    (e.resource_type() != "Patient", e.resource_type(), e.id())
}

/// A `collection` Bundle of `entries` (Patient first, then by type and id).
/// `id` and `timestamp` (an FHIR `instant`) are the caller's: this crate
/// reads no clock.
pub fn collection_bundle(entries: &[StoredEntry], id: &str, timestamp: &str) -> Value {
    let mut sorted: Vec<&StoredEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let entry: Vec<Value> = sorted.iter().map(|e| e.to_entry(Some(full_url_of(e)))).collect();
    json!({
        "resourceType": "Bundle",
        "id": id,
        "type": "collection",
        "timestamp": timestamp,
        "total": entry.len(),
        "entry": entry,
    })
}

/// FHIR Bulk Data NDJSON: one file per resource type (`Observation` →
/// lines), each line one resource, sorted by id.
pub fn ndjson_by_type(entries: &[StoredEntry]) -> BTreeMap<String, Vec<u8>> {
    let mut sorted: Vec<&StoredEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in sorted {
        let file = out.entry(e.resource_type().to_owned()).or_default();
        file.extend_from_slice(&serde_json::to_vec(&e.resource).unwrap_or_default());
        file.push(b'\n');
    }
    out
}

/// A reference in a Bundle that resolves to nothing in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// Index of the entry holding it.
    pub entry: usize,
    /// The element (`subject`, `encounter`, …).
    pub field: String,
    /// The reference.
    pub reference: String,
}

/// Every reference in `bundle`'s resources that does not resolve within
/// the Bundle (FHIR R4 Bundle rules, see [`crate::reference`]).
pub fn unresolved_references(bundle: &Value) -> Vec<Unresolved> {
    let entries: Vec<&Value> = bundle.get("entry").and_then(Value::as_array).into_iter().flatten().collect();
    let mut resolver = Resolver::default();
    for (i, e) in entries.iter().enumerate() {
        let r = &e["resource"];
        let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
        resolver.add(i, rt, id, e.get("fullUrl").and_then(Value::as_str));
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let r = &e["resource"];
        let full_url = e.get("fullUrl").and_then(Value::as_str);
        for found in references_in(r) {
            if resolver.resolve(found.reference, r, full_url) == Resolution::Unresolved {
                out.push(Unresolved {
                    entry: i,
                    field: found.field.to_owned(),
                    reference: found.reference.to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ids::IdOrigin;

    fn e(v: Value, url: Option<&str>) -> StoredEntry {
        StoredEntry { full_url: url.map(str::to_owned), resource: v, assigned_id: None }
    }

    #[test]
    fn bundles_keep_urls_and_resources() {
        let mut org = e(json!({"resourceType":"Organization","id":"o1"}), Some("urn:uuid:o1"));
        org.assigned_id = Some(IdOrigin::FullUrl);
        let entries = vec![
            e(
                json!({"resourceType":"Observation","id":"b","subject":{"reference":"Patient/p"},
                "performer":[{"reference":"urn:uuid:o1"}],"encounter":{"reference":"Encounter/gone"}}),
                None,
            ),
            e(json!({"resourceType":"Patient","id":"p"}), None),
            org,
        ];
        let b = collection_bundle(&entries, "bundle-1", "2026-01-01T00:00:00Z");
        assert_eq!(b["type"], "collection");
        assert_eq!(b["total"], 3);
        assert_eq!(b["entry"][0]["resource"]["resourceType"], "Patient");
        assert_eq!(b["entry"][0]["fullUrl"], "https://medrelay.invalid/fhir/Patient/p");
        assert_eq!(b["entry"][2]["fullUrl"], "urn:uuid:o1");
        assert_eq!(b["entry"][2]["extension"][0]["valueCode"], "full-url");
        for (i, x) in entries.iter().enumerate() {
            let found = b["entry"].as_array().unwrap().iter().any(|y| y["resource"] == x.resource);
            assert!(found, "entry {i} changed");
        }
        let missing = unresolved_references(&b);
        assert_eq!(
            missing,
            [Unresolved { entry: 1, field: "encounter".into(), reference: "Encounter/gone".into() }]
        );
        let nd = ndjson_by_type(&entries);
        assert_eq!(nd.keys().collect::<Vec<_>>(), ["Observation", "Organization", "Patient"]);
        let line: Value = serde_json::from_slice(nd["Patient"].strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(line, json!({"resourceType":"Patient","id":"p"}));
    }
}
