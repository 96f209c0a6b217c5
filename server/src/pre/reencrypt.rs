//! Proxy re-encryption for doctors: the batched fetch.
//!
//! For each record asked for: find the doctor's grants from the record's
//! owner (loaded and verified once per owner and request), verify each
//! stored grant (and revocation) against the owner's signing key, and ask
//! `medrelay_policy::authorize` for a `ReadCapability` ([`crate::pre::access`]);
//! only with one is the record served. Served and denied requests are both
//! appended to the audit log (denials coalesced, see [`crate::log::refusals`]);
//! a denial answers 403 with the policy's reason code (an item of a batch
//! answer). A batch naming one id twice is a 400 request error.
//!
//! A record's key lives in its batch capsule. The server re-encrypts a
//! capsule once per (capsule, grant), with the re-encryption key of the
//! grant's class (`reencrypt_capsule`, which refuses a capsule whose owner
//! is not the key's patient), stores the result, and returns those same
//! bytes whenever the grant asks again: a doctor cannot collect fresh
//! lattice noise by asking repeatedly. The stored capsule's owner signature
//! is checked right after decoding; a capsule that fails it is refused and
//! logged (never a 500). One answer carries each capsule it needs once. All
//! `re-encryption served` entries of a request and the new re-encryptions
//! are written in one transaction with one flush.
//!
//! Keys come from the bounded [`crate::RekeyCache`] when the grant's keys are
//! there (decoded, with their NTT form prepared), else from the store; the
//! cache is consulted only after authorization, so it never decides access.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use medrelay_crypto::{
    reencrypt_capsule, CapsuleId, GrantId, KeyClass, PrincipalId, RecordEnvelope, RecordId, SignedCapsule,
    Timestamp, VerifiedReencryptionKey, VerifyingKey,
};
use medrelay_policy::{Denial, LogEvent, RefusalReason, RefusedObject};
use medrelay_wire::{
    limits, DeliveredCapsule, ReencryptItem, ReencryptRequest, ReencryptResponse, ReencryptedRecord, B64,
};
use rand::rngs::OsRng;

use crate::log::events;
use crate::policy::auth::DoctorAuth;
use crate::policy::grants::decode_rekeys;
use crate::pre::access::DoctorGrants;
use crate::store::LogAppend;
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/records/{id}/reencrypt", web::post().to(reencrypt_one)).service(
        web::resource("/reencrypt")
            .app_data(crate::error::json_config(limits::MAX_REENCRYPT_BODY_BYTES))
            .route(web::post().to(reencrypt_batch)),
    );
}

/// An authorized record, waiting for its capsule.
struct Authorized {
    record: RecordId,
    owner: PrincipalId,
    grant: GrantId,
    class: KeyClass,
    capsule: CapsuleId,
    envelope: Vec<u8>,
}

/// A (grant, capsule) pair to deliver: the key to re-encrypt with, if the
/// store holds no re-encryption yet.
struct ToDeliver {
    owner_vk: VerifyingKey,
    key: Arc<VerifiedReencryptionKey>,
    capsule: Vec<u8>,
    reencrypted: Option<Vec<u8>>,
}

/// A capsule to re-encrypt under a grant: the pair, the owner's key, the
/// re-encryption key and the stored capsule bytes.
type Job = ((GrantId, CapsuleId), VerifyingKey, Arc<VerifiedReencryptionKey>, Vec<u8>);

/// One item of an answer: served, or the denial to send.
type Served = Result<ReencryptedRecord, (RecordId, ApiError)>;

enum Outcome {
    Served(Authorized),
    Denied(RecordId, ApiError),
}

