//! Record envelopes: upload (single and batch), listing and reads.
//!
//! An upload carries batch capsules and the envelopes sealed under them.
//! The server decodes each capsule and envelope with a size limit and,
//! right after decoding, checks that it names the authenticated patient as
//! owner and that the owner's Ed25519 signature verifies (over the capsule's
//! bytes; over header, capsule id and ciphertext hash); that each envelope
//! names a capsule of the upload or one the patient uploaded before, of
//! the envelope's key class; and then stores exactly the uploaded bytes
//! (ciphertext only), capsules and envelopes apart, together with one
//! `record published` log entry per record, in one transaction and one
//! flush. An
//! envelope that decodes but is someone else's or whose signature fails
//! (tampered) is refused, logged as `request refused` (record id and reason
//! only), and nothing of the batch is stored. A batch naming one record id
//! twice is a 400.
//!
//! Need to know ([`crate::pre::access`]): the owner and auditors see all of a
//! patient's records; a doctor lists only the records a grant of that
//! patient's covers *now* (in force, in scope, labels included) and reads
//! only those envelopes. A doctor with no grant in force is refused the
//! listing (`no_grant`, `expired`, `revoked`, `not_yet_valid`), an envelope
//! outside every grant is refused with the policy's reason (an `access
//! denied` entry the patient reads too), and anyone else is refused
//! (`forbidden`); every refusal is logged (coalesced, see
//! [`crate::log::refusals`]).

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

use medrelay_crypto::{CapsuleId, KeyClass, PrincipalId, RecordEnvelope, RecordId, SignedCapsule};
use medrelay_wire::{
    limits, RecordList, RecordReceipt, RecordSummary, Role, UploadRecordRequest, UploadRecordsRequest,
    UploadRecordsResponse, B64,
};

use crate::log::events;
use crate::policy::auth::{Auth, PatientAuth};
use crate::pre::access::DoctorGrants;
use crate::store::{LogAppend, RecordMeta};
use crate::{ApiError, AppState};
use medrelay_policy::{LogEvent, RefusalReason, RefusedObject};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/records")
            .app_data(crate::error::json_config(limits::MAX_RECORD_BODY_BYTES))
            .route(web::post().to(upload_one)),
    )
    .service(
        web::resource("/records/batch")
            .app_data(crate::error::json_config(limits::MAX_BODY_BYTES))
            .route(web::post().to(upload_batch)),
    )
    .route("/records/{id}", web::get().to(get_envelope))
    .route("/patients/{id}/records", web::get().to(list));
}

/// Decodes one envelope with its size limit (malformed bytes are a plain
/// 400, not logged).
fn decode_envelope(bytes: &[u8]) -> Result<RecordEnvelope, ApiError> {
    if bytes.len() > limits::MAX_ENVELOPE_BYTES {
        return Err(ApiError::field("envelope", format!("over {} bytes", limits::MAX_ENVELOPE_BYTES)));
    }
    RecordEnvelope::from_bytes(bytes, limits::MAX_ENVELOPE_BYTES).map_err(|e| ApiError::field("envelope", e))
}

/// Why a decoded envelope may not be stored for `owner`, if it may not:
/// the reason to log and the answer to send.
fn envelope_refusal(
    env: &RecordEnvelope,
    owner: &PrincipalId,
    owner_key: &medrelay_crypto::VerifyingKey,
) -> Option<(RefusalReason, ApiError)> {
    if env.header().owner() != *owner {
        return Some((
            RefusalReason::NotOwner,
            ApiError::Forbidden("the envelope's owner is not the authenticated patient"),
        ));
    }
    env.verify_owner(owner_key)
        .err()
        .map(|_| (RefusalReason::BadSignature, ApiError::BadSignature("record envelope")))
}

