//! Grants: creation (patient-signed grant + one verified re-encryption key
//! per key class of its scope), listing, and revocation (patient-signed;
//! deletes the stored re-encryption keys in the same transaction, and drops
//! the grant's prepared keys from the in-memory cache at once).
//!
//! A grant, revocation or re-encryption key that decodes but is signed by
//! someone else, fails its signature, or names another patient is refused
//! and logged as `request refused` (grant id and reason only); nothing else
//! is stored. Malformed bytes are a plain 400.

use actix_web::{web, HttpResponse};
use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{GrantId, PatientPublicKeys, PrePublicKey, PrincipalId, ReencryptionKey};
use medrelay_policy::{
    LogEvent, RefusalReason, RefusedObject, SignedGrant, SignedRevocation, MAX_SIGNED_GRANT_LEN,
    MAX_SIGNED_REVOCATION_LEN,
};
use medrelay_wire::{
    limits, CreateGrantRequest, GrantInfo, GrantList, GrantReceipt, RevokeRequest, Role, B64,
};

use crate::log::events;
use crate::policy::auth::{Auth, PatientAuth};
use crate::store::{StoreError, StoredGrant};
use crate::{ApiError, AppState};

const REKEYS_MAGIC: &[u8; 4] = b"MSRK";

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/grants")
            .app_data(crate::error::json_config(limits::MAX_GRANT_BODY_BYTES))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/grants/{id}/revoke")
            .app_data(crate::error::json_config(limits::MAX_REVOKE_BODY_BYTES))
            .route(web::post().to(revoke)),
    )
    .route("/patients/{id}/grants", web::get().to(list_by_patient))
    .route("/doctors/{id}/grants", web::get().to(list_by_doctor));
}

/// Encodes the verified re-encryption keys of a grant for storage.
pub(crate) fn encode_rekeys(keys: &[Vec<u8>]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(REKEYS_MAGIC, 1, keys.iter().map(|k| k.len() + 4).sum());
    e.u8(u8::try_from(keys.len()).unwrap_or(u8::MAX));
    for k in keys {
        e.bytes(k);
    }
    e.finish()
}

/// Decodes stored re-encryption keys.
pub(crate) fn decode_rekeys(bytes: &[u8]) -> Result<Vec<ReencryptionKey>, StoreError> {
    let corrupt = |_| StoreError::Corrupt("re-encryption keys");
    let max = limits::MAX_REKEYS_PER_GRANT * (limits::MAX_REKEY_BYTES + 4) + 16;
    let mut d = Decoder::open(bytes, REKEYS_MAGIC, &[1], max).map_err(corrupt)?;
    let n = d.u8().map_err(corrupt)?;
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let raw = d.bytes(limits::MAX_REKEY_BYTES).map_err(corrupt)?;
        out.push(ReencryptionKey::from_bytes(raw).map_err(corrupt)?);
    }
    d.finish().map_err(corrupt)?;
    Ok(out)
}

