//! Challenge-response authentication and the role extractors.
//!
//! 1. `POST /v1/auth/challenge {principal}` → a random 32-byte nonce, stored
//!    as its SHA-256 with the principal and an expiry.
//! 2. `POST /v1/auth/token {principal, nonce, signature}`: the nonce is
//!    removed atomically (so it is used at most once, even when the signature
//!    is wrong), then the signature over `challenge_message` is checked; the
//!    answer is a random bearer token, stored only as its SHA-256.
//!
//! Every failure of step 2 and every bad bearer token is the same opaque
//! `401 unauthorized`.
//!
//! A principal the operator suspended (see [`crate::policy::suspend`]) is refused
//! with `403 suspended`, for each request with one of its sessions and each
//! signed login, and logged (at most once a minute per principal: see
//! [`crate::Limiters`]). Every other authenticated request counts against
//! the principal's request quota.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse};
use base64::Engine as _;
use medrelay_crypto::{domain, PrincipalId};
use medrelay_wire::{
    challenge_message, limits, ChallengeRequest, ChallengeResponse, Role, TokenRequest, TokenResponse, B64,
};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::log::events;
use crate::store::{Challenge, SecretHash, Session};
use crate::{ApiError, AppState};
use medrelay_policy::LogEvent;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/challenge", web::post().to(challenge)).route("/auth/token", web::post().to(token));
}

/// SHA-256 of a secret (token or nonce).
pub(crate) fn secret_hash(secret: &[u8]) -> SecretHash {
    Sha256::digest(secret).into()
}

/// A fresh 32-byte random token, base64url without padding.
pub(crate) fn random_token() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(raw.as_mut());
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref()))
}

async fn challenge(
    state: web::Data<AppState>,
    req: web::Json<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = req.into_inner().principal;
    let now = state.clock().now();
    let mut nonce = vec![0u8; limits::NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let expires_at = now.plus_seconds(limits::CHALLENGE_TTL_SECS);
    let hash = secret_hash(&nonce);
    state
        .with_store(move |s| {
            if s.get_principal(&principal)?.is_none() {
                return Err(crate::store::StoreError::NotFound("principal"));
            }
            s.put_challenge(&hash, &Challenge { principal, expires_at })
        })
        .await?;
    Ok(HttpResponse::Ok().json(ChallengeResponse { nonce: B64(nonce), expires_at }))
}

async fn token(state: web::Data<AppState>, req: web::Json<TokenRequest>) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    if req.nonce.len() != limits::NONCE_LEN {
        return Err(ApiError::field("nonce", format!("must be {} bytes", limits::NONCE_LEN)));
    }
    let now = state.clock().now();
    let hash = secret_hash(req.nonce.as_bytes());
    let principal = req.principal;
    let (challenge, stored) =
        state.with_store(move |s| Ok((s.take_challenge(&hash)?, s.get_principal(&principal)?))).await?;
    let (Some(challenge), Some(stored)) = (challenge, stored) else {
        tracing::info!(principal.id = %principal, "auth failed: unknown or used challenge");
        return Err(ApiError::Unauthorized);
    };
    if challenge.principal != principal || now >= challenge.expires_at {
        tracing::info!(principal.id = %principal, "auth failed: challenge mismatch or expired");
        return Err(ApiError::Unauthorized);
    }
    let msg = challenge_message(&principal, req.nonce.as_bytes());
    if stored.signing_key.verify(domain::SIG_AUTH_CHALLENGE, &msg, &req.signature).is_err() {
        tracing::info!(principal.id = %principal, "auth failed: bad signature");
        return Err(ApiError::Unauthorized);
    }
    if state.with_store(move |s| s.is_suspended(&principal)).await? {
        return Err(refuse_suspended(&state, principal).await);
    }
    let token = random_token();
    let session =
        Session { principal, role: stored.role, expires_at: now.plus_seconds(limits::TOKEN_TTL_SECS) };
    let th = secret_hash(token.as_bytes());
    let expires_at = session.expires_at;
    let role = session.role;
    state.with_store(move |s| s.put_session(&th, &session)).await?;
    tracing::info!(principal.id = %principal, principal.role = %role, "token issued");
    Ok(HttpResponse::Ok().json(TokenResponse { token: token.to_string(), expires_at, role }))
}

/// An authenticated principal (any role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth {
    /// The principal.
    pub principal: PrincipalId,
    /// Its role.
    pub role: Role,
}

/// Refuses a request of a suspended principal: counts it, and logs it in
/// the audit log unless one was logged for this principal in the last
/// minute. Returns the answer to send (or the log failure).
pub(crate) async fn refuse_suspended(state: &AppState, principal: PrincipalId) -> ApiError {
    state.metrics().suspended_refusal();
    if !state.limiters().log_suspended_refusal(principal, Instant::now()) {
        tracing::info!(principal.id = %principal, logged = false, "request of a suspended principal refused");
        return ApiError::Suspended;
    }
    let event =
        match events::append(&LogEvent::SuspendedPrincipalRefused { at: state.clock().now(), principal }) {
            Ok(e) => e,
            Err(e) => return e,
        };
    match state.with_store(move |s| s.append_log(&event)).await {
        Ok(idx) => {
            tracing::info!(principal.id = %principal, log.index = idx, "request of a suspended principal refused");
            ApiError::Suspended
        }
        Err(e) => e,
    }
}

/// The session a bearer token names, if live.
fn session(req: &HttpRequest, state: &AppState) -> Result<Session, ApiError> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
    let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
    let token = value.strip_prefix("Bearer ").ok_or(ApiError::Unauthorized)?.trim();
    if token.is_empty() || token.len() > 128 {
        return Err(ApiError::Unauthorized);
    }
    // Only the hash is looked up: the store never holds the token, and the
    // lookup key is a uniformly random digest (no timing oracle on prefixes).
    let session = state.store().get_session(&secret_hash(token.as_bytes()))?.ok_or(ApiError::Unauthorized)?;
    if state.clock().now() >= session.expires_at {
        return Err(ApiError::Unauthorized);
    }
    Ok(session)
}

/// The authenticated principal of a request: a live session of a principal
/// that is not suspended, within its request quota.
async fn authenticate(req: HttpRequest) -> Result<Auth, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("no app state".into()))?;
    let session = session(&req, &state)?;
    let principal = session.principal;
    if state.store().is_suspended(&principal)? {
        return Err(refuse_suspended(&state, principal).await);
    }
    if let Err(e) = state.limiters().principal(principal) {
        state.metrics().rate_limited();
        tracing::info!(principal.id = %principal, "rate limited");
        return Err(e);
    }
    let auth = Auth { principal, role: session.role };
    // For the refusal log: who was refused, when a role check fails later.
    req.extensions_mut().insert(auth);
    Ok(auth)
}

/// The future of an authentication extractor.
type AuthFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr, $needed:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub PrincipalId);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = AuthFuture<Self>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let req = req.clone();
                Box::pin(async move {
                    let a = authenticate(req).await?;
                    if a.role == $role {
                        Ok($name(a.principal))
                    } else {
                        Err(ApiError::WrongRole { needed: $needed })
                    }
                })
            }
        }
    };
}

role_extractor!(
    /// An authenticated patient.
    PatientAuth,
    Role::Patient,
    "patient"
);
role_extractor!(
    /// An authenticated doctor.
    DoctorAuth,
    Role::Doctor,
    "doctor"
);
role_extractor!(
    /// An authenticated auditor.
    AuditorAuth,
    Role::Auditor,
    "auditor"
);
