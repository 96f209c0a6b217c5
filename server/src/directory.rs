//! The directory of principals: registration (patients self-register; other
//! roles need a one-time operator token) and lookup. Every registration is
//! appended to the audit log in the same transaction, so a key swapped by the
//! server is visible to auditors.

use actix_web::{web, HttpResponse};
use medrelay_crypto::{domain, PatientPublicKeys, PrePublicKey, PrincipalId};
use medrelay_wire::{limits, registration_message, PrincipalInfo, RegisterRequest, Role, B64};

use crate::auth::secret_hash;
use crate::events;
use crate::store::{EnrollmentUse, StoredPrincipal};
use crate::{ApiError, AppState};
use medrelay_policy::LogEvent;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/principals")
            .app_data(crate::error::json_config(limits::MAX_REGISTER_BODY_BYTES))
            .route(web::post().to(register)),
    )
    .route("/principals/{id}", web::get().to(get_principal));
}

/// Checks a display name: non-empty, bounded, printable.
pub(crate) fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > limits::MAX_NAME_LEN {
        return Err(ApiError::field("name", format!("must be 1..={} bytes", limits::MAX_NAME_LEN)));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::field("name", "must not contain control characters"));
    }
    Ok(())
}

/// Patients register their per-class PRE public keys, doctors one PRE public
/// key; both must decode (medrelay-crypto's size-limited decoders).
/// Analysts and auditors hold no PRE keys: their bytes are opaque but bounded.
fn check_pre_keys(role: Role, keys: &[u8]) -> Result<(), ApiError> {
    let r = match role {
        Role::Patient => PatientPublicKeys::from_bytes(keys).map(drop),
        Role::Doctor => PrePublicKey::from_bytes(keys).map(drop),
        Role::Analyst | Role::Auditor => Ok(()),
    };
    r.map_err(|e| ApiError::field("pre_public_keys", e))
}

pub(crate) fn info(p: StoredPrincipal) -> PrincipalInfo {
    PrincipalInfo {
        id: p.id(),
        role: p.role,
        name: p.name,
        signing_key: p.signing_key,
        pre_public_keys: B64(p.pre_public_keys),
        signature: p.signature,
        registered_at: p.registered_at,
        log_index: p.log_index,
    }
}

async fn register(
    state: web::Data<AppState>,
    req: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    validate_name(&req.name)?;
    let keys = req.pre_public_keys.as_bytes();
    if keys.is_empty() || keys.len() > limits::MAX_PRE_PUBLIC_KEYS_BYTES {
        return Err(ApiError::field(
            "pre_public_keys",
            format!("must be 1..={} bytes", limits::MAX_PRE_PUBLIC_KEYS_BYTES),
        ));
    }
    check_pre_keys(req.role, keys)?;
    let msg = registration_message(req.role, &req.name, &req.signing_key, keys);
    req.signing_key
        .verify(domain::SIG_REGISTRATION, &msg, &req.signature)
        .map_err(|_| ApiError::BadSignature("registration"))?;
    let now = state.clock().now();
    let enrollment = match (req.role.needs_enrollment(), &req.enrollment_token) {
        (true, Some(t)) if !t.is_empty() && t.len() <= 128 => {
            Some(EnrollmentUse { token_hash: secret_hash(t.as_bytes()), role: req.role, now })
        }
        (true, _) => return Err(ApiError::InvalidEnrollment),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::field("enrollment_token", "patients self-register without one"))
        }
    };
    let principal = StoredPrincipal {
        role: req.role,
        name: req.name,
        signing_key: req.signing_key,
        pre_public_keys: req.pre_public_keys.into_bytes(),
        signature: req.signature,
        registered_at: now,
        log_index: 0,
    };
    let id = principal.id();
    let event = events::append(&LogEvent::PrincipalRegistered {
        at: now,
        principal: id,
        role: events::policy_role(principal.role),
        signing_key: principal.signing_key,
        pre_key: match principal.role {
            Role::Patient | Role::Doctor => Some(events::pre_key_fingerprint(&principal.pre_public_keys)),
            Role::Analyst | Role::Auditor => None,
        },
    })?;
    let (log_index, principal) = state
        .with_store(move |s| {
            let idx = s.register_principal(&principal, enrollment, &event)?;
            Ok((idx, principal))
        })
        .await?;
    tracing::info!(principal.id = %id, principal.role = %principal.role, log.index = log_index, "principal registered");
    Ok(HttpResponse::Created().json(info(StoredPrincipal { log_index, ..principal })))
}

async fn get_principal(
    state: web::Data<AppState>,
    id: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let p = state.with_store(move |s| s.get_principal(&id)).await?.ok_or(ApiError::NotFound("principal"))?;
    Ok(HttpResponse::Ok().json(info(p)))
}
