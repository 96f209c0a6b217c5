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
    ("get", "/v1/principals/{id}", "A registered principal and its public keys", false, None, 200),
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
    ("get", "/v1/records/{id}", "A record envelope (owner, granted doctor, auditor)", true, None, 200),
    (
        "get",
        "/v1/patients/{id}/records",
        "Records of a patient (owner, granted doctor, auditor)",
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
    ("get", "/v1/log/entries", "Audit log entries in [start, end)", false, None, 200),
    ("get", "/v1/log/checkpoint", "The current signed checkpoint (C2SP signed note)", false, None, 200),
    ("get", "/v1/log/key", "The log's note verifier key", false, None, 200),
    ("get", "/v1/log/inclusion", "Inclusion proof (?index=&tree_size=)", false, None, 200),
    ("get", "/v1/log/consistency", "Consistency proof (?old_size=&new_size=)", false, None, 200),
    ("get", "/v1/log/mine", "Audit log entries about the caller", true, None, 200),
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
    ("get", "/v1/studies", "Private studies this leader aggregator serves (any principal)", true, None, 200),
    ("get", "/v1/studies/{name}", "A study definition and its log index (any principal)", true, None, 200),
    (
        "post",
        "/v1/studies/{name}/reports",
        "Upload 1-1000 sealed reports; per-report refusals with codes (patient)",
        true,
        Some("UploadReportsRequest"),
        200,
    ),
    (
        "get",
        "/v1/studies/{name}/status",
        "Open batch, readiness, released batches (analyst)",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/studies/{name}/batches/{batch}/release",
        "Release a batch once, with both aggregators' noise; its cost is logged first (analyst)",
        true,
        None,
        200,
    ),
    ("get", "/v1/studies/{name}/releases", "Released batches (analyst)", true, None, 200),
    ("get", "/v1/studies/{name}/releases/{batch}", "One released batch (analyst)", true, None, 200),
    (
        "put",
        "/v1/aggregator/studies/{study}/jobs/{job}",
        "Helper only, for the leader (aggregator token; binary MRAJ body and MRAR answer): prepare a job",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/aggregator/studies/{study}/batches/{batch}/collect",
        "Helper only, for the leader (aggregator token; binary MRCQ body and MRCR answer): a batch's noisy share, once",
        true,
        None,
        200,
    ),
];

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
                 a bad signature from an authenticated principal is also logged as request_refused)",
            ),
        );
        responses.insert("413".into(), error_response("body over the documented limit"));
        responses.insert("500".into(), error_response("internal error (generic body)"));
        let mut op = json!({ "summary": summary, "responses": responses });
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = error_response("missing, unknown, expired or forged token");
            op["responses"]["403"] = error_response(
                "wrong role, access denied (reason code, logged), or another principal's object \
                 (forbidden, logged as request_refused)",
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
        if path.starts_with("/v1/aggregator/") {
            op["responses"]["404"] = error_response("not a helper aggregator, or unknown study");
            op["responses"]["409"] = error_response(
                "refused with a typed code, nothing changed: batch_collected, batch_mismatch, batch_too_small, \
                 study_mismatch, job_conflict",
            );
        }
        if path.starts_with("/v1/studies/") {
            op["responses"]["404"] =
                error_response("unknown study or batch, or this server is not a study leader");
            op["responses"]["409"] = error_response(
                "refused with a typed code, nothing changed: batch_too_small, already_released, batch_mismatch, \
                 study_mismatch, helper_unavailable",
            );
            if path.contains("{batch}") {
                op["parameters"] = json!([
                    { "name": "name", "in": "path", "required": true,
                      "schema": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } },
                    { "name": "batch", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }]);
            }
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let b64 = json!({ "type": "string", "contentEncoding": "base64" });
    let hex = json!({ "type": "string", "pattern": "^[0-9a-f]+$" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "medrelay", "version": env!("CARGO_PKG_VERSION") },
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
                "UploadReportsRequest": { "type": "object", "additionalProperties": false,
                    "description": "medrelay_dp::study::Report blobs (MRSR v1): report id, time, study hash, public share, and one HPKE ciphertext per aggregator",
                    "required": ["reports"],
                    "properties": { "reports": { "type": "array", "items": b64, "minItems": 1,
                        "maxItems": medrelay_wire::study::MAX_REPORTS_PER_UPLOAD } } },
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
        assert_eq!(
            spec["paths"].as_object().unwrap().len(),
            ROUTES.iter().map(|r| r.1).collect::<std::collections::BTreeSet<_>>().len()
        );
    }
}
