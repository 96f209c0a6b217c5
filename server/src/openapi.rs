//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of what is served.
//!
//! Written by hand from one table ([`ROUTES`]); a test walks the table and
//! checks every listed route is actually routed (never the catch-all 404),
//! so the spec cannot list a route the server does not have. Every status
//! an operation can answer is listed (see [`responses`]), ids carry their
//! exact formats, and a method the table does not list for a path answers
//! `405 method_not_allowed` with `Allow`; `server/tests/schemathesis.rs`
//! checks all of it against the running server.

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
        "Upload one owner-signed record envelope and, unless already stored, its owner-signed batch capsule (patient)",
        true,
        Some("UploadRecordRequest"),
        201,
    ),
    (
        "post",
        "/v1/records/batch",
        "Upload up to 8 batch capsules and 1024 envelopes sealed under them: one transaction, one flush (patient)",
        true,
        Some("UploadRecordsRequest"),
        201,
    ),
    (
        "get",
        "/v1/records/{id}",
        "A record envelope, with its batch capsule for the owner and auditors (owner, auditor, a doctor whose grant covers it now)",
        true,
        None,
        200,
    ),
    (
        "get",
        "/v1/patients/{id}/records",
        "Records of a patient, by id, 1000 scanned a page (`next`: the cursor to pass as ?after=) (owner, auditor; a doctor: only those a grant in force covers)",
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
        "One record and its batch capsule re-encrypted toward the calling doctor (made once per capsule and grant)",
        true,
        None,
        200,
    ),
    (
        "post",
        "/v1/reencrypt",
        "Batched fetch of up to 1024 records: per-record envelope or denial, and each batch capsule they need once, re-encrypted toward the doctor (doctor)",
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
/// The methods the document lists for the route pattern `pattern`,
/// upper-case and comma-separated: the `Allow` header of a 405.
pub(crate) fn allowed_methods(pattern: &str) -> String {
    let methods: Vec<String> =
        ROUTES.iter().filter(|r| r.1 == pattern).map(|r| r.0.to_ascii_uppercase()).collect();
    methods.join(", ")
}

/// The methods the document lists for a request path (a `{param}` segment
/// matches any one non-empty segment); empty if no listed path matches.
pub(crate) fn allowed_methods_at(path: &str) -> String {
    let matches = |pattern: &str| {
        let (mut p, mut q) = (pattern.split('/'), path.split('/'));
        loop {
            match (p.next(), q.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                    if b.is_empty() {
                        return false;
                    }
                }
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
    };
    let methods: Vec<String> =
        ROUTES.iter().filter(|r| matches(r.1)).map(|r| r.0.to_ascii_uppercase()).collect();
    methods.join(", ")
}

/// Query parameters of the routes that take them: (path, name, minimum,
/// maximum, required).
const QUERY_PARAMS: &[(&str, &str, u64, Option<u64>, bool)] = &[
    ("/v1/log/leaves", "start", 0, None, true),
    ("/v1/log/leaves", "end", 0, None, true),
    ("/v1/log/entries", "start", 0, None, true),
    ("/v1/log/entries", "end", 0, None, true),
    ("/v1/log/inclusion", "index", 0, None, true),
    ("/v1/log/inclusion", "tree_size", 1, None, true),
    ("/v1/log/consistency", "old_size", 0, None, true),
    ("/v1/log/consistency", "new_size", 0, None, true),
    ("/v1/log/mine", "from", 0, None, false),
    ("/v1/log/mine", "limit", 1, Some(medrelay_wire::limits::MAX_LIST_ITEMS as u64), false),
];

/// A 32-byte value in standard padded base64 (keys, nonces).
const B64_32: &str = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";
/// A 64-byte value in standard padded base64 (Ed25519 signatures).
const B64_64: &str = "^[A-Za-z0-9+/]{85}[AQgw]==$";
/// A principal id: SHA-256 of its signing key, 64 hex digits.
const PRINCIPAL_ID: &str = "^[0-9a-fA-F]{64}$";
/// A record or grant id: 16 random bytes, 32 hex digits.
const OBJECT_ID: &str = "^[0-9a-fA-F]{32}$";

/// What `{id}` names in `path`, and its format.
fn id_parameter(path: &str) -> Value {
    let (what, pattern) = if path.starts_with("/v1/records/") {
        ("record id (32 hex digits)", OBJECT_ID)
    } else if path.starts_with("/v1/grants/") {
        ("grant id (32 hex digits)", OBJECT_ID)
    } else {
        ("principal id (64 hex digits: SHA-256 of its signing key)", PRINCIPAL_ID)
    };
    json!({ "name": "id", "in": "path", "required": true, "description": what,
        "schema": { "type": "string", "pattern": pattern } })
}

/// The `Retry-After` header of a 429 or 503.
fn retry_after() -> Value {
    json!({ "Retry-After": { "description": "seconds to wait before retrying", "required": true,
        "schema": { "type": "integer", "minimum": 1 } } })
}

/// Every status `method path` can answer besides success, with why.
fn responses(method: &str, path: &str, auth: bool, body: bool) -> Vec<(u16, String)> {
    let mut r: Vec<(u16, String)> = vec![(
        400,
        "malformed request (invalid_json, invalid_field, invalid_parameter, bad_signature; a batch \
         naming one id twice is invalid_field; a bad signature from an authenticated principal is \
         also logged as request_refused; a DP query \
         below the privacy floor or past the work bounds: privacy_below_floor, \
         noise_scale_too_large, sampler_cost_too_large, calibration_failed)"
            .into(),
    )];
    if auth {
        r.push((401, "missing, unknown, expired or forged token (or a session its suspension ended)".into()));
        r.push((
            403,
            if path.starts_with("/v1/dp/") {
                "wrong role, suspended, or the query does not fit the budget (budget_exceeded, \
                 no_budget); nothing was spent"
                    .into()
            } else {
                "wrong role (wrong_role), suspended, no grant in force or record outside it (the \
                 policy's reason code: no_grant, expired, revoked, not_yet_valid, out_of_scope, \
                 class_not_granted, sensitive_excluded), or another principal's object (forbidden); each is logged as \
                 access_denied or request_refused (identical refusals coalesced per 60 s window)"
                    .into()
            },
        ));
    }
    if path == "/v1/auth/token" {
        r.push((401, "unknown or used challenge, or a bad signature".into()));
        r.push((403, "the principal is suspended by the operator (logged)".into()));
    }
    if path == "/v1/principals" {
        r.push((401, "missing, used or expired enrollment token (invalid_enrollment)".into()));
    }
    let not_found = path.contains('{') || path == "/v1/auth/challenge" || path == "/v1/grants";
    if not_found {
        r.push((404, "no such principal, record, grant, schema or summary".into()));
    }
    let conflicts =
        ["/v1/principals", "/v1/records", "/v1/records/batch", "/v1/grants", "/v1/grants/{id}/revoke"];
    if method == "post" && conflicts.contains(&path) {
        r.push((409, "already registered, stored or revoked".into()));
    }
    if body {
        r.push((408, "the body did not arrive in time after the headers (body_timeout)".into()));
        r.push((413, "body over this route's documented limit (payload_too_large)".into()));
        r.push((415, "not Content-Type: application/json (unsupported_media_type)".into()));
    }
    let anonymous_quota = ["/v1/principals", "/v1/auth/challenge", "/v1/auth/token"];
    if auth || (method == "post" && anonymous_quota.contains(&path)) {
        r.push((429, "a quota is exhausted (rate_limited); nothing was done".into()));
    }
    if path.ends_with("/query") {
        r.push((
            503,
            "every DP slot stayed busy, or the answer missed its deadline (dp_busy, \
                      dp_deadline); nothing was spent"
                .into(),
        ));
    }
    r.push((500, "internal error (generic body)".into()));
    r
}

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
        let media =
            if matches!(*path, "/metrics" | "/v1/log/key") { "text/plain" } else { "application/json" };
        responses.insert(ok.to_string(), json!({ "description": "success", "content": { media: {} } }));
        for (status, why) in self::responses(method, path, *auth, body.is_some()) {
            let mut answer = error_response(&why);
            if status == 429 || status == 503 {
                answer["headers"] = retry_after();
            }
            responses.insert(status.to_string(), answer);
        }
        let mut op = json!({ "summary": summary, "responses": responses });
        if let Some((.., text)) = VISIBILITY.iter().find(|(m, p, _)| m == method && p == path) {
            op["description"] = json!(text);
        }
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
        }
        if let Some(b) = body {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } }
            });
        }
        if path.contains("{id}") {
            op["parameters"] = json!([id_parameter(path)]);
        }
        if path.contains("{name}") {
            op["parameters"] = json!([{ "name": "name", "in": "path", "required": true,
                "description": "schema name",
                "schema": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } }]);
        }
        let query: Vec<Value> = QUERY_PARAMS
            .iter()
            .filter(|q| q.0 == *path)
            .map(|(_, name, min, max, required)| {
                let mut schema = json!({ "type": "integer", "minimum": min });
                if let Some(m) = max {
                    schema["maximum"] = json!(m);
                }
                json!({ "name": name, "in": "query", "required": required, "schema": schema })
            })
            .collect();
        if !query.is_empty() {
            op["parameters"] = Value::Array(query);
        }
        if path.starts_with("/v1/aggregator/") {
            let second = if path.contains("{job}") {
                json!({ "name": "job", "in": "path", "required": true, "description": "job id (32 hex digits)",
                    "schema": { "type": "string", "pattern": OBJECT_ID } })
            } else {
                json!({ "name": "batch", "in": "path", "required": true,
                    "schema": { "type": "integer", "minimum": 0 } })
            };
            op["parameters"] = json!([
                { "name": "study", "in": "path", "required": true, "description": "study name",
                  "schema": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } },
                second]);
            op["responses"]["401"] = error_response("missing or wrong aggregator token");
            op["responses"]["404"] = error_response("not a helper aggregator, or unknown study");
            op["responses"]["409"] = error_response(
                "refused with a typed code, nothing changed: batch_collected, batch_mismatch, batch_too_small, \
                 study_mismatch, job_conflict",
            );
        }
        if *path == "/v1/studies" {
            op["responses"]["404"] = error_response("this server is not a study leader");
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
    let b64_32 = json!({ "type": "string", "pattern": B64_32 });
    let b64_64 = json!({ "type": "string", "pattern": B64_64 });
    let principal_id = json!({ "type": "string", "pattern": PRINCIPAL_ID });
    let object_id = json!({ "type": "string", "pattern": OBJECT_ID });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "medrelay", "version": env!("CARGO_PKG_VERSION"),
            "description": format!("{OVERVIEW} Every error is a JSON ErrorBody {{error, message}}. A \
                method not listed for a path answers 405 method_not_allowed with an Allow header. Body \
                limits are per route (see medrelay_wire::limits); quotas answer 429 with Retry-After.") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "ErrorBody": { "type": "object", "additionalProperties": false,
                    "required": ["error", "message"],
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" } } },
                "UploadRecordRequest": { "type": "object", "additionalProperties": false,
                    "required": ["envelope"], "properties": { "envelope": b64, "capsule": b64 } },
                "UploadRecordsRequest": { "type": "object", "additionalProperties": false,
                    "required": ["envelopes"],
                    "properties": { "capsules": { "type": "array", "items": b64,
                        "maxItems": medrelay_wire::limits::MAX_BATCH_CAPSULES },
                        "envelopes": { "type": "array", "items": b64,
                        "maxItems": medrelay_wire::limits::MAX_BATCH_RECORDS } } },
                "CreateGrantRequest": { "type": "object", "additionalProperties": false,
                    "required": ["grant", "rekeys"],
                    "properties": { "grant": b64, "rekeys": { "type": "array", "items": b64,
                        "maxItems": medrelay_wire::limits::MAX_REKEYS_PER_GRANT } } },
                "RevokeRequest": { "type": "object", "additionalProperties": false,
                    "required": ["revocation"], "properties": { "revocation": b64 } },
                "ReencryptRequest": { "type": "object", "additionalProperties": false,
                    "required": ["record_ids"],
                    "properties": { "record_ids": { "type": "array", "items": object_id,
                        "maxItems": medrelay_wire::limits::MAX_BATCH_REENCRYPT } } },
                "ChallengeRequest": { "type": "object", "additionalProperties": false,
                    "required": ["principal"], "properties": { "principal": principal_id } },
                "TokenRequest": { "type": "object", "additionalProperties": false,
                    "required": ["principal", "nonce", "signature"],
                    "properties": { "principal": principal_id, "nonce": b64_32, "signature": b64_64 } },
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
                        "signing_key": b64_32, "pre_public_keys": b64,
                        "enrollment_token": { "type": "string", "maxLength": 128 }, "signature": b64_64 } },
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
        // Query parameters belong to listed routes.
        for (path, name, ..) in QUERY_PARAMS {
            assert!(ROUTES.iter().any(|r| r.1 == *path), "{path} ({name}) is not listed");
        }
    }

    #[actix_web::test]
    async fn allowed_methods_match_listed_paths() {
        assert_eq!(allowed_methods_at("/v1/principals/abc"), "GET");
        assert_eq!(allowed_methods_at("/v1/dp/schemas/x/summary"), "PUT, GET, DELETE");
        assert_eq!(allowed_methods_at("/v1/principals//"), "");
        assert_eq!(allowed_methods_at("/v1/nothing"), "");
        assert_eq!(allowed_methods("/v1/records/batch"), "POST");
        // Quotas and body errors are documented where they can happen.
        let spec = spec();
        let statuses = |m: &str, p: &str| -> Vec<String> {
            spec["paths"][p][m]["responses"].as_object().unwrap().keys().cloned().collect()
        };
        for code in ["408", "413", "415", "429"] {
            assert!(statuses("post", "/v1/grants").contains(&code.to_owned()), "{code}");
        }
        assert!(statuses("post", "/v1/dp/schemas/{name}/query").contains(&"503".to_owned()));
        assert!(!statuses("get", "/healthz").contains(&"429".to_owned()));
        assert_eq!(
            spec["paths"]["/v1/principals/{id}"]["get"]["parameters"][0]["schema"]["pattern"],
            json!(PRINCIPAL_ID)
        );
    }
}