/// Authorizes one record (no capsule work yet). `owners` caches each
/// owner's directory entry and the doctor's verified grants from them for
/// the request.
async fn authorize_one(
    state: &AppState,
    doctor: PrincipalId,
    record: RecordId,
    owners: &mut BTreeMap<PrincipalId, (VerifyingKey, DoctorGrants)>,
) -> Result<Result<(Authorized, Timestamp), ApiError>, ApiError> {
    let Some((meta, env_bytes)) = state.with_store(move |s| s.get_record(&record)).await? else {
        return Ok(Err(events::deny_access(state, doctor, record, None, Denial::NoGrant).await));
    };
    let owner_id = meta.owner();
    if let std::collections::btree_map::Entry::Vacant(slot) = owners.entry(owner_id) {
        let owner = state
            .with_store(move |s| s.get_principal(&owner_id))
            .await?
            .ok_or_else(|| ApiError::Internal("record owner missing".into()))?;
        let grants = DoctorGrants::load(state, doctor, owner_id, &owner.signing_key).await?;
        slot.insert((owner.signing_key, grants));
    }
    let (_, grants) = owners.get(&owner_id).ok_or_else(|| ApiError::Internal("owner cache".into()))?;
    let envelope = RecordEnvelope::from_bytes(&env_bytes, limits::MAX_ENVELOPE_BYTES)
        .map_err(|e| ApiError::Internal(format!("stored envelope: {e}")))?;
    let (cap, not_after) = match grants.authorize(state, envelope.header(), state.clock().now()) {
        Ok(found) => found,
        Err(d) => return Ok(Err(events::deny_access(state, doctor, record, Some(owner_id), d).await)),
    };
    Ok(Ok((
        Authorized {
            record,
            owner: owner_id,
            grant: cap.grant_id(),
            class: cap.key_class(),
            capsule: envelope.capsule_id(),
            envelope: env_bytes,
        },
        not_after,
    )))
}

/// How often a fetch is authorized afresh when a grant it serves under was
/// revoked while it was under way.
const SERVE_ATTEMPTS: usize = 3;

/// Serves `ids` (distinct) to `doctor`: one item per id, in order, and each
/// delivered capsule the served items need, once. A grant revoked after
/// the fetch was authorized and before its entries were written (on this
/// replica or another) makes the store write nothing; the fetch is then
/// authorized afresh, and that grant's records are denied.
async fn serve(
    state: &AppState,
    doctor: PrincipalId,
    ids: Vec<RecordId>,
) -> Result<(Vec<Served>, Vec<DeliveredCapsule>), ApiError> {
    for _ in 0..SERVE_ATTEMPTS {
        if let Some(answer) = serve_once(state, doctor, ids.clone()).await? {
            return Ok(answer);
        }
    }
    Err(ApiError::Conflict("grants were revoked while the request was served; ask again"))
}

