//! The directory of principals: registration (patients self-register; other
//! roles need a one-time operator token) and lookup. Every registration is
//! appended to the audit log in the same transaction, so a key swapped by the
//! server is visible to auditors.
//!
//! Names and keys are not public. A directory entry (name, role, keys) is
//! shown, to an authenticated caller only, when the caller has a reason:
//!
//! - to the principal itself, and to auditors (every entry);
//! - to a patient, any *doctor*'s entry: the patient needs the doctor's PRE
//!   key and its fingerprint to grant;
//! - to a doctor, the entry of a patient who has granted that doctor
//!   something (in force or not: the doctor verifies the records it fetched
//!   with the patient's signing key).
//!
//! Every other lookup, including one of an id that does not exist, is the
//! same `403 forbidden` and is logged as `request refused` (`principal`,
//! `not_entitled`), so the answer does not tell a caller whether the id
//! exists or which role it has.

use actix_web::{web, HttpResponse};
use medrelay_crypto::{domain, PatientPublicKeys, PrePublicKey, PrincipalId};
use medrelay_wire::{limits, registration_message, PrincipalInfo, RegisterRequest, Role, B64};

use crate::log::events;
use crate::policy::auth::{secret_hash, Auth};
use crate::store::{EnrollmentUse, StoredPrincipal};
use crate::{ApiError, AppState};
use medrelay_policy::{LogEvent, RefusalReason, RefusedObject};

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

/// Whether `auth` may see `target`'s entry (see the module docs).
async fn entitled(state: &AppState, auth: Auth, target: &StoredPrincipal) -> Result<bool, ApiError> {
    let id = target.id();
    Ok(match (auth.role, target.role) {
        _ if auth.principal == id => true,
        (Role::Auditor, _) => true,
        (Role::Patient, Role::Doctor) => true,
        (Role::Doctor, Role::Patient) => {
            let doctor = auth.principal;
            let grants =
                state.with_store(move |s| s.list_grants_by_doctor(&doctor, limits::MAX_LIST_ITEMS)).await?;
            grants.iter().any(|g| g.patient == id)
        }
        _ => false,
    })
}

async fn get_principal(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let found = state.with_store(move |s| s.get_principal(&id)).await?;
    let allowed = match &found {
        Some(p) => entitled(&state, auth, p).await?,
        // Auditors (and the principal itself, which exists) may learn that
        // an id is unknown; everyone else gets the same refusal as for an
        // entry they may not see.
        None if auth.role == Role::Auditor => return Err(ApiError::NotFound("principal")),
        None => false,
    };
    match found {
        Some(p) if allowed => Ok(HttpResponse::Ok().json(info(p))),
        _ => {
            let error = ApiError::Forbidden("no reason to see this principal's directory entry");
            let what = RefusedObject::Principal(id);
            Err(events::refuse(&state, auth.principal, what, RefusalReason::NotEntitled, error).await)
        }
    }
}
