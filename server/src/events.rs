//! Audit events: medrelay-policy's typed [`LogEvent`], turned into store
//! appends (canonical bytes + the principals each event concerns, so a
//! patient can list the events about their records).

use medrelay_crypto::{Fingerprint, PrincipalId};
use medrelay_policy::LogEvent;
use medrelay_wire::Role;

use crate::store::LogAppend;
use crate::ApiError;

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
        LogEvent::SummarySubmitted { patient, .. } => vec![*patient],
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
