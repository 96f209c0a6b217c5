//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of what is served.
//!
//! Written by hand from one table ([`ROUTES`]); a test walks the table and
//! checks every listed route is actually routed (never the catch-all 404),
//! so the spec cannot list a route the server does not have.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// (method, path, summary, needs bearer auth, request body type, success status).
type RouteRow = (&'static str, &'static str, &'static str, bool, Option<&'static str>, u16);

pub(crate) const ROUTES: &[RouteRow] = &[
    ("get", "/healthz", "Health check and log size", false, None, 200),
    ("get", "/metrics", "Prometheus metrics", false, None, 200),
    ("get", "/v1/openapi.json", "This document", false, None, 200),
    ("post", "/v1/auth/challenge", "Ask for a nonce to sign", false, Some("ChallengeRequest"), 200),
    (
        "post",
        "/v1/auth/token",
        "Exchange a signed nonce for a bearer token",
        false,
        Some("TokenRequest"),
        200,
    ),
    (
        "post",
        "/v1/principals",
        "Register a principal (operator token for non-patients)",
        false,
        Some("RegisterRequest"),
        201,
    ),
    (
        "get",
        "/v1/principals/{id}",
        "A principal's name and keys, to a caller with a reason (see description)",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/records",
        "Upload one owner-signed record envelope (patient)",
        true,
        Some("UploadRecordRequest"),
        201,
    ),
    (
        "post",
        "/v1/records/batch",
        "Upload up to 64 envelopes atomically (patient)",
        true,
        Some("UploadRecordsRequest"),
        201,
    ),
    (
        "get",
        "/v1/records/{id}",
        "A record envelope (owner, auditor, a doctor whose grant covers it now)",
        true,
        None,
        200,
    ),
    (
        "get",
        "/v1/patients/{id}/records",
        "Records of a patient (owner, auditor; a doctor: those a grant in force covers)",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/grants",
        "Create a patient-signed grant with its re-encryption keys (patient)",
        true,
        Some("CreateGrantRequest"),
        201,
    ),
    (
        "post",
        "/v1/grants/{id}/revoke",
        "Revoke a grant with a patient-signed revocation (patient)",
        true,
        Some("RevokeRequest"),
        200,
    ),
    ("get", "/v1/patients/{id}/grants", "Grants a patient signed (that patient, auditor)", true, None, 200),
    ("get", "/v1/doctors/{id}/grants", "Grants toward a doctor (that doctor, auditor)", true, None, 200),
    (
        "post",
        "/v1/records/{id}/reencrypt",
        "Re-encrypt a record's capsule toward the calling doctor",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/reencrypt",
        "Batch re-encryption; per-record result or denial (doctor)",
        true,
        Some("ReencryptRequest"),
        200,
    ),
    (
        "get",
        "/v1/log/entries",
        "Entries in [start, end) the caller may read, with their salts (every entry for an auditor)",
        true,
        None,
        200,
    ),
    ("get", "/v1/log/leaves", "Public leaf hashes in [start, end) (reveal no event)", false, None, 200),
    ("get", "/v1/log/checkpoint", "The current signed checkpoint (C2SP signed note)", false, None, 200),
    ("get", "/v1/log/key", "The log's note verifier key", false, None, 200),
    ("get", "/v1/log/inclusion", "Inclusion proof (?index=&tree_size=)", false, None, 200),
    (
        "get",
        "/v1/log/consistency",
        "Consistency proof (?old_size=&new_size=; old_size >= 1 unless both are 0)",
        false,
        None,
        200,
    ),
    ("get", "/v1/log/mine", "The caller's own audit log entries, with their salts", true, None, 200),
    ("get", "/v1/dp/schemas", "Installed DP summary schemas (any principal)", true, None, 200),
    ("get", "/v1/dp/schemas/{name}", "One DP summary schema (any principal)", true, None, 200),
    (
        "put",
        "/v1/dp/schemas/{name}/summary",
        "Submit or replace the caller's summary, validated against the schema (patient)",
        true,
        Some("SummaryDoc"),
        200,
    ),
    ("get", "/v1/dp/schemas/{name}/summary", "The caller's stored summary (patient)", true, None, 200),
    ("delete", "/v1/dp/schemas/{name}/summary", "Withdraw the caller's summary (patient)", true, None, 200),
    (
        "post",
        "/v1/dp/schemas/{name}/query",
        "A DP aggregate query, charged to the caller's budget before the answer is sent (analyst)",
        true,
        Some("DpQuery"),
        200,
    ),
    (
        "get",
        "/v1/dp/schemas/{name}/budget",
        "The caller's privacy budget for the schema (analyst)",
        true,
        None,
        200,
    ),
];