async fn create(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    req: web::Json<CreateGrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    if req.grant.len() > MAX_SIGNED_GRANT_LEN {
        return Err(ApiError::field("grant", format!("over {MAX_SIGNED_GRANT_LEN} bytes")));
    }
    if req.rekeys.is_empty() || req.rekeys.len() > limits::MAX_REKEYS_PER_GRANT {
        return Err(ApiError::field(
            "rekeys",
            format!("must hold 1..={} keys", limits::MAX_REKEYS_PER_GRANT),
        ));
    }
    let signed = SignedGrant::from_bytes(req.grant.as_bytes()).map_err(|e| ApiError::field("grant", e))?;
    let claimed =
        medrelay_policy::Grant::from_bytes(signed.body()).map_err(|e| ApiError::field("grant", e))?;
    let refused = RefusedObject::Grant(claimed.grant_id());
    if claimed.patient() != patient {
        let error = ApiError::Forbidden("the grant's patient is not the authenticated patient");
        return Err(events::refuse(&state, patient, refused, RefusalReason::NotOwner, error).await);
    }
    let grant_bytes = req.grant.into_bytes();
    let (patient_p, doctor_p) = {
        let doctor = claimed.doctor();
        state.with_store(move |s| Ok((s.get_principal(&patient)?, s.get_principal(&doctor)?))).await?
    };
    let patient_p = patient_p.ok_or(ApiError::Unauthorized)?;
    let doctor_p = match doctor_p {
        Some(d) if d.role == Role::Doctor => d,
        Some(_) => return Err(ApiError::field("grant", "the grantee is not a doctor")),
        None => return Err(ApiError::NotFound("doctor")),
    };
    let verified = match signed.verify(&patient_p.signing_key) {
        Ok(v) => v,
        Err(_) => {
            let error = ApiError::BadSignature("grant");
            return Err(events::refuse(&state, patient, refused, RefusalReason::BadSignature, error).await);
        }
    };
    let grant = verified.grant();
    let grant_id = grant.grant_id();
    let doctor = grant.doctor();

    // Each key must be a valid delegation of the patient's class key to this
    // doctor (key fragments signed by the patient), one per class of the scope.
    let patient_keys = PatientPublicKeys::from_bytes(&patient_p.pre_public_keys)
        .map_err(|_| ApiError::Conflict("the patient's registered PRE keys do not decode"))?;
    let doctor_key = PrePublicKey::from_bytes(&doctor_p.pre_public_keys)
        .map_err(|_| ApiError::Conflict("the doctor's registered PRE key does not decode"))?;
    let wanted = grant.scope().key_classes();
    let mut seen = std::collections::BTreeSet::new();
    let mut stored = Vec::with_capacity(req.rekeys.len());
    let mut stored_digests = Vec::with_capacity(req.rekeys.len());
    for raw in req.rekeys {
        if raw.len() > limits::MAX_REKEY_BYTES {
            return Err(ApiError::field(
                "rekeys",
                format!("a key is over {} bytes", limits::MAX_REKEY_BYTES),
            ));
        }
        let rk = ReencryptionKey::from_bytes(raw.as_bytes()).map_err(|e| ApiError::field("rekeys", e))?;
        let class = rk.key_class();
        if !wanted.contains(&class) || !seen.insert(class) {
            return Err(ApiError::field(
                "rekeys",
                format!("unexpected or repeated key class {}", class.as_str()),
            ));
        }
        // Review finding F7: every key has the threshold and fragment count
        // the patient signed in the grant (`verify` below checks the key
        // holds that many fragments, with distinct ids).
        if rk.threshold() != grant.threshold() {
            let (kt, gt) = (rk.threshold(), grant.threshold());
            return Err(ApiError::field(
                "rekeys",
                format!(
                    "the {} key is {}-of-{}, the signed grant says {}-of-{}",
                    class.as_str(),
                    kt.threshold(),
                    kt.shares(),
                    gt.threshold(),
                    gt.shares()
                ),
            ));
        }
        stored_digests.push(rk.digest());
        if rk.verify(&patient_p.signing_key, &patient_keys, &doctor_key).is_err() {
            let what = RefusedObject::ReencryptionKeys(grant_id);
            let error = ApiError::BadSignature("re-encryption key");
            return Err(events::refuse(&state, patient, what, RefusalReason::BadSignature, error).await);
        }
        stored.push(raw.into_bytes());
    }
    if seen != wanted {
        return Err(ApiError::field("rekeys", "one key per key class of the scope is required"));
    }
    // Review finding F2: the keys must be exactly those the patient signed
    // the grant for.
    let mut digests: Vec<[u8; 32]> = stored_digests;
    digests.sort_unstable();
    if digests != grant.rekey_digests() {
        return Err(ApiError::field(
            "rekeys",
            "the signed grant does not authorize these re-encryption keys",
        ));
    }
    let now = state.clock().now();
    let event = events::append(&LogEvent::GrantCreated { at: now, grant: verified.signed().clone() })?;
    let row = StoredGrant { grant_id, patient, doctor, grant: grant_bytes, revocation: None };
    let rekeys = encode_rekeys(&stored);
    let log_index = state.with_store(move |s| s.put_grant(&row, &rekeys, &event)).await?;
    tracing::info!(grant.id = %grant_id, patient.id = %patient, doctor.id = %doctor, log.index = log_index, "grant created");
    Ok(HttpResponse::Created().json(GrantReceipt { grant_id, log_index }))
}

