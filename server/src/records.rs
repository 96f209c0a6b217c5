//! Record envelopes: upload (single and batch) and listing.
//!
//! The server decodes each envelope with a size limit, checks that its
//! signed header names the authenticated patient as owner and that the
//! owner's Ed25519 signature over header, capsule and ciphertext hash
//! verifies, and then stores exactly the uploaded envelope bytes (ciphertext
//! only) together with a `record published` log entry, atomically. An
//! envelope that decodes but is someone else's or whose signature fails
//! (tampered) is refused, logged as `request refused` (record id and reason
//! only), and nothing of the batch is stored.

use actix_web::{web, HttpResponse};
use medrelay_crypto::{PrincipalId, RecordEnvelope, RecordId};
use medrelay_wire::{
    limits, RecordList, RecordReceipt, RecordSummary, Role, UploadRecordRequest, UploadRecordsRequest,
    UploadRecordsResponse, B64,
};

use crate::auth::{Auth, PatientAuth};
use crate::events;
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
    envelopes: Vec<B64>,
) -> Result<HttpResponse, ApiError> {
    if envelopes.is_empty() || envelopes.len() > limits::MAX_BATCH_RECORDS {
        return Err(ApiError::field(
            "envelopes",
            format!("must hold 1..={} envelopes", limits::MAX_BATCH_RECORDS),
        ));
    }
    let owner = state.with_store(move |s| s.get_principal(&patient)).await?.ok_or(ApiError::Unauthorized)?;
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
        let meta = RecordMeta {
            record_id: h.record_id(),
            owner: patient,
            key_class: h.key_class(),
            created_at: h.created_at(),
            size: bytes.len() as u64,
            log_index: 0,
        };
        log_events.push(events::append(&LogEvent::RecordPublished {
            at: now,
            header: h.clone(),
            size: bytes.len() as u64,
            ciphertext_sha256: *env.ciphertext_hash(),
        })?);
        rows.push((meta, bytes));
    }
    let ids: Vec<RecordId> = rows.iter().map(|(m, _)| m.record_id).collect();
    let idxs = state.with_store(move |s| s.put_records(&rows, &log_events as &[LogAppend])).await?;
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
    store_envelopes(&state, patient, vec![req.into_inner().envelope]).await
}

async fn upload_batch(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    req: web::Json<UploadRecordsRequest>,
) -> Result<HttpResponse, ApiError> {
    store_envelopes(&state, patient, req.into_inner().envelopes).await
}

/// Whether `auth` may see the record list and envelopes of `owner`: the
/// owner, an auditor, or a doctor holding an unrevoked grant from the owner.
/// (Envelopes are ciphertext; the re-encryption endpoint is what enforces
/// scope. This only keeps metadata from strangers.)
async fn may_read(state: &AppState, auth: Auth, owner: PrincipalId) -> Result<(), ApiError> {
    match auth.role {
        _ if auth.principal == owner => Ok(()),
        Role::Auditor => Ok(()),
        Role::Doctor => {
            let doctor = auth.principal;
            let grants =
                state.with_store(move |s| s.list_grants_by_doctor(&doctor, limits::MAX_LIST_ITEMS)).await?;
            if grants.iter().any(|g| g.patient == owner && g.revocation.is_none()) {
                Ok(())
            } else {
                Err(ApiError::Forbidden("no grant from this patient"))
            }
        }
        _ => Err(ApiError::Forbidden("not the owner")),
    }
}

async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    owner: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let owner = owner.into_inner();
    may_read(&state, auth, owner).await?;
    let metas = state.with_store(move |s| s.list_records(&owner, limits::MAX_LIST_ITEMS)).await?;
    let records = metas
        .into_iter()
        .map(|m| RecordSummary {
            record_id: m.record_id,
            owner: m.owner,
            key_class: m.key_class,
            created_at: m.created_at,
            size: m.size,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RecordList { records }))
}

async fn get_envelope(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<RecordId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (meta, env) =
        state.with_store(move |s| s.get_record(&id)).await?.ok_or(ApiError::NotFound("record"))?;
    may_read(&state, auth, meta.owner).await?;
    Ok(HttpResponse::Ok().json(UploadRecordRequest { envelope: B64(env) }))
}