/// Who may read what: the longer description of the routes whose answers
/// depend on who asks (the log and the directory), and the document's
/// overview. docs/THREAT-MODEL.md says the same per party.
const VISIBILITY: &[(&str, &str, &str)] = &[
    (
        "get",
        "/v1/principals/{id}",
        "Names and keys are not public. The entry is shown to the principal itself; to auditors (every \
         entry; 404 for an unknown id); to a patient for any doctor (to check the doctor's key \
         fingerprint before granting); to a doctor for a patient who has granted that doctor something \
         (in force or not). Every other lookup, including one of an unknown id, is the same 403 \
         forbidden, logged as request_refused (principal, not_entitled), so the answer does not tell \
         whether the id exists.",
    ),
    (
        "get",
        "/v1/log/entries",
        "Each entry is {index, salt, event}: the event's canonical bytes and the 32-byte salt its leaf \
         commits with (leaf data = SHA-256(\"medrelay/log-leaf-commitment/v1\\0\" || salt || event), leaf \
         hash = SHA-256(0x00 || leaf data)). An auditor receives every entry of the range; anyone else \
         only the entries whose event is about them: registrations, records, grants and revocations, \
         summaries and refusals of their own, every access served or denied on a patient's records (to \
         the patient and the doctor), a refused record listing to the patient when the doctor's grant \
         from them expired, was revoked or is not valid yet; schema installations to every \
         authenticated principal. Entries the caller may not read are left out.",
    ),
    (
        "get",
        "/v1/log/mine",
        "The entries about the caller, as /v1/log/entries gives them; page with from and limit.",
    ),
    (
        "get",
        "/v1/log/leaves",
        "Public. The RFC 6962 leaf hashes: salted commitments that reveal nothing of their events; with \
         the checkpoint and proofs anyone can check the log is append-only, and an entitled reader can \
         prove an entry in it.",
    ),
];

const OVERVIEW: &str = "The audit log proves without publishing. Public, without a token: the signed \
    checkpoint (C2SP tlog-checkpoint; size 0 carries the empty root), the verifier key, leaf hashes, \
    inclusion and consistency proofs (none from size 0). Each leaf commits to its event with a random \
    salt, so this reveals the number of entries and when the log grows, and no id, name, category or \
    sensitivity class. An event and its salt go only to the principals it is about and to auditors. \
    Directory entries (names, keys) go only to callers with a reason (see GET /v1/principals/{id}). \
    Every request an authenticated principal is refused (another principal's object, wrong role, no \
    grant in force, bad signature) is logged as access_denied or request_refused; identical refusals \
    are coalesced: the first is logged at once, repeats within 60 s are counted and logged as one entry \
    with their count when the window ends.";

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