async fn store_envelopes(
    state: &AppState,
    patient: PrincipalId,
    capsules: Vec<B64>,
    envelopes: Vec<B64>,
) -> Result<HttpResponse, ApiError> {
    if envelopes.is_empty() || envelopes.len() > limits::MAX_BATCH_RECORDS {
        return Err(ApiError::field(
            "envelopes",
            format!("must hold 1..={} envelopes", limits::MAX_BATCH_RECORDS),
        ));
    }
    if capsules.len() > limits::MAX_BATCH_CAPSULES {
        return Err(ApiError::field("capsules", format!("at most {} capsules", limits::MAX_BATCH_CAPSULES)));
    }
    let owner = state.with_store(move |s| s.get_principal(&patient)).await?.ok_or(ApiError::Unauthorized)?;
    // The capsules: decoded, then their owner and signature checked at once.
    let mut new_capsules: BTreeMap<CapsuleId, (KeyClass, Vec<u8>)> = BTreeMap::new();
    for b in capsules {
        let bytes = b.into_bytes();
        if bytes.len() > limits::MAX_CAPSULE_BYTES {
            return Err(ApiError::field("capsules", format!("over {} bytes", limits::MAX_CAPSULE_BYTES)));
        }
        let capsule = SignedCapsule::from_bytes(&bytes).map_err(|e| ApiError::field("capsules", e))?;
        let refusal = if capsule.owner() != patient {
            Some((
                RefusalReason::NotOwner,
                ApiError::Forbidden("the capsule's owner is not the authenticated patient"),
            ))
        } else if capsule.verify_owner(&owner.signing_key).is_err() {
            Some((RefusalReason::BadSignature, ApiError::BadSignature("batch capsule")))
        } else {
            None
        };
        if let Some((reason, error)) = refusal {
            return Err(
                events::refuse(state, patient, RefusedObject::Capsule(capsule.id()), reason, error).await
            );
        }
        new_capsules.insert(capsule.id(), (capsule.key_class(), bytes));
    }
    let mut known: BTreeMap<CapsuleId, KeyClass> =
        new_capsules.iter().map(|(id, (class, _))| (*id, *class)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut used = std::collections::BTreeSet::new();
    let now = state.clock().now();
    let mut rows = Vec::with_capacity(envelopes.len());
    let mut log_events = Vec::with_capacity(envelopes.len());
    for b in envelopes {
        let bytes = b.into_bytes();
        let env = decode_envelope(&bytes)?;
        if let Some((reason, error)) = envelope_refusal(&env, &patient, &owner.signing_key) {
            let what = RefusedObject::Record(env.header().record_id());
            return Err(events::refuse(state, patient, what, reason, error).await);
        }
        let h = env.header();
        if !seen.insert(h.record_id()) {
            return Err(ApiError::field(
                "envelopes",
                format!("record id {} appears more than once", h.record_id()),
            ));
        }
        let cid = env.capsule_id();
        used.insert(cid);
        let class = match known.get(&cid) {
            Some(c) => *c,
            None => {
                let stored = state.with_store(move |s| s.get_capsule(&cid)).await?;
                let Some(raw) = stored else {
                    return Err(ApiError::field(
                        "envelopes",
                        format!("record {} names an unknown capsule", h.record_id()),
                    ));
                };
                let c = SignedCapsule::from_bytes(&raw)
                    .map_err(|e| ApiError::Internal(format!("stored capsule: {e}")))?;
                if c.owner() != patient {
                    return Err(ApiError::field(
                        "envelopes",
                        format!("record {} names an unknown capsule", h.record_id()),
                    ));
                }
                known.insert(cid, c.key_class());
                c.key_class()
            }
        };
        if class != h.key_class() {
            return Err(ApiError::field(
                "envelopes",
                format!("record {} is of another key class than its capsule", h.record_id()),
            ));
        }
        let meta = RecordMeta { header: h.clone(), size: bytes.len() as u64, log_index: 0 };
        log_events.push(events::append(&LogEvent::RecordPublished {
            at: now,
            header: h.clone(),
            size: bytes.len() as u64,
            ciphertext_sha256: *env.ciphertext_hash(),
        })?);
        rows.push((meta, bytes));
    }
    // Only the capsules some record of the upload uses are stored.
    let capsule_rows: Vec<(CapsuleId, Vec<u8>)> =
        new_capsules.into_iter().filter(|(id, _)| used.contains(id)).map(|(id, (_, b))| (id, b)).collect();
    let ids: Vec<RecordId> = rows.iter().map(|(m, _)| m.record_id()).collect();
    let idxs =
        state.with_store(move |s| s.put_batch(&capsule_rows, &rows, &log_events as &[LogAppend])).await?;
    for (id, idx) in ids.iter().zip(&idxs) {
        tracing::info!(record.id = %id, owner.id = %patient, log.index = idx, "record published");
    }
    let receipts = ids
        .into_iter()
        .zip(idxs)
        .map(|(record_id, log_index)| RecordReceipt { record_id, log_index })
        .collect();
    Ok(HttpResponse::Created().json(UploadRecordsResponse { receipts }))
}

async fn upload_one(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    req: web::Json<UploadRecordRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    store_envelopes(&state, patient, req.capsule.into_iter().collect(), vec![req.envelope]).await
}

async fn upload_batch(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    req: web::Json<UploadRecordsRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    store_envelopes(&state, patient, req.capsules, req.envelopes).await
}

/// How `auth` may read `owner`'s records.
enum Reader {
    /// The owner or an auditor: everything.
    Everything,
    /// A doctor: what these grants cover now.
    Doctor(DoctorGrants),
    /// Anyone else: nothing.
    Stranger,
}

async fn reader(state: &AppState, auth: Auth, owner: PrincipalId) -> Result<Reader, ApiError> {
    if auth.principal == owner || auth.role == Role::Auditor {
        return Ok(Reader::Everything);
    }
    if auth.role != Role::Doctor {
        return Ok(Reader::Stranger);
    }
    let patient = state.with_store(move |s| s.get_principal(&owner)).await?;
    match patient {
        Some(p) if p.role == Role::Patient => {
            Ok(Reader::Doctor(DoctorGrants::load(state, auth.principal, owner, &p.signing_key).await?))
        }
        // Not a patient: no grant can exist; the doctor learns no more.
        _ => Ok(Reader::Doctor(DoctorGrants::empty(auth.principal))),
    }
}

/// `?after=<record id>`: the next page of a listing (records are ordered by
/// id; a page holds at most [`limits::MAX_LIST_ITEMS`]).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<RecordId>,
}

