//! A blocking HTTP client over the `/v1` wire types.
//!
//! [`Http`] speaks JSON to one server (`http://` or `https://`; rustls with
//! the webpki roots plus an optional extra CA certificate file, for a
//! hospital's private CA). Server errors become
//! [`ClientError::Server`] with the server's code and message; transport
//! failures become one [`ClientError::Unreachable`] line.
//!
//! Authentication is challenge → signature → bearer token
//! ([`medrelay_wire::challenge_message`]); the token is cached in memory
//! (zeroized on drop, never printed) and renewed shortly before it expires
//! or once after a `401`.
//!
//! Every answer is read with a size limit before parsing, and every JSON
//! type rejects unknown fields.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medrelay_crypto::{domain, GrantId, PrincipalId, RecordId, SigningKey, Timestamp};
use medrelay_wire::dp::{BudgetStatus, DpAnswer, Query, SchemaInfo, SchemaList, SummaryDoc, SummaryReceipt};
use medrelay_wire::{
    challenge_message, limits, ChallengeRequest, ChallengeResponse, CheckpointResponse, CreateGrantRequest,
    ErrorBody, GrantList, GrantReceipt, Health, LeafHashes, LogEntries, PrincipalInfo, ProofResponse,
    RecordList, RecordSummary, ReencryptRequest, ReencryptResponse, RegisterRequest, RevokeRequest,
    TokenRequest, TokenResponse, UploadRecordRequest, UploadRecordsRequest, UploadRecordsResponse, B64,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::time::now;
use crate::ClientError;

/// Largest ordinary JSON answer read (lists, receipts, proofs).
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;
/// Largest answer that carries envelopes (a batch re-encryption of up to
/// [`limits::MAX_BATCH_REENCRYPT`] records, base64).
pub const MAX_BATCH_ANSWER_BYTES: u64 = 200 * 1024 * 1024;
/// Largest DP answer read (a histogram of at most `medrelay_dp::MAX_BINS`
/// bins, the query echoed, the components and the budget).
pub const MAX_DP_ANSWER_BYTES: u64 = 256 * 1024;
/// Largest error body read.
const MAX_ERROR_BYTES: u64 = 64 * 1024;
/// A token is renewed when it has less than this many seconds left.
const TOKEN_MARGIN_SECS: u64 = 30;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Base URL, e.g. `https://medrelay.example:8443`.
    pub url: String,
    /// Extra PEM CA certificate(s) to trust besides the webpki roots.
    pub ca_cert: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ServerOptions {
    /// Options for `url` with no extra CA and a 120 s timeout (grant
    /// uploads carry several MB of re-encryption keys).
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ca_cert: None, timeout: Duration::from_secs(120) }
    }
}

/// Validates a base URL: `http://` or `https://`, a host, no query or
/// fragment (see [`medrelay_wire::normalize_base_url`]). Returns it without
/// a trailing slash.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    medrelay_wire::normalize_base_url(url)
        .map_err(|e| ClientError::InvalidUrl { url: url.to_owned(), reason: e.reason() })
}

struct CachedToken {
    token: Zeroizing<String>,
    expires_at: Timestamp,
}

/// The connection to one server, optionally with an identity to
/// authenticate as.
pub struct Http {
    agent: ureq::Agent,
    base: String,
    identity: Option<Arc<SigningKey>>,
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("base", &self.base).finish_non_exhaustive()
    }
}

fn load_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let err = |reason: String| ClientError::CaCert { path: path.to_owned(), reason };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > 1024 * 1024 {
        return Err(err("larger than 1 MiB".into()));
    }
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| err(e.to_string()))? {
            ureq::tls::PemItem::Certificate(c) => out.push(c),
            _ => continue,
        }
    }
    if out.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(out)
}

