//! The audit log service: entries by range and each principal's own history.

use actix_web::{web, HttpResponse};
use medrelay_wire::{limits, CheckpointResponse, LogEntries, LogEntry, ProofResponse, B64};
use serde::Deserialize;

use crate::auth::Auth;
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/log/entries", web::get().to(entries))
        .route("/log/mine", web::get().to(mine))
        .route("/log/checkpoint", web::get().to(checkpoint))
        .route("/log/key", web::get().to(verifier_key))
        .route("/log/inclusion", web::get().to(inclusion))
        .route("/log/consistency", web::get().to(consistency));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    start: u64,
    end: u64,
}

async fn entries(state: web::Data<AppState>, q: web::Query<Range>) -> Result<HttpResponse, ApiError> {
    let Range { start, end } = q.into_inner();
    if end < start || end - start > limits::MAX_LOG_RANGE {
        return Err(ApiError::InvalidParameter(format!(
            "need start <= end and at most {} entries",
            limits::MAX_LOG_RANGE
        )));
    }
    let rows = state.with_store(move |s| s.log_entries(start, end)).await?;
    Ok(HttpResponse::Ok().json(to_entries(rows)))
}

fn to_entries(rows: Vec<(u64, Vec<u8>)>) -> LogEntries {
    LogEntries {
        entries: rows.into_iter().map(|(index, data)| LogEntry { index, data: B64(data) }).collect(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// The events about the caller (for a patient: registrations, records
/// published, grants, revocations, and every access served or denied on
/// their records).
async fn mine(state: web::Data<AppState>, auth: Auth, q: web::Query<Page>) -> Result<HttpResponse, ApiError> {
    let Page { from, limit } = q.into_inner();
    let limit = limit.unwrap_or(limits::MAX_LIST_ITEMS);
    if limit == 0 || limit > limits::MAX_LIST_ITEMS {
        return Err(ApiError::InvalidParameter(format!("limit must be 1..={}", limits::MAX_LIST_ITEMS)));
    }
    let rows = state
        .with_store(move |s| {
            let mut out = Vec::new();
            for i in s.log_indices_for(&auth.principal, from, limit)? {
                out.extend(s.log_entries(i, i + 1)?);
            }
            Ok(out)
        })
        .await?;
    Ok(HttpResponse::Ok().json(to_entries(rows)))
}

/// The current checkpoint, signed with the log key (C2SP signed note).
async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (tree_size, root) = state
        .with_store(|s| {
            let n = s.log_size()?;
            Ok((n, s.log_root(n)?))
        })
        .await?;
    let checkpoint = state
        .log_signer()
        .sign_checkpoint(tree_size, root)
        .map_err(|e| ApiError::Internal(format!("signing checkpoint: {e}")))?;
    Ok(HttpResponse::Ok().json(CheckpointResponse {
        tree_size,
        root_hash: B64(root.as_bytes().to_vec()),
        checkpoint,
    }))
}

/// The note verifier key (`name+keyid+base64`) auditors pin.
async fn verifier_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(state.log_signer().verifier().to_verifier_key())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    tree_size: u64,
}

async fn inclusion(
    state: web::Data<AppState>,
    q: web::Query<InclusionQuery>,
) -> Result<HttpResponse, ApiError> {
    let InclusionQuery { index, tree_size } = q.into_inner();
    let proof = state.with_store(move |s| s.inclusion_proof(index, tree_size)).await?;
    Ok(HttpResponse::Ok().json(ProofResponse {
        from: proof.leaf_index,
        tree_size: proof.tree_size,
        path: proof.hashes.iter().map(|h| B64(h.as_bytes().to_vec())).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    old_size: u64,
    new_size: u64,
}

async fn consistency(
    state: web::Data<AppState>,
    q: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let ConsistencyQuery { old_size, new_size } = q.into_inner();
    let proof = state.with_store(move |s| s.consistency_proof(old_size, new_size)).await?;
    Ok(HttpResponse::Ok().json(ProofResponse {
        from: proof.old_size,
        tree_size: proof.new_size,
        path: proof.hashes.iter().map(|h| B64(h.as_bytes().to_vec())).collect(),
    }))
}
