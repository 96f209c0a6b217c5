//! Audit events: medrelay-policy's typed [`LogEvent`], turned into store
//! appends (canonical bytes + the principals each event concerns, so a
//! patient can list the events about their records).
//!
//! Refusals ([`refuse`]): a submitted object whose signature or ownership
//! does not check out (forged grant, tampered envelope, someone else's
//! revocation) is answered with its 4xx and logged as `request refused`
//! with ids and codes only, never the submitted bytes; nothing else is
//! stored. Only requests that passed bearer authentication reach these
//! checks, so an anonymous client cannot grow the log: every refusal entry
//! names a registered principal who is accountable for it, exactly as for
//! the records and grants that principal may legitimately append.

use medrelay_crypto::{Fingerprint, PrincipalId};
use medrelay_policy::{LogEvent, RefusalReason, RefusedObject};
use medrelay_wire::Role;

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

/// The principals an event is about.
fn subjects(ev: &LogEvent) -> Result<Vec<PrincipalId>, ApiError> {
    let mut v = match ev {
        LogEvent::PrincipalRegistered { principal, .. } => vec![*principal],
        LogEvent::DoctorEnrolled { doctor, .. } => vec![*doctor],
        LogEvent::RecordPublished { header, .. } => vec![header.owner()],
        LogEvent::GrantCreated { grant, .. } => {
            let g = medrelay_policy::Grant::from_bytes(grant.body())
                .map_err(|e| ApiError::Internal(format!("logging a grant: {e}")))?;
            vec![g.patient(), g.doctor()]
        }
        LogEvent::GrantRevoked { revocation, .. } => {
            let r = medrelay_policy::Revocation::from_bytes(revocation.body())
                .map_err(|e| ApiError::Internal(format!("logging a revocation: {e}")))?;
            vec![r.patient()]
        }
        LogEvent::ReencryptionServed { doctor, patient, .. } => vec![*patient, *doctor],
        LogEvent::AccessDenied { doctor, patient, .. } => {
            let mut v = vec![*doctor];
            v.extend(patient);
            v
        }
        LogEvent::DpQueryAnswered { analyst, .. } => vec![*analyst],
        LogEvent::RequestRefused { principal, .. } => vec![*principal],
        LogEvent::SummarySubmitted { patient, .. } | LogEvent::SummaryWithdrawn { patient, .. } => {
            vec![*patient]
        }
        LogEvent::BudgetSet { analyst, .. } => vec![*analyst],
        LogEvent::PrincipalSuspended { principal, .. }
        | LogEvent::PrincipalReinstated { principal, .. }
        | LogEvent::SuspendedPrincipalRefused { principal, .. } => vec![*principal],
        _ => Vec::new(),
    };
    v.sort();
    v.dedup();
    Ok(v)
}

/// The store append for `ev`: its canonical (validated) bytes and subjects.
pub(crate) fn append(ev: &LogEvent) -> Result<LogAppend, ApiError> {
    let data = ev.to_bytes().map_err(|e| ApiError::Internal(format!("encoding a log event: {e}")))?;
    Ok(LogAppend { data, subjects: subjects(ev)? })
}

/// Logs that `principal` (authenticated) submitted `what` and it was refused
/// for `reason`, and returns `error`, the answer to send. A failed log append
/// fails the request instead (the audit log is always on).
pub(crate) async fn refuse(
    state: &AppState,
    principal: PrincipalId,
    what: RefusedObject,
    reason: RefusalReason,
    error: ApiError,
) -> ApiError {
    let event = match append(&LogEvent::RequestRefused { at: state.clock().now(), principal, what, reason }) {
        Ok(e) => e,
        Err(e) => return e,
    };
    match state.with_store(move |s| s.append_log(&event)).await {
        Ok(idx) => {
            state.metrics().request_refused();
            tracing::info!(
                principal.id = %principal,
                refused.kind = what.kind(),
                refused.id = %hex::encode(what.id_bytes()),
                reason = reason.code(),
                log.index = idx,
                "request refused"
            );
            error
        }
        Err(e) => e,
    }
}