/// The spec as JSON.
pub(crate) fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, auth, body, ok) in ROUTES {
        let mut responses = Map::new();
        responses.insert(ok.to_string(), json!({ "description": "success" }));
        responses.insert(
            "400".into(),
            error_response(
                "malformed request (invalid_json, invalid_field, invalid_parameter, bad_signature; \
                 a batch naming one id twice is invalid_field; a bad signature from an authenticated \
                 principal is also logged as request_refused)",
            ),
        );
        responses.insert("413".into(), error_response("body over the documented limit"));
        responses.insert("500".into(), error_response("internal error (generic body)"));
        let mut op = json!({ "summary": summary, "responses": responses });
        if let Some((.., text)) = VISIBILITY.iter().find(|(m, p, _)| m == method && p == path) {
            op["description"] = json!(text);
        }
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = error_response("missing, unknown, expired or forged token");
            op["responses"]["403"] = error_response(
                "wrong role (wrong_role), no grant in force or record outside it (the policy's reason \
                 code: no_grant, expired, revoked, not_yet_valid, out_of_scope, sensitive_excluded), or \
                 another principal's object (forbidden); each is logged as access_denied or \
                 request_refused (identical refusals coalesced per 60 s window)",
            );
        }
        if let Some(b) = body {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } }
            });
        }
        if path.contains("{id}") {
            op["parameters"] =
                json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if path.contains("{name}") {
            op["parameters"] = json!([{ "name": "name", "in": "path", "required": true,
                "schema": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } }]);
        }
        if path.starts_with("/v1/dp/") && *auth {
            op["responses"]["403"] = error_response(
                "wrong role, or the query does not fit the budget (budget_exceeded, no_budget); nothing was spent",
            );
            op["responses"]["404"] = error_response("unknown schema, or no summary stored");
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let b64 = json!({ "type": "string", "contentEncoding": "base64" });
    let hex = json!({ "type": "string", "pattern": "^[0-9a-f]+$" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "medrelay", "version": env!("CARGO_PKG_VERSION"), "description": OVERVIEW },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "ErrorBody": { "type": "object", "additionalProperties": false,
                    "required": ["error", "message"],
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" } } },
                "UploadRecordRequest": { "type": "object", "additionalProperties": false,
                    "required": ["envelope"], "properties": { "envelope": b64 } },
                "UploadRecordsRequest": { "type": "object", "additionalProperties": false,
                    "required": ["envelopes"],
                    "properties": { "envelopes": { "type": "array", "items": b64,
                        "maxItems": medrelay_wire::limits::MAX_BATCH_RECORDS } } },
                "CreateGrantRequest": { "type": "object", "additionalProperties": false,
                    "required": ["grant", "rekeys"],
                    "properties": { "grant": b64, "rekeys": { "type": "array", "items": b64,
                        "maxItems": medrelay_wire::limits::MAX_REKEYS_PER_GRANT } } },
                "RevokeRequest": { "type": "object", "additionalProperties": false,
                    "required": ["revocation"], "properties": { "revocation": b64 } },
                "ReencryptRequest": { "type": "object", "additionalProperties": false,
                    "required": ["record_ids"],
                    "properties": { "record_ids": { "type": "array", "items": hex,
                        "maxItems": medrelay_wire::limits::MAX_BATCH_REENCRYPT } } },
                "ChallengeRequest": { "type": "object", "additionalProperties": false,
                    "required": ["principal"], "properties": { "principal": hex } },
                "TokenRequest": { "type": "object", "additionalProperties": false,
                    "required": ["principal", "nonce", "signature"],
                    "properties": { "principal": hex, "nonce": b64, "signature": b64 } },
                "SummaryDoc": { "type": "object", "additionalProperties": false,
                    "description": format!("A patient's summary (at most {} bytes): values by field name, null for unknown; numeric values within the schema's bounds", medrelay_dp::MAX_SUMMARY_BYTES),
                    "required": ["schema", "values"],
                    "properties": { "schema": { "type": "string" },
                        "values": { "type": "object", "additionalProperties": {
                            "type": ["boolean", "integer", "number", "string", "null"] } } } },
                "DpQuery": { "type": "object", "additionalProperties": false,
                    "description": format!("A medrelay-dp query (at most {} bytes, at most {} filters)", medrelay_dp::MAX_QUERY_BYTES, medrelay_dp::MAX_FILTERS),
                    "required": ["statistic", "privacy"],
                    "properties": {
                        "statistic": { "type": "object", "required": ["kind"], "properties": { "kind": { "enum":
                            ["count", "sum", "mean", "histogram", "variance", "std_dev", "correlation", "quantile", "median"] } } },
                        "filters": { "type": "array", "maxItems": medrelay_dp::MAX_FILTERS, "items": { "type": "object",
                            "required": ["op", "field"], "properties": { "op": { "enum": ["is", "one_of", "range"] } } } },
                        "privacy": { "oneOf": [
                            { "type": "object", "additionalProperties": false, "required": ["epsilon"],
                              "properties": { "epsilon": { "type": "number", "exclusiveMinimum": 0, "maximum": 100 } } },
                            { "type": "object", "additionalProperties": false, "required": ["rho"],
                              "properties": { "rho": { "type": "number", "exclusiveMinimum": 0, "maximum": 100 } } } ] } } },
                "RegisterRequest": { "type": "object", "additionalProperties": false,
                    "required": ["role", "name", "signing_key", "pre_public_keys", "signature"],
                    "properties": {
                        "role": { "enum": ["patient", "doctor", "analyst", "auditor"] },
                        "name": { "type": "string", "maxLength": medrelay_wire::limits::MAX_NAME_LEN },
                        "signing_key": b64, "pre_public_keys": b64,
                        "enrollment_token": { "type": "string" }, "signature": b64 } },
            }
        }
    })
}

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(spec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::SledStore;
    use crate::{app, AppState, Clock};
    use actix_web::test;

    #[actix_web::test]
    async fn every_listed_route_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let key = medrelay_crypto::SigningKey::from_seed(&[1; 32]);
        let signer = medrelay_policy::LogSigner::new("test/log", &key).unwrap();
        let state = AppState::new(SledStore::open(dir.path()).unwrap(), Clock::manual(1), signer);
        let svc = test::init_service(app(state)).await;
        for (method, path, ..) in ROUTES {
            let uri = path.replace("{id}", "00").replace("{name}", "health-basics");
            let req = match *method {
                "get" => test::TestRequest::get(),
                "put" => test::TestRequest::put(),
                "delete" => test::TestRequest::delete(),
                _ => test::TestRequest::post(),
            }
            .uri(&uri)
            .to_request();
            let res = test::call_service(&svc, req).await;
            let body: serde_json::Value = if res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
            {
                test::read_body_json(res).await
            } else {
                json!({})
            };
            assert_ne!(body["message"], json!("route not found"), "{method} {path} is not routed");
        }
        let spec = spec();
        // Every visibility text is attached to a listed route.
        for (method, path, text) in VISIBILITY {
            assert_eq!(spec["paths"][*path][*method]["description"], json!(text), "{method} {path}");
        }
        assert_eq!(
            spec["paths"].as_object().unwrap().len(),
            ROUTES.iter().map(|r| r.1).collect::<std::collections::BTreeSet<_>>().len()
        );
    }
}