async fn revoke(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    id: web::Path<GrantId>,
    req: web::Json<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let raw = req.into_inner().revocation;
    if raw.len() > MAX_SIGNED_REVOCATION_LEN {
        return Err(ApiError::field("revocation", format!("over {MAX_SIGNED_REVOCATION_LEN} bytes")));
    }
    let signed =
        SignedRevocation::from_bytes(raw.as_bytes()).map_err(|e| ApiError::field("revocation", e))?;
    if signed.unverified_grant_id().map_err(|e| ApiError::field("revocation", e))? != id {
        return Err(ApiError::field("revocation", "names another grant"));
    }
    let (grant, principal) =
        state.with_store(move |s| Ok((s.get_grant(&id)?, s.get_principal(&patient)?))).await?;
    let grant = grant.ok_or(ApiError::NotFound("grant"))?;
    let refused = RefusedObject::Revocation(id);
    if grant.patient != patient {
        let error = ApiError::Forbidden("only the granting patient may revoke");
        return Err(events::refuse(&state, patient, refused, RefusalReason::NotOwner, error).await);
    }
    let principal = principal.ok_or(ApiError::Unauthorized)?;
    let verified = match signed.verify(&principal.signing_key) {
        Ok(v) => v,
        Err(_) => {
            let error = ApiError::BadSignature("revocation");
            return Err(events::refuse(&state, patient, refused, RefusalReason::BadSignature, error).await);
        }
    };
    let now = state.clock().now();
    let event = events::append(&LogEvent::GrantRevoked { at: now, revocation: verified.signed().clone() })?;
    let bytes = raw.into_bytes();
    let log_index = state.with_store(move |s| s.revoke_grant(&id, &bytes, &event)).await?;
    // The revocation is durable and the stored keys are gone: drop the
    // prepared copies too, and stop loads in flight from re-inserting them.
    state.rekey_cache().0.invalidate(id);
    tracing::info!(grant.id = %id, patient.id = %patient, log.index = log_index, "grant revoked");
    Ok(HttpResponse::Ok().json(GrantReceipt { grant_id: id, log_index }))
}

fn to_list(grants: Vec<StoredGrant>) -> GrantList {
    GrantList {
        grants: grants
            .into_iter()
            .map(|g| GrantInfo {
                grant_id: g.grant_id,
                patient: g.patient,
                doctor: g.doctor,
                grant: B64(g.grant),
                revoked: g.revocation.is_some(),
            })
            .collect(),
    }
}

async fn list_by_patient(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let message = "only the patient or an auditor may list these grants";
    require_self_or_auditor(&state, &auth, RefusedObject::PatientGrants(id), id, message).await?;
    let grants = state.with_store(move |s| s.list_grants_by_patient(&id, limits::MAX_LIST_ITEMS)).await?;
    Ok(HttpResponse::Ok().json(to_list(grants)))
}

async fn list_by_doctor(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let message = "only the doctor or an auditor may list these grants";
    require_self_or_auditor(&state, &auth, RefusedObject::DoctorGrants(id), id, message).await?;
    let grants = state.with_store(move |s| s.list_grants_by_doctor(&id, limits::MAX_LIST_ITEMS)).await?;
    Ok(HttpResponse::Ok().json(to_list(grants)))
}

/// Grant lists are visible to the principal they are about and to auditors;
/// anyone else is refused, and the refusal is logged.
async fn require_self_or_auditor(
    state: &AppState,
    auth: &Auth,
    what: RefusedObject,
    id: PrincipalId,
    message: &'static str,
) -> Result<(), ApiError> {
    if auth.principal == id || auth.role == Role::Auditor {
        Ok(())
    } else {
        let error = ApiError::Forbidden(message);
        Err(events::refuse(state, auth.principal, what, RefusalReason::NotEntitled, error).await)
    }
}
