//! Documented request limits. The server enforces each one and answers `413`
//! (body too large) or `400` (a field or list over its limit) otherwise.

/// Largest JSON request body, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest single record envelope, in bytes (before base64).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// Most envelopes in one batch upload.
pub const MAX_BATCH_RECORDS: usize = 64;
/// Most record ids in one batch re-encryption request.
pub const MAX_BATCH_REENCRYPT: usize = 64;
/// Largest encoded PRE public key bundle of a principal, in bytes.
pub const MAX_PRE_PUBLIC_KEYS_BYTES: usize = 2 * 1024 * 1024;
/// Largest encoded grant, in bytes.
pub const MAX_GRANT_BYTES: usize = 64 * 1024;
/// Largest encoded re-encryption key of one key class, in bytes.
pub const MAX_REKEY_BYTES: usize = 5 * 1024 * 1024;
/// Most re-encryption keys in one grant (one per key class).
pub const MAX_REKEYS_PER_GRANT: usize = 8;
/// Largest JSON body of a grant creation (base64 of up to eight keys).
pub const MAX_GRANT_BODY_BYTES: usize = 56 * 1024 * 1024;
/// Largest encoded revocation, in bytes.
pub const MAX_REVOCATION_BYTES: usize = 4 * 1024;
/// Longest display name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Length of an authentication challenge nonce, in bytes.
pub const NONCE_LEN: usize = 32;
/// Most log entries returned by one range request.
pub const MAX_LOG_RANGE: u64 = 1000;
/// Most items returned by one list request.
pub const MAX_LIST_ITEMS: usize = 1000;
/// Lifetime of an authentication challenge, in seconds.
pub const CHALLENGE_TTL_SECS: u64 = 120;
/// Lifetime of a bearer token, in seconds.
pub const TOKEN_TTL_SECS: u64 = 15 * 60;
/// Lifetime of an operator enrollment token, in seconds.
pub const ENROLLMENT_TTL_SECS: u64 = 7 * 24 * 3600;
