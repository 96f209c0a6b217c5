//! The audit log service: entries by range and each principal's own history.

use actix_web::{web, HttpResponse};
use medrelay_wire::{limits, LogEntries, LogEntry, B64};
use serde::Deserialize;

use crate::auth::Auth;
use crate::{ApiError, AppState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/log/entries", web::get().to(entries)).route("/log/mine", web::get().to(mine));
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
