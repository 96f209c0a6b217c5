//! Audit events: medrelay-policy's typed [`LogEvent`], turned into store
//! appends (canonical bytes sealed with a fresh salt, and the principals the
//! event is about, so each can list the events about them).
//!
//! Refusals ([`refuse`]): a submitted object whose signature or ownership
//! does not check out (forged grant, tampered envelope, someone else's
//! revocation), a read of another principal's objects, or an operation of
//! another role is answered with its 4xx and logged as `request refused`
//! with ids, route names and codes only, never the submitted bytes; nothing
//! else is stored. Only requests that passed bearer authentication reach
//! these checks, so an anonymous client cannot grow the log: every refusal
//! entry names a registered principal who is accountable for it, and
//! repeats are coalesced ([`crate::log::refusals`]).

use medrelay_crypto::{Fingerprint, PrincipalId, RecordId};
use medrelay_policy::{Denial, LogEvent, RefusalReason, RefusedObject};
use medrelay_wire::Role;

use crate::log::refusals;
use crate::store::LogAppend;
use crate::{ApiError, AppState};

/// The policy crate's role for a wire role.
pub(crate) fn policy_role(role: Role) -> medrelay_policy::Role {
    match role {
        Role::Patient => medrelay_policy::Role::Patient,
        Role::Doctor => medrelay_policy::Role::Doctor,
        Role::Analyst => medrelay_policy::Role::Analyst,
        Role::Auditor => medrelay_policy::Role::Auditor,
    }
}

/// `Fingerprint::of(b"pre", bytes)`, as `medrelay_policy::PrePublicKey` computes it.
pub(crate) fn pre_key_fingerprint(bytes: &[u8]) -> [u8; 32] {
    *Fingerprint::of(b"pre", bytes).as_bytes()
}

/// The store append for `ev`: its canonical (validated) bytes sealed with a
/// fresh random salt (the tree gets only the salted commitment), and its
/// audience, whose own histories list it.
pub(crate) fn append(ev: &LogEvent) -> Result<LogAppend, ApiError> {
    LogAppend::seal(ev).map_err(|e| ApiError::Internal(format!("encoding a log event: {e}")))
}

/// Logs that `principal` (authenticated) was refused `what` for `reason`
/// (coalesced with identical refusals, see [`crate::log::refusals`]), and returns
/// `error`, the answer to send. A failed log append fails the request
/// instead (the audit log is always on).
pub(crate) async fn refuse(
    state: &AppState,
    principal: PrincipalId,
    what: RefusedObject,
    reason: RefusalReason,
    error: ApiError,
) -> ApiError {
    let kind = what.kind();
    let id = what.id_text();
    let event = LogEvent::RequestRefused { at: state.clock().now(), principal, what, reason, count: 1 };
    match refusals::record(state, event).await {
        Ok(idx) => {
            state.metrics().request_refused();
            tracing::info!(
                principal.id = %principal,
                refused.kind = kind,
                refused.id = %id,
                reason = reason.code(),
                log.index = ?idx,
                "request refused"
            );
            error
        }
        Err(e) => e,
    }
}

/// Logs that `doctor` was refused `record` (owned by `patient`, if it
/// exists) for `reason` (coalesced with identical refusals), and returns the
/// 403 answer carrying the policy's reason code. A failed log append fails
/// the request instead.
pub(crate) async fn deny_access(
    state: &AppState,
    doctor: PrincipalId,
    record: RecordId,
    patient: Option<PrincipalId>,
    reason: Denial,
) -> ApiError {
    let event = LogEvent::AccessDenied { at: state.clock().now(), doctor, record, patient, reason, count: 1 };
    match refusals::record(state, event).await {
        Ok(idx) => {
            state.metrics().access_denied();
            tracing::info!(record.id = %record, doctor.id = %doctor, reason = reason.code(), log.index = ?idx, "access denied");
            ApiError::Denied { reason: reason.code() }
        }
        Err(e) => e,
    }
}
