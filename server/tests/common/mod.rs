//! Helpers shared by the HTTP tests: a server over a temp sled store with a
//! manual clock, and clients that register and authenticate.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use medrelay_crypto::{
    domain, encrypt_record, generate_batch, generate_reencryption_key, GrantId, PatientSecretKeys,
    PreKeyPair, PrincipalId, RecordCategory, RecordEnvelope, RecordHeader, RecordId, SignedCapsule,
    SigningKey, Threshold, Timestamp,
};
use medrelay_policy::{
    EventSalt, Grant, LeafOpening, LogEvent, Purpose, RefusalReason, RefusedObject, Scope,
};
use medrelay_server::store::SledStore;
use medrelay_server::{enroll_in, AppState, Clock};
use medrelay_wire::{
    challenge_message, registration_message, ChallengeResponse, CreateGrantRequest, ErrorBody, Health,
    LogEntries, LogEntry, PrincipalInfo, RegisterRequest, Role, TokenRequest, TokenResponse, B64,
};
use rand_chacha::rand_core::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const T0: u64 = 1_800_000_000;
pub struct Env {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub clock: Clock,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let clock = Clock::manual(T0);
    let signer = medrelay_policy::LogSigner::new("test.medrelay/log", &log_key()).unwrap();
    let state = AppState::new(store, clock.clone(), signer);
    Env { dir, state, clock }
}

pub fn log_key() -> SigningKey {
    SigningKey::from_seed(&[0x10; 32])
}

pub fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

/// A patient's PRE keys, derived deterministically from their signing key.
pub fn patient_keys(sk: &SigningKey) -> PatientSecretKeys {
    PatientSecretKeys::generate(&mut rand_chacha::ChaCha20Rng::from_seed(*sk.to_seed()))
}

/// A doctor's PRE key pair, derived deterministically from their signing key.
pub fn doctor_keys(sk: &SigningKey) -> PreKeyPair {
    PreKeyPair::generate(&mut rand_chacha::ChaCha20Rng::from_seed(*sk.to_seed()))
}

pub fn pre_key_bytes(sk: &SigningKey, role: Role) -> Vec<u8> {
    match role {
        Role::Patient => patient_keys(sk).public_keys().to_bytes(),
        Role::Doctor => doctor_keys(sk).public_key().to_bytes(),
        Role::Analyst | Role::Auditor => vec![0x42; 8],
    }
}

pub fn register_request(sk: &SigningKey, role: Role, name: &str, token: Option<String>) -> RegisterRequest {
    let keys = pre_key_bytes(sk, role);
    let vk = sk.verifying_key();
    let sig = sk.sign(domain::SIG_REGISTRATION, &registration_message(role, name, &vk, &keys));
    RegisterRequest {
        role,
        name: name.into(),
        signing_key: vk,
        pre_public_keys: B64(keys),
        enrollment_token: token,
        signature: sig,
    }
}

pub async fn call<S, B>(svc: &S, req: test::TestRequest) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(svc, req.to_request()).await;
    let status = res.status().as_u16();
    let body = test::read_body(res).await.to_vec();
    (status, body)
}

pub async fn post<S, B, T: Serialize>(svc: &S, path: &str, body: &T, token: Option<&str>) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = test::TestRequest::post().uri(path).set_json(body);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    call(svc, req).await
}

pub async fn get<S, B>(svc: &S, path: &str, token: Option<&str>) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = test::TestRequest::get().uri(path);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    call(svc, req).await
}

pub fn json<T: DeserializeOwned>(body: &[u8]) -> T {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Asserts an error status and code, returning the body.
pub fn expect_err((status, body): (u16, Vec<u8>), want_status: u16, want_code: &str) -> ErrorBody {
    assert_eq!(status, want_status, "body: {}", String::from_utf8_lossy(&body));
    let e: ErrorBody = json(&body);
    assert_eq!(e.error, want_code, "message: {}", e.message);
    e
}

pub async fn log_size<S, B>(svc: &S) -> u64
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = get(svc, "/healthz", None).await;
    assert_eq!(s, 200);
    json::<Health>(&b).log_size
}