async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    owner: web::Path<PrincipalId>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = owner.into_inner();
    let after = q.into_inner().after;
    let what = RefusedObject::RecordList(owner);
    let grants = match reader(&state, auth, owner).await? {
        Reader::Everything => None,
        Reader::Doctor(grants) => {
            if let Err(d) = grants.in_force(state.clock().now()) {
                let error = ApiError::Denied { reason: d.code() };
                return Err(
                    events::refuse(&state, auth.principal, what, RefusalReason::Denied(d), error).await
                );
            }
            Some(grants)
        }
        Reader::Stranger => {
            let error = ApiError::Forbidden("not entitled to this patient's records");
            return Err(events::refuse(&state, auth.principal, what, RefusalReason::NotEntitled, error).await);
        }
    };
    let metas =
        state.with_store(move |s| s.list_records(&owner, after.as_ref(), limits::MAX_LIST_ITEMS)).await?;
    // A full page may continue; the cursor is the last id scanned, not the
    // last one shown, so a doctor's filtered page never ends a listing early.
    let next = if metas.len() == limits::MAX_LIST_ITEMS { metas.last().map(|m| m.record_id()) } else { None };
    let now = state.clock().now();
    let records = metas
        .into_iter()
        .filter(|m| grants.as_ref().is_none_or(|g| g.authorize(&state, &m.header, now).is_ok()))
        .map(|m| RecordSummary {
            record_id: m.record_id(),
            owner: m.owner(),
            key_class: m.header.key_class(),
            created_at: m.header.created_at(),
            size: m.size,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RecordList { records, next }))
}

async fn get_envelope(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<RecordId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (meta, env) =
        state.with_store(move |s| s.get_record(&id)).await?.ok_or(ApiError::NotFound("record"))?;
    let owner = meta.owner();
    let mut capsule = None;
    match reader(&state, auth, owner).await? {
        Reader::Everything => {
            // The owner (to open the record) and auditors get the capsule.
            let cid = RecordEnvelope::from_bytes(&env, limits::MAX_ENVELOPE_BYTES)
                .map_err(|e| ApiError::Internal(format!("stored envelope: {e}")))?
                .capsule_id();
            let raw = state.with_store(move |s| s.get_capsule(&cid)).await?;
            capsule = Some(B64(raw.ok_or_else(|| ApiError::Internal("record capsule missing".into()))?));
        }
        Reader::Doctor(grants) => {
            if let Err(d) = grants.authorize(&state, &meta.header, state.clock().now()) {
                return Err(events::deny_access(&state, auth.principal, id, Some(owner), d).await);
            }
        }
        Reader::Stranger => {
            let error = ApiError::Forbidden("not entitled to this record");
            let what = RefusedObject::Envelope(id);
            return Err(events::refuse(&state, auth.principal, what, RefusalReason::NotEntitled, error).await);
        }
    }
    Ok(HttpResponse::Ok().json(UploadRecordRequest { envelope: B64(env), capsule }))
}
