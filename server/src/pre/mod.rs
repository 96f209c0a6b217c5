//! The proxy re-encryption (PRE) service: record envelopes in, re-encrypted
//! capsules out, only under a grant in force.
//!
//! - `records`: patients' uploads (signed capsules and envelopes, stored as
//!   uploaded with their `record published` log entries), listings and
//!   envelope reads;
//! - `access`: the need-to-know decision every read path shares: a doctor's
//!   verified grants from one patient and the policy's `ReadCapability`;
//! - `reencrypt`: the doctors' batched fetch, each access served or denied
//!   and logged;
//! - `rekey_cache`: the bounded cache of prepared re-encryption keys
//!   ([`RekeyCache`](crate::RekeyCache)), consulted only after
//!   authorization.

use actix_web::web;

pub(crate) mod access;
pub(crate) mod records;
pub(crate) mod reencrypt;
pub(crate) mod rekey_cache;

/// The PRE service's routes (under `/v1`).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    records::routes(cfg);
    reencrypt::routes(cfg);
}