/// The caller's log entries from index `from` on, which must all be
/// `request refused` events by `principal` holding ids and codes only (64
/// bytes, no submitted bytes), as (what, reason) in log order.
pub async fn refusals_since<S, B>(
    svc: &S,
    token: &str,
    principal: PrincipalId,
    from: u64,
) -> Vec<(RefusedObject, RefusalReason)>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (_, b) = get(svc, "/v1/log/mine", Some(token)).await;
    json::<LogEntries>(&b)
        .entries
        .iter()
        .filter(|e| e.index >= from)
        .map(|e| {
            // Ids, a route name and codes only: a refusal event is at most
            // magic, version, tag, time, principal, kind, a 128-byte route,
            // reason and count.
            assert!(e.event.len() <= 4 + 1 + 1 + 8 + 32 + 1 + 2 + 128 + 1 + 4, "{} bytes", e.event.len());
            match event_of(e) {
                LogEvent::RequestRefused { principal: by, what, reason, count, .. } => {
                    assert_eq!((by, count), (principal, 1));
                    (what, reason)
                }
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

/// An entry as served: its salt and event bytes.
pub fn opening(e: &LogEntry) -> LeafOpening {
    LeafOpening::from_parts(EventSalt::from_slice(e.salt.as_bytes()).unwrap(), e.event.as_bytes().to_vec())
        .unwrap()
}

/// The event of an entry as served.
pub fn event_of(e: &LogEntry) -> LogEvent {
    opening(e).event().unwrap()
}

/// The caller's own log entries (`/log/mine`), decoded, as (index, event).
pub async fn mine<S, B>(svc: &S, token: &str) -> Vec<(u64, LogEvent)>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = get(svc, "/v1/log/mine", Some(token)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    json::<LogEntries>(&b).entries.iter().map(|e| (e.index, event_of(e))).collect()
}

pub async fn register<S, B>(svc: &S, sk: &SigningKey, role: Role, token: Option<String>) -> PrincipalInfo
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = post(svc, "/v1/principals", &register_request(sk, role, "Someone", token), None).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    json(&b)
}

pub async fn login<S, B>(svc: &S, sk: &SigningKey) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let principal = sk.principal_id();
    let (s, b) = post(svc, "/v1/auth/challenge", &serde_json::json!({ "principal": principal }), None).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let ch: ChallengeResponse = json(&b);
    let sig = sk.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
    let (s, b) =
        post(svc, "/v1/auth/token", &TokenRequest { principal, nonce: ch.nonce, signature: sig }, None).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    json::<TokenResponse>(&b).token
}

pub fn enroll(env: &Env, role: Role) -> String {
    enroll_in(env.state.store().as_ref(), role, "Dr Example", &env.clock).unwrap().to_string()
}

pub async fn challenge_for<S, B>(svc: &S, principal: medrelay_crypto::PrincipalId) -> ChallengeResponse
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = post(svc, "/v1/auth/challenge", &serde_json::json!({ "principal": principal }), None).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    json(&b)
}

/// A sealed record: the envelope and its batch capsule (of one record).
pub struct Sealed {
    pub envelope: RecordEnvelope,
    pub capsule: SignedCapsule,
}

impl std::ops::Deref for Sealed {
    type Target = RecordEnvelope;
    fn deref(&self) -> &RecordEnvelope {
        &self.envelope
    }
}

impl Sealed {
    /// The single-record upload request, with the capsule.
    pub fn upload(&self) -> medrelay_wire::UploadRecordRequest {
        medrelay_wire::UploadRecordRequest {
            envelope: B64(self.envelope.to_bytes()),
            capsule: Some(B64(self.capsule.to_bytes())),
        }
    }
}

/// A batch upload of `records`, with their capsules.
pub fn upload_all(records: &[Sealed]) -> medrelay_wire::UploadRecordsRequest {
    medrelay_wire::UploadRecordsRequest {
        capsules: records.iter().map(|r| B64(r.capsule.to_bytes())).collect(),
        envelopes: records.iter().map(|r| B64(r.envelope.to_bytes())).collect(),
    }
}

/// A real envelope of `sk`'s (deterministic from `seed`), sealed under a
/// batch of its own.
pub fn seal(sk: &SigningKey, seed: u64, category: RecordCategory, body: &[u8]) -> Sealed {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let batch = generate_batch(&mut rng, sk, &patient_keys(sk).public_keys(), category.key_class()).unwrap();
    let header = RecordHeader::new(
        RecordId::random(&mut rng),
        sk.principal_id(),
        category,
        "application/fhir+json",
        Timestamp(T0),
    )
    .unwrap();
    let envelope = encrypt_record(&mut rng, sk, &batch, header, body).unwrap();
    Sealed { envelope, capsule: batch.capsule().clone() }
}

