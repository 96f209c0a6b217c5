//! FHIR references: finding them in a resource and resolving them among
//! the resources of an import or a Bundle.
//!
//! Resolution follows FHIR R4's rules for Bundles
//! (<https://hl7.org/fhir/R4/bundle.html#references>): `#id` is a contained
//! resource; an absolute reference (`urn:uuid:…`, `urn:oid:…`,
//! `https://…/Type/id`) matches an entry's `fullUrl`; a relative one
//! (`Type/id`) is made absolute against the base of the referring entry's
//! RESTful `fullUrl`. Where that finds nothing (no `fullUrl`, or one that is
//! a URN), a relative or RESTful reference matches a resource of that type
//! and id, as common FHIR servers and tools do. Conditional references
//! (`Type?identifier=…`) belong to transactions and are not resolved.

use std::collections::HashMap;

use serde_json::Value;

/// One reference found in a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundReference<'v> {
    /// The element holding the Reference (`subject`, `reasonReference`,
    /// `diagnosisReference`, …).
    pub field: &'v str,
    /// `Reference.reference`.
    pub reference: &'v str,
}

/// Every `Reference.reference` in `resource` (contained resources
/// included), with the element that holds it.
pub fn references_in(resource: &Value) -> Vec<FoundReference<'_>> {
    let mut out = Vec::new();
    collect(resource, "", &mut out);
    out
}

fn collect<'v>(v: &'v Value, field: &'v str, out: &mut Vec<FoundReference<'v>>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect(x, field, out)),
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference") {
                out.push(FoundReference { field, reference: r });
            }
            for (k, x) in o {
                collect(x, k, out);
            }
        }
        _ => {}
    }
}

/// `Type/id` at the end of a relative or RESTful reference (a
/// `/_history/v` suffix dropped), if it has that shape.
pub fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let r = reference.split(['?', '#']).next().unwrap_or(reference);
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => r,
    };
    let mut parts = r.rsplit('/');
    let id = parts.next()?;
    let rt = parts.next()?;
    let type_ok = rt.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && rt.chars().all(|c| c.is_ascii_alphanumeric());
    let id_ok = crate::ids::is_valid_id(id);
    (type_ok && id_ok).then_some((rt, id))
}

/// The base of a RESTful `fullUrl` (`https://x/fhir/` of
/// `https://x/fhir/Patient/1`), if it is one.
pub fn restful_base(full_url: &str) -> Option<&str> {
    if !(full_url.starts_with("http://") || full_url.starts_with("https://")) {
        return None;
    }
    let (rt, id) = type_and_id(full_url)?;
    let tail = format!("{rt}/{id}");
    let i = full_url.find(&format!("/{tail}"))?;
    Some(&full_url[..=i])
}

fn is_absolute(reference: &str) -> bool {
    reference.starts_with("urn:") || reference.contains("://")
}

/// Resolves references among a set of resources (an import, or a Bundle's
/// entries), each known by its index.
#[derive(Debug, Default)]
pub struct Resolver {
    by_url: HashMap<String, usize>,
    by_type_id: HashMap<(String, String), usize>,
}

/// What a reference resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A resource of the set.
    Resource(usize),
    /// A contained resource (or the container itself, for `#`).
    Contained,
    /// Nothing in the set.
    Unresolved,
}

impl Resolver {
    /// Adds resource `index` of `resource_type`/`id`, with its `fullUrl`.
    /// The first resource with a given URL or type and id wins.
    pub fn add(&mut self, index: usize, resource_type: &str, id: &str, full_url: Option<&str>) {
        if let Some(u) = full_url {
            self.by_url.entry(u.to_owned()).or_insert(index);
        }
        self.by_type_id.entry((resource_type.to_owned(), id.to_owned())).or_insert(index);
    }

