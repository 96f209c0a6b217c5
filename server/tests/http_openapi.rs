//! The hand-written OpenAPI document, fetched over the real HTTP stack, is
//! checked against what the server really serves:
//!
//! - every route registered in `server/src` (found by reading the route
//!   registrations in the source, so a new module's routes are found too)
//!   is in the spec with its method, and the spec lists nothing else (the
//!   unit test in openapi.rs checks each listed route is routed);
//! - every request body schema names exactly the JSON keys the wire type
//!   (de)serializes, its `required` list is exactly the keys of a sample
//!   with every optional field left out, each value has the declared JSON
//!   type, and the type rejects unknown fields as `additionalProperties:
//!   false` promises.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use medrelay_crypto::{domain, RecordId};
use medrelay_server::app;
use medrelay_wire::{
    ChallengeRequest, CreateGrantRequest, ReencryptRequest, RegisterRequest, RevokeRequest, Role,
    TokenRequest, UploadRecordRequest, UploadRecordsRequest, B64,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (method, path) of every `route("…")` / `resource("…")` registration in
/// one source file. Paths in modules are relative to the `/v1` scope; paths
/// in lib.rs are absolute.
fn routes_in(source: &str, prefix: &str) -> BTreeSet<(String, String)> {
    let mut starts: Vec<usize> = Vec::new();
    for marker in ["route(\"", "resource(\""] {
        starts.extend(source.match_indices(marker).map(|(i, m)| i + m.len()));
    }
    starts.sort_unstable();
    let mut out = BTreeSet::new();
    for (n, &start) in starts.iter().enumerate() {
        let path = &source[start..start + source[start..].find('"').unwrap()];
        if !path.starts_with('/') {
            continue;
        }
        // The methods registered for this path: up to the next registration.
        let end = starts.get(n + 1).copied().unwrap_or(source.len());
        let chain = &source[start..end];
        let methods: Vec<&str> =
            METHODS.into_iter().filter(|m| chain.contains(&format!("web::{m}()"))).collect();
        assert!(!methods.is_empty(), "no method found for route {path}");
        for m in methods {
            out.insert((m.to_owned(), format!("{prefix}{path}")));
        }
    }
    out
}

fn served_routes() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // Every module's routes are configured inside the one `/v1` scope of
    // lib.rs; if that ever changes, this scan must learn the new prefix.
    let scope = lib.find("web::scope(\"/v1\")").expect("the /v1 scope");
    assert!(!lib[..scope].contains(".configure("), "a module configured outside /v1");
    let mut out = routes_in(&lib, "");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            // ops/admin.rs is the operator socket's separate app, never on
            // the public listener (http_admin.rs checks that).
            if !name.ends_with(".rs") || path == src.join("lib.rs") || path.ends_with("ops/admin.rs") {
                continue;
            }
            out.extend(routes_in(&std::fs::read_to_string(&path).unwrap(), "/v1"));
        }
    }
    out
}

async fn fetch_spec() -> Value {
    let env = env();
    let svc = actix_web::test::init_service(app(env.state.clone())).await;
    let (s, b) = get(&svc, "/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    json(&b)
}

#[actix_web::test]
async fn the_spec_lists_exactly_the_routes_the_app_serves() {
    let spec = fetch_spec().await;
    let listed: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    let served = served_routes();
    // The scan itself works: it finds routes of lib.rs, of a plain module
    // and of a `web::resource` registration.
    for known in [("get", "/healthz"), ("post", "/v1/auth/token"), ("post", "/v1/grants")] {
        assert!(served.contains(&(known.0.to_owned(), known.1.to_owned())), "scan missed {known:?}");
    }
    let missing: Vec<_> = served.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&served).collect();
    assert!(missing.is_empty(), "served but not in the OpenAPI spec: {missing:?}");
    assert!(extra.is_empty(), "in the spec but not served: {extra:?}");
}

#[test]
fn the_route_scan_reads_both_registration_styles() {
    let src = r#"
        cfg.route("/a/{id}", web::get().to(x)).route("/b", web::post().to(y));
        cfg.service(web::resource("/c").app_data(z).route(web::post().to(c)).route(web::get().to(d)));
    "#;
    let got = routes_in(src, "/v1");
    let want: BTreeSet<(String, String)> =
        [("get", "/v1/a/{id}"), ("post", "/v1/b"), ("post", "/v1/c"), ("get", "/v1/c")]
            .into_iter()
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .collect();
    assert_eq!(got, want);
}

/// One request type: its full sample (every optional field set), its
/// minimal sample (every optional field left out) and whether its
/// deserializer accepts a JSON value.
struct Sample {
    full: Value,
    minimal: Value,
    accepts: fn(&Value) -> bool,
}