/// One attempt of [`serve`]: `None` if a grant it serves under was revoked
/// meanwhile (nothing written).
async fn serve_once(
    state: &AppState,
    doctor: PrincipalId,
    ids: Vec<RecordId>,
) -> Result<Option<(Vec<Served>, Vec<DeliveredCapsule>)>, ApiError> {
    let mut owners = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(ids.len());
    let mut deliver: BTreeMap<(GrantId, CapsuleId), ToDeliver> = BTreeMap::new();
    for record in ids {
        let (a, not_after) = match authorize_one(state, doctor, record, &mut owners).await? {
            Ok(found) => found,
            Err(e) => {
                outcomes.push(Outcome::Denied(record, e));
                continue;
            }
        };
        let pair = (a.grant, a.capsule);
        if let std::collections::btree_map::Entry::Vacant(slot) = deliver.entry(pair) {
            let key = match prepared_key(state, a.grant, a.class, not_after).await? {
                Ok(key) => key,
                Err(d) => {
                    let e = events::deny_access(state, doctor, record, Some(a.owner), d).await;
                    outcomes.push(Outcome::Denied(record, e));
                    continue;
                }
            };
            let cid = a.capsule;
            let raw = state
                .with_store(move |s| s.get_capsule(&cid))
                .await?
                .ok_or_else(|| ApiError::Internal("record capsule missing".into()))?;
            let owner_vk = owners
                .get(&a.owner)
                .map(|(vk, _)| *vk)
                .ok_or_else(|| ApiError::Internal("owner cache".into()))?;
            // Review finding F10: the owner's signature is checked right
            // after decoding; a capsule that fails is refused and logged.
            let checked = SignedCapsule::from_bytes(&raw).ok().filter(|c| {
                c.owner() == a.owner && c.key_class() == a.class && c.verify_owner(&owner_vk).is_ok()
            });
            if checked.is_none() {
                let e = events::refuse(
                    state,
                    doctor,
                    RefusedObject::Capsule(cid),
                    RefusalReason::BadSignature,
                    ApiError::BadSignature("stored batch capsule"),
                )
                .await;
                outcomes.push(Outcome::Denied(record, e));
                continue;
            }
            let (g, c) = pair;
            let reencrypted = state.with_store(move |s| s.get_delivered(&g, &c)).await?;
            slot.insert(ToDeliver { owner_vk, key, capsule: raw, reencrypted });
        }
        outcomes.push(Outcome::Served(a));
    }
    // The new re-encryptions, off the async threads.
    let todo: Vec<Job> = deliver
        .iter()
        .filter(|(_, d)| d.reencrypted.is_none())
        .map(|(pair, d)| (*pair, d.owner_vk, d.key.clone(), d.capsule.clone()))
        .collect();
    let made: Vec<(GrantId, CapsuleId, Vec<u8>)> = web::block(move || {
        todo.into_iter()
            .map(|((g, c), vk, key, raw)| {
                let capsule = SignedCapsule::from_bytes(&raw)
                    .map_err(|e| crate::store::StoreError::Backend(format!("stored capsule: {e}")))?;
                let out = reencrypt_capsule(&mut OsRng, &key, &vk, &capsule)
                    .map_err(|e| crate::store::StoreError::Backend(format!("re-encryption: {e}")))?;
                Ok((g, c, out.to_bytes()))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()
    })
    .await??;
    let now = state.clock().now();
    let mut log_events: Vec<LogAppend> = Vec::new();
    for o in &outcomes {
        if let Outcome::Served(a) = o {
            log_events.push(events::append(&LogEvent::ReencryptionServed {
                at: now,
                grant: a.grant,
                record: a.record,
                doctor,
                patient: a.owner,
                key_class: a.class,
            })?);
        }
    }
    let (idxs, stored) = if log_events.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let made_ref = made.clone();
        let grants: Vec<GrantId> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Served(a) => Some(a.grant),
                Outcome::Denied(..) => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let written = state
            .with_store(move |s| match s.put_served(&grants, &made_ref, &log_events) {
                Ok(out) => Ok(Some(out)),
                Err(crate::store::StoreError::AlreadyRevoked) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        match written {
            Some(out) => out,
            None => return Ok(None),
        }
    };
    for ((g, c, _), bytes) in made.iter().zip(stored) {
        if let Some(d) = deliver.get_mut(&(*g, *c)) {
            d.reencrypted = Some(bytes);
        }
    }
    let mut idxs = idxs.into_iter();
    let mut served_pairs = std::collections::BTreeSet::new();
    let mut items = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match o {
            Outcome::Served(a) => {
                let log_index = idxs.next().ok_or_else(|| ApiError::Internal("log index missing".into()))?;
                state.metrics().reencryption_served();
                tracing::info!(record.id = %a.record, doctor.id = %doctor, grant.id = %a.grant, log.index = log_index, "re-encryption served");
                served_pairs.insert((a.grant, a.capsule));
                items.push(Ok(ReencryptedRecord {
                    record_id: a.record,
                    grant_id: a.grant,
                    envelope: B64(a.envelope),
                    capsule_id: a.capsule,
                    log_index,
                }));
            }
            Outcome::Denied(record, e) => items.push(Err((record, e))),
        }
    }
    let capsules = served_pairs
        .into_iter()
        .filter_map(|pair| {
            let d = deliver.remove(&pair)?;
            Some(DeliveredCapsule {
                capsule_id: pair.1,
                grant_id: pair.0,
                capsule: B64(d.capsule),
                reencrypted: B64(d.reencrypted?),
            })
        })
        .collect();
    Ok(Some((items, capsules)))
}

/// The verified re-encryption key of `class` for an authorized grant: from
/// the cache, or decoded from the store (and then cached). `Revoked` if the
/// store no longer holds the keys (revoked after the check),
/// `ClassNotGranted` if the grant has no key for the class.
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
    Ok(found.ok_or(Denial::ClassNotGranted))
}

async fn reencrypt_one(
    state: web::Data<AppState>,
    DoctorAuth(doctor): DoctorAuth,
    id: web::Path<RecordId>,
) -> Result<HttpResponse, ApiError> {
    let (items, capsules) = serve(&state, doctor, vec![id.into_inner()]).await?;
    let items = items
        .into_iter()
        .map(|i| i.map(ReencryptItem::Served).map_err(|(_, e)| e))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(ReencryptResponse { items, capsules }))
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
    let (items, capsules) = serve(&state, doctor, ids).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(r) => out.push(ReencryptItem::Served(r)),
            Err((record_id, e @ (ApiError::Denied { .. } | ApiError::BadSignature(_)))) => {
                out.push(ReencryptItem::Denied { record_id, error: e.body() })
            }
            Err((_, e)) => return Err(e),
        }
    }
    Ok(HttpResponse::Ok().json(ReencryptResponse { items: out, capsules }))
}