    /// Resolves `reference`, found in `container` (for `#id`) whose entry
    /// has `full_url`.
    pub fn resolve(&self, reference: &str, container: &Value, full_url: Option<&str>) -> Resolution {
        if let Some(local) = reference.strip_prefix('#') {
            let contained = container.get("contained").and_then(Value::as_array);
            let found = local.is_empty()
                || contained
                    .into_iter()
                    .flatten()
                    .any(|c| c.get("id").and_then(Value::as_str) == Some(local));
            return if found { Resolution::Contained } else { Resolution::Unresolved };
        }
        if reference.contains('?') {
            return Resolution::Unresolved;
        }
        if is_absolute(reference) {
            if let Some(&i) = self.by_url.get(reference) {
                return Resolution::Resource(i);
            }
            if reference.starts_with("urn:") {
                return Resolution::Unresolved;
            }
        } else if let Some(base) = full_url.and_then(restful_base) {
            if let Some(&i) = self.by_url.get(&format!("{base}{reference}")) {
                return Resolution::Resource(i);
            }
        }
        match type_and_id(reference) {
            Some((rt, id)) => self
                .by_type_id
                .get(&(rt.to_owned(), id.to_owned()))
                .map_or(Resolution::Unresolved, |&i| Resolution::Resource(i)),
            None => Resolution::Unresolved,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_with_their_field() {
        let v = json!({"resourceType":"Claim","patient":{"reference":"urn:uuid:p"},
            "diagnosis":[{"diagnosisReference":{"reference":"urn:uuid:c"}}],
            "contained":[{"resourceType":"Coverage","beneficiary":{"reference":"Patient/1"}}],
            "identifier":[{"system":"x","value":"y"}]});
        let mut found: Vec<(String, String)> =
            references_in(&v).into_iter().map(|r| (r.field.to_owned(), r.reference.to_owned())).collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("beneficiary".into(), "Patient/1".into()),
                ("diagnosisReference".into(), "urn:uuid:c".into()),
                ("patient".into(), "urn:uuid:p".into())
            ]
        );
    }

    #[test]
    fn shapes() {
        assert_eq!(type_and_id("Patient/123"), Some(("Patient", "123")));
        assert_eq!(type_and_id("https://x.org/fhir/Patient/1/_history/2"), Some(("Patient", "1")));
        assert_eq!(type_and_id("urn:uuid:abc"), None);
        assert_eq!(type_and_id("patient/1"), None);
        assert_eq!(restful_base("https://x.org/fhir/Patient/1"), Some("https://x.org/fhir/"));
        assert_eq!(restful_base("urn:uuid:1"), None);
    }

    #[test]
    fn resolution_follows_the_bundle_rules() {
        let mut r = Resolver::default();
        r.add(0, "Patient", "p1", Some("urn:uuid:0f6c9b1e-0000-4000-8000-000000000001"));
        r.add(1, "Encounter", "e1", Some("https://x.org/fhir/Encounter/e1"));
        r.add(2, "Observation", "o1", None);
        let c = json!({"contained":[{"id":"m"}]});
        assert_eq!(
            r.resolve("urn:uuid:0f6c9b1e-0000-4000-8000-000000000001", &c, None),
            Resolution::Resource(0)
        );
        assert_eq!(r.resolve("urn:uuid:nope", &c, None), Resolution::Unresolved);
        assert_eq!(
            r.resolve("Encounter/e1", &c, Some("https://x.org/fhir/Observation/o9")),
            Resolution::Resource(1)
        );
        assert_eq!(r.resolve("https://x.org/fhir/Encounter/e1", &c, None), Resolution::Resource(1));
        // Type/id fallback (no RESTful fullUrl to resolve against).
        assert_eq!(r.resolve("Patient/p1", &c, None), Resolution::Resource(0));
        assert_eq!(r.resolve("Observation/o1", &c, Some("urn:uuid:x")), Resolution::Resource(2));
        assert_eq!(r.resolve("#m", &c, None), Resolution::Contained);
        assert_eq!(r.resolve("#", &c, None), Resolution::Contained);
        assert_eq!(r.resolve("#zz", &c, None), Resolution::Unresolved);
        assert_eq!(r.resolve("Patient?identifier=x|1", &c, None), Resolution::Unresolved);
    }
}