fn sample<T: Serialize + DeserializeOwned>(full: &T, minimal: &T) -> Sample {
    fn accepts<T: DeserializeOwned>(v: &Value) -> bool {
        serde_json::from_value::<T>(v.clone()).is_ok()
    }
    Sample {
        full: serde_json::to_value(full).unwrap(),
        minimal: serde_json::to_value(minimal).unwrap(),
        accepts: accepts::<T>,
    }
}

/// A sample written as JSON (for types whose serializer writes defaulted
/// fields the spec marks optional); both forms must deserialize as `T`.
fn sample_json<T: DeserializeOwned>(full: Value, minimal: Value) -> Sample {
    fn accepts<T: DeserializeOwned>(v: &Value) -> bool {
        serde_json::from_value::<T>(v.clone()).is_ok()
    }
    Sample { full, minimal, accepts: accepts::<T> }
}

fn samples() -> BTreeMap<&'static str, Sample> {
    let sk = key(1);
    let pid = sk.principal_id();
    let sig = sk.sign(domain::SIG_AUTH_CHALLENGE, b"x");
    let b = B64(vec![1, 2, 3]);
    let reg = register_request(&sk, Role::Doctor, "Dr", Some("token".into()));
    let reg_min = RegisterRequest { enrollment_token: None, ..reg.clone() };
    let mut m = BTreeMap::new();
    let challenge = ChallengeRequest { principal: pid };
    m.insert("ChallengeRequest", sample(&challenge, &challenge));
    let token = TokenRequest { principal: pid, nonce: B64(vec![7; 32]), signature: sig };
    m.insert("TokenRequest", sample(&token, &token));
    m.insert("RegisterRequest", sample(&reg, &reg_min));
    let up = UploadRecordRequest { envelope: b.clone(), capsule: Some(b.clone()) };
    let up_min = UploadRecordRequest { envelope: b.clone(), capsule: None };
    m.insert("UploadRecordRequest", sample(&up, &up_min));
    let ups = UploadRecordsRequest { capsules: vec![b.clone()], envelopes: vec![b.clone()] };
    let ups_min = UploadRecordsRequest { capsules: vec![], envelopes: vec![b.clone()] };
    m.insert("UploadRecordsRequest", sample(&ups, &ups_min));
    let grant = CreateGrantRequest { grant: b.clone(), rekeys: vec![b.clone()] };
    m.insert("CreateGrantRequest", sample(&grant, &grant));
    let rev = RevokeRequest { revocation: b };
    m.insert("RevokeRequest", sample(&rev, &rev));
    let re = ReencryptRequest { record_ids: vec![RecordId::from_bytes([0xab; 16])] };
    m.insert("ReencryptRequest", sample(&re, &re));
    let summary = serde_json::json!({ "schema": "health-basics", "values": { "smoker": true, "bmi": null } });
    m.insert("SummaryDoc", sample_json::<medrelay_dp::SummaryDoc>(summary.clone(), summary));
    let query = serde_json::json!({
        "statistic": { "kind": "count" },
        "filters": [{ "op": "is", "field": "smoker", "value": true }],
        "privacy": { "epsilon": 0.5 },
    });
    let query_min =
        serde_json::json!({ "statistic": { "kind": "median", "field": "bmi" }, "privacy": { "rho": 0.1 } });
    m.insert("DpQuery", sample_json::<medrelay_dp::Query>(query, query_min));
    let reports = medrelay_wire::study::UploadReportsRequest { reports: vec![B64(vec![4, 5, 6])] };
    m.insert("UploadReportsRequest", sample(&reports, &reports));
    m
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Whether `s` matches `pattern`, an anchored sequence of literals and
/// `[...]` classes (with ranges), each optionally followed by `{n}` or `+`:
/// the only forms the spec's patterns use (anything else panics).
fn matches_pattern(pattern: &str, s: &str) -> bool {
    let body = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("pattern {pattern} is not anchored"));
    let p: Vec<char> = body.chars().collect();
    // (character ranges, count, or more)
    type Atom = (Vec<(char, char)>, usize, bool);
    let mut atoms: Vec<Atom> = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let mut class = Vec::new();
        if p[i] == '[' {
            i += 1;
            while p[i] != ']' {
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                    class.push((p[i], p[i + 2]));
                    i += 3;
                } else {
                    class.push((p[i], p[i]));
                    i += 1;
                }
            }
            i += 1;
        } else {
            assert!(!"(){}*?.|\\".contains(p[i]), "pattern {pattern} is not checked here");
            class.push((p[i], p[i]));
            i += 1;
        }
        let (count, more) = match p.get(i) {
            Some('{') => {
                let end = i + p[i..].iter().position(|c| *c == '}').unwrap();
                let n = p[i + 1..end].iter().collect::<String>().parse().unwrap();
                i = end + 1;
                (n, false)
            }
            Some('+') => {
                i += 1;
                (1, true)
            }
            _ => (1, false),
        };
        atoms.push((class, count, more));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut at = 0;
    for (class, count, more) in atoms {
        let fits = |c: &char| class.iter().any(|(lo, hi)| lo <= c && c <= hi);
        let run = chars[at..].iter().take_while(|c| fits(c)).count();
        let take = if more { run } else { count };
        if run < count {
            return false;
        }
        at += take;
    }
    at == chars.len()
}

