//! The audit log service. It proves without publishing:
//!
//! - public, without authentication: the signed checkpoint, the verifier
//!   key, inclusion and consistency proofs, and leaf hashes
//!   (`/log/leaves`). A leaf is a salted commitment to its event
//!   ([`medrelay_policy::LeafOpening`]), so none of this reveals an id, a
//!   name, a category or a sensitivity class; an outsider learns the number
//!   of entries and when the log grows;
//! - authenticated: an entry's event and salt, only to the event's audience
//!   ([`medrelay_policy::LogEvent::audience`]: the patient an event is about,
//!   the doctor who acted or was refused, the principal refused, the analyst
//!   charged) and to auditors, who read every entry. `/log/mine` lists the
//!   caller's entries; `/log/entries` returns, of a range, the entries the
//!   caller may read (all of them for an auditor). Each reader recomputes
//!   the leaf hash and checks inclusion against a signed checkpoint.
//!
//! Every service writes to the log through the two submodules: `events`
//! turns medrelay-policy's typed events into store appends (salted, with
//! their audience), and `refusals` records refused requests, identical ones
//! coalesced per window ([`RefusalCoalescer`](crate::RefusalCoalescer)).

pub(crate) mod events;
pub(crate) mod refusals;

use actix_web::{web, HttpResponse};
use medrelay_policy::LeafOpening;
use medrelay_wire::{
    limits, CheckpointResponse, LeafHash, LeafHashes, LogEntries, LogEntry, ProofResponse, Role, B64,
};
use serde::Deserialize;

use crate::policy::auth::Auth;
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/log/entries", web::get().to(entries))
        .route("/log/leaves", web::get().to(leaves))
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

impl Range {
    fn checked(self) -> Result<(u64, u64), ApiError> {
        let Range { start, end } = self;
        if end < start || end - start > limits::MAX_LOG_RANGE {
            return Err(ApiError::InvalidParameter(format!(
                "need start <= end and at most {} entries",
                limits::MAX_LOG_RANGE
            )));
        }
        Ok((start, end))
    }
}

/// Of entries `[start, end)`, those the caller may read: every one for an
/// auditor, else those whose event's audience includes the caller (an
/// entry whose event does not decode is withheld).
async fn entries(
    state: web::Data<AppState>,
    auth: Auth,
    q: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let (start, end) = q.into_inner().checked()?;
    refusals::flush_closed(&state).await?;
    let mut rows = state.with_store(move |s| s.log_entries(start, end)).await?;
    if auth.role != Role::Auditor {
        rows.retain(|(_, o)| o.event().and_then(|e| e.audience()).is_ok_and(|a| a.includes(&auth.principal)));
    }
    Ok(HttpResponse::Ok().json(to_entries(rows)))
}

/// Leaf hashes of entries `[start, end)`: public, they reveal nothing of the
/// events.
async fn leaves(state: web::Data<AppState>, q: web::Query<Range>) -> Result<HttpResponse, ApiError> {
    let (start, end) = q.into_inner().checked()?;
    let rows = state.with_store(move |s| s.log_leaf_hashes(start, end)).await?;
    Ok(HttpResponse::Ok().json(LeafHashes {
        leaves: rows
            .into_iter()
            .map(|(index, h)| LeafHash { index, hash: B64(h.as_bytes().to_vec()) })
            .collect(),
    }))
}

fn to_entries(rows: Vec<(u64, LeafOpening)>) -> LogEntries {
    LogEntries {
        entries: rows
            .into_iter()
            .map(|(index, o)| LogEntry {
                index,
                salt: B64(o.salt().as_bytes().to_vec()),
                event: B64(o.event_bytes().to_vec()),
            })
            .collect(),
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
/// published, grants, revocations, every access served or denied on their
/// records, and the refusals of their own requests; for a doctor: their
/// grants, accesses and refusals).
async fn mine(state: web::Data<AppState>, auth: Auth, q: web::Query<Page>) -> Result<HttpResponse, ApiError> {
    let Page { from, limit } = q.into_inner();
    let limit = limit.unwrap_or(limits::MAX_LIST_ITEMS);
    if limit == 0 || limit > limits::MAX_LIST_ITEMS {
        return Err(ApiError::InvalidParameter(format!("limit must be 1..={}", limits::MAX_LIST_ITEMS)));
    }
    refusals::flush_closed(&state).await?;
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