impl Http {
    /// A client for `opts.url`. Reads the extra CA file now, so a bad file is
    /// reported before any request.
    pub fn new(opts: &ServerOptions) -> Result<Self, ClientError> {
        let base = normalize_url(&opts.url)?;
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        if let Some(path) = &opts.ca_cert {
            let mut roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            roots.extend(load_ca(path)?);
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(opts.timeout))
            .max_redirects(0)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self { agent, base, identity: None, token: Mutex::new(None) })
    }

    /// The same connection, authenticating as `key` when an endpoint needs it.
    pub fn with_identity(mut self, key: Arc<SigningKey>) -> Self {
        self.identity = Some(key);
        self.token = Mutex::new(None);
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::BodyExceedsLimit(n) => {
                ClientError::Protocol(format!("answer larger than {n} bytes"))
            }
            other => ClientError::Unreachable { url: self.base.clone(), reason: other.to_string() },
        }
    }

    /// Sends one request (`GET`, `DELETE`, `PUT` or `POST`) and returns
    /// status and body (read with `limit`).
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.url(path);
        let bearer = token.map(|t| Zeroizing::new(format!("Bearer {t}")));
        let result = match (method, body) {
            ("GET" | "DELETE", _) => {
                let req = if method == "GET" { self.agent.get(&url) } else { self.agent.delete(&url) };
                let mut req = req.header("Accept", "application/json");
                if let Some(b) = &bearer {
                    req = req.header("Authorization", b.as_str());
                }
                req.call()
            }
            (_, body) => {
                let req = if method == "PUT" { self.agent.put(&url) } else { self.agent.post(&url) };
                let mut req = req.header("Accept", "application/json");
                if let Some(b) = &bearer {
                    req = req.header("Authorization", b.as_str());
                }
                match body {
                    Some(bytes) => req.header("Content-Type", "application/json").send(&bytes[..]),
                    None => req.send_empty(),
                }
            }
        };
        let mut resp = result.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let limit = if status >= 400 { MAX_ERROR_BYTES } else { limit };
        let bytes =
            resp.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| self.transport(e))?;
        Ok((status, bytes))
    }

    fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, ClientError> {
        if (200..300).contains(&status) {
            return serde_json::from_slice(bytes)
                .map_err(|e| ClientError::Protocol(format!("status {status}, unreadable JSON: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(b) => Err(ClientError::Server { status, code: b.error, message: b.message }),
            Err(_) => Err(ClientError::Server {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }

    fn json_body<B: Serialize>(body: &B) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(body).map_err(|e| ClientError::Protocol(format!("encoding the request: {e}")))
    }

    fn get_public<T: DeserializeOwned>(&self, path: &str, limit: u64) -> Result<T, ClientError> {
        let (s, b) = self.send("GET", path, None, None, limit)?;
        Self::decode(s, &b)
    }

    fn post_public<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let (s, b) = self.send("POST", path, Some(Self::json_body(body)?), None, MAX_ANSWER_BYTES)?;
        Self::decode(s, &b)
    }

    /// An authenticated request; on `401` the token is renewed once.
    pub(crate) fn authed<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        limit: u64,
    ) -> Result<T, ClientError> {
        let token = self.token(false)?;
        let (s, b) = self.send(method, path, body.clone(), Some(&token), limit)?;
        if s == 401 {
            let token = self.token(true)?;
            let (s, b) = self.send(method, path, body, Some(&token), limit)?;
            return Self::decode(s, &b);
        }
        Self::decode(s, &b)
    }

    /// A bearer token for the identity: the cached one, or a fresh one.
    fn token(&self, renew: bool) -> Result<Zeroizing<String>, ClientError> {
        let key = self
            .identity
            .as_ref()
            .ok_or_else(|| ClientError::Invalid("this request needs a profile identity".into()))?;
        let mut cache =
            self.token.lock().map_err(|_| ClientError::Protocol("token cache poisoned".into()))?;
        if !renew {
            if let Some(c) = cache.as_ref() {
                if now().plus_seconds(TOKEN_MARGIN_SECS) < c.expires_at {
                    return Ok(c.token.clone());
                }
            }
        }
        let principal = key.principal_id();
        let ch: ChallengeResponse =
            self.post_public("/v1/auth/challenge", &ChallengeRequest { principal })?;
        if ch.nonce.len() != limits::NONCE_LEN {
            return Err(ClientError::Protocol("challenge nonce has the wrong length".into()));
        }
        let signature =
            key.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
        let resp: TokenResponse =
            self.post_public("/v1/auth/token", &TokenRequest { principal, nonce: ch.nonce, signature })?;
        let token = Zeroizing::new(resp.token.clone());
        // Drop the response's own copy promptly.
        let mut resp = resp;
        zeroize::Zeroize::zeroize(&mut resp.token);
        *cache = Some(CachedToken { token: token.clone(), expires_at: resp.expires_at });
        Ok(token)
    }

    // ------------------------------------------------------------ endpoints

    /// `GET /healthz`.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.get_public("/healthz", MAX_ANSWER_BYTES)
    }

    /// `POST /v1/principals`.
    pub fn register(&self, req: &RegisterRequest) -> Result<PrincipalInfo, ClientError> {
        self.post_public("/v1/principals", req)
    }

    /// `GET /v1/principals/{id}` (authenticated: names and keys are shown
    /// only to those with a reason; unverified, see
    /// [`crate::transparency::fetch_principal`]).
    pub fn principal(&self, id: &PrincipalId) -> Result<PrincipalInfo, ClientError> {
        self.authed("GET", &format!("/v1/principals/{id}"), None, MAX_ANSWER_BYTES)
    }

    /// `POST /v1/records/batch`.
    pub fn upload_records(
        &self,
        capsules: Vec<B64>,
        envelopes: Vec<B64>,
    ) -> Result<UploadRecordsResponse, ClientError> {
        let body = Self::json_body(&UploadRecordsRequest { capsules, envelopes })?;
        self.authed("POST", "/v1/records/batch", Some(body), MAX_ANSWER_BYTES)
    }

    /// `GET /v1/patients/{id}/records?after=`: one page, ordered by id.
    pub fn records_of(
        &self,
        patient: &PrincipalId,
        after: Option<&RecordId>,
    ) -> Result<RecordList, ClientError> {
        let path = match after {
            None => format!("/v1/patients/{patient}/records"),
            Some(a) => format!("/v1/patients/{patient}/records?after={a}"),
        };
        self.authed("GET", &path, None, MAX_ANSWER_BYTES)
    }

    /// Every record of `patient` this principal may see, page by page.
    pub fn all_records_of(&self, patient: &PrincipalId) -> Result<Vec<RecordSummary>, ClientError> {
        let mut out: Vec<RecordSummary> = Vec::new();
        let mut after: Option<RecordId> = None;
        loop {
            let page = self.records_of(patient, after.as_ref())?;
            if let (Some(last), Some(first)) = (out.last(), page.records.first()) {
                if first.record_id <= last.record_id {
                    return Err(ClientError::Protocol("record pages out of order".into()));
                }
            }
            out.extend(page.records);
            match page.next {
                Some(next) if after.is_none_or(|a| next > a) => after = Some(next),
                Some(_) => return Err(ClientError::Protocol("record pages do not advance".into())),
                None => return Ok(out),
            }
        }
    }

    /// `GET /v1/records/{id}`: the encoded envelope.
    /// The envelope, and its batch capsule when the caller is the owner or
    /// an auditor.
    pub fn envelope(&self, id: &RecordId) -> Result<(Vec<u8>, Option<Vec<u8>>), ClientError> {
        let r: UploadRecordRequest = self.authed(
            "GET",
            &format!("/v1/records/{id}"),
            None,
            2 * (limits::MAX_ENVELOPE_BYTES + limits::MAX_CAPSULE_BYTES) as u64,
        )?;
        Ok((r.envelope.into_bytes(), r.capsule.map(B64::into_bytes)))
    }

    /// `POST /v1/grants`.
    pub fn create_grant(&self, req: &CreateGrantRequest) -> Result<GrantReceipt, ClientError> {
        self.authed("POST", "/v1/grants", Some(Self::json_body(req)?), MAX_ANSWER_BYTES)
    }

    /// `POST /v1/grants/{id}/revoke`.
    pub fn revoke(&self, id: &GrantId, req: &RevokeRequest) -> Result<GrantReceipt, ClientError> {
        self.authed("POST", &format!("/v1/grants/{id}/revoke"), Some(Self::json_body(req)?), MAX_ANSWER_BYTES)
    }

    /// `GET /v1/patients/{id}/grants`.
    pub fn grants_of_patient(&self, id: &PrincipalId) -> Result<GrantList, ClientError> {
        self.authed("GET", &format!("/v1/patients/{id}/grants"), None, MAX_ANSWER_BYTES)
    }

    /// `GET /v1/doctors/{id}/grants`.
    pub fn grants_of_doctor(&self, id: &PrincipalId) -> Result<GrantList, ClientError> {
        self.authed("GET", &format!("/v1/doctors/{id}/grants"), None, MAX_ANSWER_BYTES)
    }

    /// `POST /v1/records/{id}/reencrypt`.
    pub fn reencrypt_one(&self, id: &RecordId) -> Result<ReencryptResponse, ClientError> {
        self.authed(
            "POST",
            &format!("/v1/records/{id}/reencrypt"),
            None,
            4 * limits::MAX_ENVELOPE_BYTES as u64,
        )
    }

    /// `POST /v1/reencrypt` with at most [`limits::MAX_BATCH_REENCRYPT`] ids.
    pub fn reencrypt_batch(&self, ids: Vec<RecordId>) -> Result<ReencryptResponse, ClientError> {
        let body = Self::json_body(&ReencryptRequest { record_ids: ids })?;
        self.authed("POST", "/v1/reencrypt", Some(body), MAX_BATCH_ANSWER_BYTES)
    }

    /// `GET /v1/log/checkpoint`.
    pub fn checkpoint(&self) -> Result<CheckpointResponse, ClientError> {
        self.get_public("/v1/log/checkpoint", MAX_ANSWER_BYTES)
    }

    /// `GET /v1/log/key`: the note verifier key (`name+keyid+base64`).
    pub fn log_key(&self) -> Result<String, ClientError> {
        let (s, b) = self.send("GET", "/v1/log/key", None, None, 4096)?;
        if s != 200 {
            return Self::decode(s, &b);
        }
        String::from_utf8(b).map_err(|_| ClientError::Protocol("log key is not UTF-8".into()))
    }

    /// `GET /v1/log/entries?start=&end=` (at most [`limits::MAX_LOG_RANGE`]):
    /// the entries of the range this identity may read (all for an auditor).
    pub fn log_entries(&self, start: u64, end: u64) -> Result<LogEntries, ClientError> {
        self.authed("GET", &format!("/v1/log/entries?start={start}&end={end}"), None, MAX_BATCH_ANSWER_BYTES)
    }

    /// `GET /v1/log/leaves?start=&end=` (public): leaf hashes only.
    pub fn log_leaves(&self, start: u64, end: u64) -> Result<LeafHashes, ClientError> {
        self.get_public(&format!("/v1/log/leaves?start={start}&end={end}"), MAX_BATCH_ANSWER_BYTES)
    }

    /// `GET /v1/log/mine?from=&limit=`.
    pub fn log_mine(&self, from: u64, limit: usize) -> Result<LogEntries, ClientError> {
        self.authed("GET", &format!("/v1/log/mine?from={from}&limit={limit}"), None, MAX_BATCH_ANSWER_BYTES)
    }

    /// `GET /v1/log/inclusion?index=&tree_size=`.
    pub fn inclusion(&self, index: u64, tree_size: u64) -> Result<ProofResponse, ClientError> {
        self.get_public(&format!("/v1/log/inclusion?index={index}&tree_size={tree_size}"), MAX_ANSWER_BYTES)
    }

    /// `GET /v1/log/consistency?old_size=&new_size=`.
    pub fn consistency(&self, old_size: u64, new_size: u64) -> Result<ProofResponse, ClientError> {
        self.get_public(
            &format!("/v1/log/consistency?old_size={old_size}&new_size={new_size}"),
            MAX_ANSWER_BYTES,
        )
    }
}

/// Checks a DP schema name before it goes into a URL path: 1-64 characters
/// from `[a-z0-9_-]` (the rule the server and `medrelay_dp::Schema` apply).
pub fn check_schema_name(name: &str) -> Result<(), ClientError> {
    if medrelay_dp::is_valid_name(name) {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "invalid schema name {:?}: 1-64 characters from a-z, 0-9, '_' and '-'",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Turns the server's DP refusals into typed errors: an unknown schema, a
/// missing summary, an overspend. Everything else is passed through.
fn dp_error(schema: &str) -> impl FnOnce(ClientError) -> ClientError + '_ {
    move |e| match e {
        ClientError::Server { code, message, .. } if code == "not_found" && message.starts_with("schema") => {
            ClientError::UnknownSchema(schema.to_owned())
        }
        ClientError::Server { code, message, .. }
            if code == "not_found" && message.starts_with("summary") =>
        {
            ClientError::NoSummary(schema.to_owned())
        }
        ClientError::Server { code, message, .. } if code == "budget_exceeded" => {
            ClientError::BudgetExceeded(message)
        }
        other => other,
    }
}

/// The DP endpoints under `/v1/dp` (see `docs/DP-SERVICE.md`).
impl Http {
    /// `GET /v1/dp/schemas`: the installed summary schemas.
    pub fn dp_schemas(&self) -> Result<SchemaList, ClientError> {
        self.authed("GET", "/v1/dp/schemas", None, MAX_ANSWER_BYTES)
    }

    /// `GET /v1/dp/schemas/{name}`.
    pub fn dp_schema(&self, name: &str) -> Result<SchemaInfo, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/dp/schemas/{name}"), None, MAX_ANSWER_BYTES).map_err(dp_error(name))
    }

    /// `PUT /v1/dp/schemas/{name}/summary` (patients): stores or replaces
    /// the caller's summary.
    pub fn dp_put_summary(&self, name: &str, doc: &SummaryDoc) -> Result<SummaryReceipt, ClientError> {
        check_schema_name(name)?;
        let body = Self::json_body(doc)?;
        if body.len() > medrelay_wire::dp::MAX_SUMMARY_BYTES {
            return Err(ClientError::Summary {
                schema: name.to_owned(),
                reason: format!("larger than {} bytes", medrelay_wire::dp::MAX_SUMMARY_BYTES),
            });
        }
        self.authed("PUT", &format!("/v1/dp/schemas/{name}/summary"), Some(body), MAX_ANSWER_BYTES)
            .map_err(dp_error(name))
    }

    /// `GET /v1/dp/schemas/{name}/summary` (patients): the caller's stored
    /// summary.
    pub fn dp_own_summary(&self, name: &str) -> Result<SummaryDoc, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/dp/schemas/{name}/summary"), None, MAX_ANSWER_BYTES)
            .map_err(dp_error(name))
    }

    /// `DELETE /v1/dp/schemas/{name}/summary` (patients): withdraws the
    /// caller's summary.
    pub fn dp_delete_summary(&self, name: &str) -> Result<SummaryReceipt, ClientError> {
        check_schema_name(name)?;
        self.authed("DELETE", &format!("/v1/dp/schemas/{name}/summary"), None, MAX_ANSWER_BYTES)
            .map_err(dp_error(name))
    }

    /// `POST /v1/dp/schemas/{name}/query` (analysts): a noisy answer, after
    /// the server has debited the analyst's budget.
    pub fn dp_query(&self, name: &str, query: &Query) -> Result<DpAnswer, ClientError> {
        check_schema_name(name)?;
        let body = Self::json_body(query)?;
        if body.len() > medrelay_wire::dp::MAX_QUERY_BYTES {
            return Err(ClientError::Invalid(format!(
                "query larger than {} bytes",
                medrelay_wire::dp::MAX_QUERY_BYTES
            )));
        }
        self.authed("POST", &format!("/v1/dp/schemas/{name}/query"), Some(body), MAX_DP_ANSWER_BYTES)
            .map_err(dp_error(name))
    }

    /// `GET /v1/dp/schemas/{name}/budget` (analysts).
    pub fn dp_budget(&self, name: &str) -> Result<BudgetStatus, ClientError> {
        check_schema_name(name)?;
        self.authed("GET", &format!("/v1/dp/schemas/{name}/budget"), None, MAX_ANSWER_BYTES)
            .map_err(dp_error(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated() {
        assert_eq!(normalize_url("http://127.0.0.1:8443/").unwrap(), "http://127.0.0.1:8443");
        assert_eq!(normalize_url("https://h.example").unwrap(), "https://h.example");
        for bad in ["ftp://x", "127.0.0.1:80", "http://", "http:///x", "http://h?x=1", "http://h #"] {
            assert!(matches!(normalize_url(bad), Err(ClientError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn an_unreachable_server_is_one_clear_line() {
        // Bind then drop a listener: the port is closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut opts = ServerOptions::new(format!("http://127.0.0.1:{port}"));
        opts.timeout = Duration::from_secs(5);
        let http = Http::new(&opts).unwrap();
        let e = http.health().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
        assert!(msg.starts_with(&format!("cannot reach server at http://127.0.0.1:{port}")), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_bad_ca_file_is_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let mut opts = ServerOptions::new("https://localhost:1");
        opts.ca_cert = Some(path.clone());
        assert!(matches!(Http::new(&opts), Err(ClientError::CaCert { .. })));
        opts.ca_cert = Some(dir.path().join("missing.pem"));
        assert!(matches!(Http::new(&opts), Err(ClientError::CaCert { .. })));
    }

    #[test]
    fn error_bodies_become_typed_server_errors() {
        let body = br#"{"error":"no_grant","message":"access denied: no_grant"}"#;
        match Http::decode::<Health>(403, body) {
            Err(ClientError::Server { status, code, message }) => {
                assert_eq!(
                    (status, code.as_str(), message.as_str()),
                    (403, "no_grant", "access denied: no_grant")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Http::decode::<Health>(502, b"<html>"),
            Err(ClientError::Server { status: 502, .. })
        ));
        assert!(matches!(Http::decode::<Health>(200, b"{\"status\":1}"), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn schema_names_are_checked_before_they_reach_a_path() {
        check_schema_name("health-basics").unwrap();
        check_schema_name("a_1").unwrap();
        for bad in ["", "Health", "../admin", "a/b", "a?b", "a b", &"x".repeat(65)] {
            assert!(matches!(check_schema_name(bad), Err(ClientError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn dp_refusals_become_typed_errors() {
        let server = |status, code: &str, message: &str| ClientError::Server {
            status,
            code: code.into(),
            message: message.into(),
        };
        let e = dp_error("hb")(server(404, "not_found", "schema not found"));
        assert!(matches!(&e, ClientError::UnknownSchema(s) if s == "hb"), "{e:?}");
        assert_eq!(e.to_string(), "unknown schema \"hb\": list the installed ones with `schemas`");
        let e = dp_error("hb")(server(404, "not_found", "summary not found"));
        assert!(matches!(&e, ClientError::NoSummary(s) if s == "hb"), "{e:?}");
        let e = dp_error("hb")(server(403, "budget_exceeded", "privacy budget exceeded: x"));
        assert_eq!(e.to_string(), "privacy budget exceeded: x (refused: nothing was spent)");
        let e = dp_error("hb")(server(403, "wrong_role", "this operation needs the analyst role"));
        assert!(matches!(e, ClientError::Server { status: 403, .. }));
    }
}