#[test]
fn the_pattern_checker_checks() {
    assert!(matches_pattern("^[0-9a-f]+$", "00ff"));
    assert!(!matches_pattern("^[0-9a-f]+$", "00fg"));
    assert!(!matches_pattern("^[0-9a-f]+$", ""));
    assert!(matches_pattern("^[0-9a-fA-F]{4}$", "0aF9"));
    assert!(!matches_pattern("^[0-9a-fA-F]{4}$", "0aF"));
    assert!(!matches_pattern("^[0-9a-fA-F]{4}$", "0aF90"));
    assert!(matches_pattern("^[A-Za-z0-9+/]{2}[AQgw]==$", "a+Q=="));
    assert!(!matches_pattern("^[A-Za-z0-9+/]{2}[AQgw]==$", "a+R=="));
}

/// Whether `value` has the JSON type the property schema declares.
fn has_declared_type(prop: &Value, value: &Value) -> bool {
    if let Some(options) = prop.get("enum") {
        return options.as_array().unwrap().contains(value);
    }
    if let Some(options) = prop.get("oneOf") {
        // Exactly one alternative fits: its type, and its required keys present.
        let fits = |o: &Value| {
            has_declared_type(o, value)
                && o.get("required")
                    .and_then(Value::as_array)
                    .is_none_or(|req| req.iter().all(|k| value.get(k.as_str().unwrap()).is_some()))
        };
        return options.as_array().unwrap().iter().filter(|o| fits(o)).count() == 1;
    }
    let ok = match prop["type"].as_str().unwrap() {
        "string" => value.as_str().is_some_and(|s| match prop.get("pattern").and_then(Value::as_str) {
            Some(pattern) => matches_pattern(pattern, s),
            None => true,
        }),
        "array" => {
            value.as_array().is_some_and(|items| items.iter().all(|i| has_declared_type(&prop["items"], i)))
        }
        "object" => value.is_object(),
        "integer" => value.is_u64() || value.is_i64(),
        "boolean" => value.is_boolean(),
        other => panic!("type {other} is not checked here"),
    };
    ok
}

#[actix_web::test]
async fn request_schemas_match_the_wire_types() {
    let spec = fetch_spec().await;
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    // Every request body the spec references is a sampled wire type.
    let referenced: BTreeSet<String> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .filter_map(|op| op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str())
        .map(|r| r.strip_prefix("#/components/schemas/").unwrap().to_owned())
        .collect();
    let samples = samples();
    let sampled: BTreeSet<String> = samples.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(referenced, sampled, "request bodies in the spec vs wire types checked here");

    for (name, s) in &samples {
        let schema = schemas.get(*name).unwrap_or_else(|| panic!("no schema {name}"));
        assert_eq!(schema["type"], "object", "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
        let props = schema["properties"].as_object().unwrap();
        let prop_names: BTreeSet<String> = props.keys().cloned().collect();
        assert_eq!(prop_names, keys(&s.full), "{name}: properties vs serde fields");
        let required: BTreeSet<String> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(required, keys(&s.minimal), "{name}: required vs non-optional fields");
        for (field, value) in s.full.as_object().unwrap() {
            assert!(has_declared_type(&props[field], value), "{name}.{field} = {value} vs {}", props[field]);
        }
        // The documented shapes deserialize; an unknown field is rejected.
        assert!((s.accepts)(&s.full) && (s.accepts)(&s.minimal), "{name}");
        let mut extra = s.full.clone();
        extra.as_object_mut().unwrap().insert("unexpected".into(), Value::Bool(true));
        assert!(!(s.accepts)(&extra), "{name} accepts an unknown field");
        // A missing required field is rejected.
        for field in &required {
            let mut partial = s.minimal.clone();
            partial.as_object_mut().unwrap().remove(field);
            assert!(!(s.accepts)(&partial), "{name} accepts a body without {field}");
        }
    }
}
