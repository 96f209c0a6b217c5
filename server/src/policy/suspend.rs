//! Operator suspension of a compromised doctor, analyst or auditor.
//!
//! `medrelay-server suspend --principal ID` (and `unsuspend`) goes through
//! the running server's admin socket, or opens the database when no server
//! runs, exactly like enrollment. A suspension is one durable store change
//! with its `principal suspended` log entry, checked on every request: from
//! that moment every request with one of the principal's bearer tokens, and
//! every signed login of it, is refused with `403 suspended` and logged
//! (`suspended principal refused`, at most once a minute per principal,
//! every one counted in `medrelay_suspended_refusals_total`), so the
//! operator and auditors see a stolen key or token still being tried.
//! Reinstating deletes the principal's old sessions first (none of them
//! ever works again), is logged too, and needs a fresh login.
//!
//! Patients cannot be suspended: they hold their own keys and must always
//! be able to read their history and revoke grants.

use std::path::Path;

use medrelay_crypto::PrincipalId;
use medrelay_policy::LogEvent;
use medrelay_wire::Role;
use serde::{Deserialize, Serialize};

use crate::log::events;
use crate::serve::{load_log_key, ServeError};
use crate::store::Store;
use crate::{ApiError, Clock};

/// What a suspension or reinstatement did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspensionReceipt {
    /// The principal.
    pub principal: PrincipalId,
    /// Its role.
    pub role: Role,
    /// Whether it is now suspended.
    pub suspended: bool,
    /// The log entry of the change.
    pub log_index: u64,
    /// Sessions of the principal that stopped working (0 when reinstating).
    pub sessions_ended: u64,
}

/// Suspends (`suspend`) or reinstates `principal` in an open store and
/// logs it. Refuses patients, unknown principals, a second suspension and
/// reinstating someone not suspended; each refusal changes nothing.
pub fn set_suspended_in(
    store: &dyn Store,
    principal: PrincipalId,
    suspend: bool,
    clock: &Clock,
) -> Result<SuspensionReceipt, ApiError> {
    let p = store.get_principal(&principal)?.ok_or(ApiError::NotFound("principal"))?;
    if p.role == Role::Patient {
        return Err(ApiError::field(
            "principal",
            "patients cannot be suspended: they hold their own keys and must always be able to revoke",
        ));
    }
    let at = clock.now();
    let (log_index, sessions_ended) = if suspend {
        store.suspend_principal(
            &principal,
            &events::append(&LogEvent::PrincipalSuspended { at, principal })?,
        )?
    } else {
        let event = events::append(&LogEvent::PrincipalReinstated { at, principal })?;
        (store.reinstate_principal(&principal, &event)?, 0)
    };
    tracing::info!(principal.id = %principal, principal.role = %p.role, suspended = suspend, sessions_ended, log.index = log_index, "suspension changed");
    Ok(SuspensionReceipt { principal, role: p.role, suspended: suspend, log_index, sessions_ended })
}

/// Where [`set_suspended`] made the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangedVia {
    /// Through the running server's admin socket at this path.
    AdminSocket(std::path::PathBuf),
    /// Directly in the database (no server was running).
    Database,
}

/// `medrelay-server suspend|unsuspend`: through `socket`, or `DATA`'s admin
/// socket when a server answers there, else directly in the database.
pub fn set_suspended(
    data: &Path,
    socket: Option<&Path>,
    principal: PrincipalId,
    suspend: bool,
    clock: &Clock,
) -> Result<(SuspensionReceipt, ChangedVia), ServeError> {
    #[cfg(unix)]
    if let Some(path) = crate::ops::admin::operator_socket(data, socket)? {
        let r = crate::ops::admin::set_suspended_via_socket(&path, principal, suspend)?;
        return Ok((r, ChangedVia::AdminSocket(path)));
    }
    #[cfg(not(unix))]
    crate::ops::admin::operator_socket(data, socket)?;
    load_log_key(data)?;
    let store = crate::serve::open_offline(data)?;
    let r = set_suspended_in(&*store, principal, suspend, clock).map_err(|e| match e {
        ApiError::Internal(detail) => ServeError::Admin { status: 500, message: detail },
        other => ServeError::Argument(other.to_string()),
    })?;
    Ok((r, ChangedVia::Database))
}
