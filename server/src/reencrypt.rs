//! Proxy re-encryption for doctors.
//!
//! For each record asked for: find the doctor's grants from the record's
//! owner, verify each stored grant (and revocation) against the owner's
//! signing key, and ask `medrelay_policy::authorize` for a
//! `ReadCapability` ([`crate::access`]); only with one does the server load
//! the re-encryption key of the record's class and run `reencrypt_capsule`
//! (which re-checks the owner's signature on the envelope). Served and
//! denied requests are both appended to the audit log (denials coalesced,
//! see [`crate::refusals`]); a denial answers 403 with the policy's reason
//! code. A batch naming one id twice is a 400 request error.
//!
//! Keys come from the bounded [`crate::RekeyCache`] when the grant's keys are
//! there (decoded, with their NTT form prepared), else from the store; the
//! cache is consulted only after authorization, so it never decides access.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use medrelay_crypto::{
    reencrypt_capsule, GrantId, KeyClass, PrincipalId, RecordEnvelope, RecordId, Timestamp,
    VerifiedReencryptionKey,
};
use medrelay_policy::{Denial, LogEvent};
use medrelay_wire::{limits, ReencryptItem, ReencryptRequest, ReencryptResponse, ReencryptedRecord, B64};
use rand::rngs::OsRng;

use crate::access::DoctorGrants;
use crate::auth::DoctorAuth;
use crate::events;
use crate::grants::decode_rekeys;
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/records/{id}/reencrypt", web::post().to(reencrypt_one)).service(
        web::resource("/reencrypt")
            .app_data(crate::error::json_config(limits::MAX_REENCRYPT_BODY_BYTES))
            .route(web::post().to(reencrypt_batch)),
    );
}

async fn serve_one(
    state: &AppState,
    doctor: PrincipalId,
    record: RecordId,
) -> Result<ReencryptedRecord, ApiError> {
    let Some((meta, env_bytes)) = state.with_store(move |s| s.get_record(&record)).await? else {
        return Err(events::deny_access(state, doctor, record, None, Denial::NoGrant).await);
    };
    let owner_id = meta.owner();
    let owner = state
        .with_store(move |s| s.get_principal(&owner_id))
        .await?
        .ok_or_else(|| ApiError::Internal("record owner missing".into()))?;
    let envelope = RecordEnvelope::from_bytes(&env_bytes, limits::MAX_ENVELOPE_BYTES)
        .map_err(|e| ApiError::Internal(format!("stored envelope: {e}")))?;
    let grants = DoctorGrants::load(state, doctor, owner_id, &owner.signing_key).await?;
    let (cap, not_after) = match grants.authorize(state, envelope.header(), state.clock().now()) {
        Ok(found) => found,
        Err(d) => return Err(events::deny_access(state, doctor, record, Some(owner_id), d).await),
    };
    let grant_id = cap.grant_id();
    let class = cap.key_class();
    let key = match prepared_key(state, grant_id, class, not_after).await? {
        Ok(key) => key,
        Err(d) => return Err(events::deny_access(state, doctor, record, Some(owner_id), d).await),
    };
    let owner_vk = owner.signing_key;
    let capsule = web::block(move || {
        reencrypt_capsule(&mut OsRng, &key, &owner_vk, &envelope)
            .map_err(|e| crate::store::StoreError::Backend(format!("re-encryption: {e}")))
    })
    .await??;
    let event = events::append(&LogEvent::ReencryptionServed {
        at: state.clock().now(),
        grant: grant_id,
        record,
        doctor,
        patient: owner_id,
        key_class: class,
    })?;
    let log_index = state.with_store(move |s| s.append_log(&event)).await?;
    state.metrics().reencryption_served();
    tracing::info!(record.id = %record, doctor.id = %doctor, grant.id = %grant_id, log.index = log_index, "re-encryption served");
    Ok(ReencryptedRecord {
        record_id: record,
        grant_id,
        envelope: B64(env_bytes),
        capsule: B64(capsule.to_bytes()),
        log_index,
    })
}

/// The verified re-encryption key of `class` for an authorized grant: from
/// the cache, or decoded from the store (and then cached). `Revoked` if the
/// store no longer holds the keys (revoked after the check), `OutOfScope` if
/// the grant has no key for the class.
async fn prepared_key(
    state: &AppState,
    grant: GrantId,
    class: KeyClass,
    not_after: Timestamp,
) -> Result<Result<Arc<VerifiedReencryptionKey>, Denial>, ApiError> {
    let cache = &state.rekey_cache().0;
    if let Some(key) = cache.get(grant, class, state.clock().now()) {
        state.metrics().rekey_cache_lookup(true);
        return Ok(Ok(key));
    }
    state.metrics().rekey_cache_lookup(false);
    let ticket = cache.ticket();
    let Some(raw) = state.with_store(move |s| s.get_rekeys(&grant)).await? else {
        // Revoked between the check and now: the keys are already gone.
        return Ok(Err(Denial::Revoked));
    };
    let keys: Vec<Arc<VerifiedReencryptionKey>> = web::block(move || {
        // Verified against the patient's and doctor's keys when the grant was
        // stored; the store holds only verified keys.
        decode_rekeys(&raw).map(|keys| keys.into_iter().map(|k| Arc::new(k.skip_verification())).collect())
    })
    .await??;
    let found = keys.iter().find(|k| k.key_class() == class).cloned();
    cache.insert(grant, keys, not_after, ticket);
    Ok(found.ok_or(Denial::OutOfScope))
}

async fn reencrypt_one(
    state: web::Data<AppState>,
    DoctorAuth(doctor): DoctorAuth,
    id: web::Path<RecordId>,
) -> Result<HttpResponse, ApiError> {
    let served = serve_one(&state, doctor, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(served))
}

async fn reencrypt_batch(
    state: web::Data<AppState>,
    DoctorAuth(doctor): DoctorAuth,
    req: web::Json<ReencryptRequest>,
) -> Result<HttpResponse, ApiError> {
    let ids = req.into_inner().record_ids;
    if ids.is_empty() || ids.len() > limits::MAX_BATCH_REENCRYPT {
        return Err(ApiError::field(
            "record_ids",
            format!("must hold 1..={} ids", limits::MAX_BATCH_REENCRYPT),
        ));
    }
    // A repeated id is a malformed request (400, not logged), not one
    // refusal per copy: a batch cannot multiply log entries.
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(ApiError::field("record_ids", format!("record id {dup} appears more than once")));
    }
    let mut items = Vec::with_capacity(ids.len());
    for record_id in ids {
        match serve_one(&state, doctor, record_id).await {
            Ok(r) => items.push(ReencryptItem::Served(r)),
            Err(e @ ApiError::Denied { .. }) => {
                items.push(ReencryptItem::Denied { record_id, error: e.body() })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(HttpResponse::Ok().json(ReencryptResponse { items }))
}
