//! The policy service: who the principals are and what they granted.
//!
//! - `directory`: registration (patients self-register; other roles with a
//!   one-time operator token) and lookup of principals, names and keys
//!   shown only to callers with a reason;
//! - `auth`: challenge-response login, bearer sessions and the role
//!   extractors ([`Auth`](crate::Auth), [`PatientAuth`](crate::PatientAuth),
//!   [`DoctorAuth`](crate::DoctorAuth), [`AuditorAuth`](crate::AuditorAuth));
//! - `grants`: patient-signed grants with their re-encryption keys, listing
//!   and patient-signed revocation;
//! - [`suspend`]: the operator's suspension of a compromised principal,
//!   checked on every request.

use actix_web::web;

pub(crate) mod auth;
pub(crate) mod directory;
pub(crate) mod grants;
pub mod suspend;

/// The policy service's routes (under `/v1`).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    auth::routes(cfg);
    directory::routes(cfg);
    grants::routes(cfg);
}
