//! The PRE service: record envelopes and the doctors' re-encrypted fetch.

pub(crate) mod access;
pub(crate) mod records;
pub(crate) mod reencrypt;
pub(crate) mod rekey_cache;