/// A laboratory Observation category.
pub fn lab() -> RecordCategory {
    RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap()
}

/// A real grant from `p` to `doctor` over `scope`, valid [T0, until), with
/// one verified-to-be re-encryption key per key class of the scope.
pub fn grant_request(
    p: &SigningKey,
    doctor: &SigningKey,
    id: u8,
    scope: &str,
    until: u64,
) -> CreateGrantRequest {
    let one = Threshold::new(1, 1).unwrap();
    grant_request_with_thresholds(p, doctor, id, scope, until, one, one)
}

/// As [`grant_request`], with re-encryption keys of `key_threshold` and the
/// signed grant saying `grant_threshold` (they differ only in refusal
/// tests).
pub fn grant_request_with_thresholds(
    p: &SigningKey,
    doctor: &SigningKey,
    id: u8,
    scope: &str,
    until: u64,
    key_threshold: Threshold,
    grant_threshold: Threshold,
) -> CreateGrantRequest {
    let scope: Scope = scope.parse().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(id));
    let keys = patient_keys(p);
    let dk = doctor_keys(doctor);
    let rks: Vec<_> = scope
        .key_classes()
        .into_iter()
        .map(|c| {
            generate_reencryption_key(&mut rng, &keys, p.principal_id(), c, dk.public_key(), key_threshold)
        })
        .collect();
    let g = Grant::new(
        GrantId::from_bytes([id; 16]),
        p.principal_id(),
        doctor.principal_id(),
        scope.clone(),
        Purpose::Treatment,
        Timestamp(T0),
        Timestamp(until),
        Timestamp(T0),
    )
    .unwrap()
    .with_threshold(grant_threshold)
    .with_rekey_digests(rks.iter().map(|k| k.digest()).collect())
    .unwrap();
    let rekeys = rks.iter().map(|k| B64(k.to_bytes())).collect();
    CreateGrantRequest { grant: B64(g.sign(p).unwrap().to_bytes()), rekeys }
}

/// The value of an unlabelled Prometheus counter or gauge.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .unwrap()
}

pub async fn metrics<S, B>(svc: &S) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = get(svc, "/metrics", None).await;
    assert_eq!(s, 200);
    String::from_utf8(b).unwrap()
}

/// The one served record and its delivered capsule of a single-record
/// re-encryption answer.
pub fn served_one(body: &[u8]) -> (medrelay_wire::ReencryptedRecord, medrelay_wire::DeliveredCapsule) {
    let r: medrelay_wire::ReencryptResponse = json(body);
    let mut items = r.items.into_iter();
    let served = match items.next() {
        Some(medrelay_wire::ReencryptItem::Served(s)) => s,
        other => panic!("expected one served item, got {other:?}"),
    };
    assert!(items.next().is_none());
    assert_eq!(r.capsules.len(), 1, "one capsule per answer");
    let delivered = r.capsules.into_iter().next().unwrap();
    assert_eq!((delivered.capsule_id, delivered.grant_id), (served.capsule_id, served.grant_id));
    (served, delivered)
}

/// Opens a served record as `doctor` (a client's checks: capsule owner
/// signature, fragment proofs, envelope signature).
pub fn open_as(
    doctor: &SigningKey,
    patient: &SigningKey,
    served: &medrelay_wire::ReencryptedRecord,
    delivered: &medrelay_wire::DeliveredCapsule,
) -> Result<zeroize::Zeroizing<Vec<u8>>, medrelay_crypto::CryptoError> {
    let env = RecordEnvelope::from_bytes(served.envelope.as_bytes(), usize::MAX)?;
    let capsule = SignedCapsule::from_bytes(delivered.capsule.as_bytes())?;
    let re = medrelay_crypto::ReencryptedCapsule::from_bytes(delivered.reencrypted.as_bytes())?;
    let key = medrelay_crypto::decrypt_batch_key_as_delegate(
        doctor_keys(doctor).secret_key(),
        &patient.verifying_key(),
        &patient_keys(patient).public_keys(),
        &capsule,
        &re,
        Threshold::ONE_OF_ONE,
    )?;
    medrelay_crypto::decrypt_record(&key, &patient.verifying_key(), &env)
}
