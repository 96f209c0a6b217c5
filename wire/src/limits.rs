//! Documented request limits. The server enforces each one and answers `413`
//! (body too large) or `400` (a field or list over its limit) otherwise.
//!
//! Body limits are per route and derived from the largest real object each
//! body can carry (base64 adds a third), so that no route accepts more
//! bytes than its largest valid request: a grant with eight re-encryption
//! keys is ~17 MiB, a login 4 KiB.

/// Length of the base64 (padded) encoding of `n` bytes.
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Largest JSON request body of a batch upload (`POST /v1/records/batch`),
/// in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest JSON body of a login step (`/v1/auth/challenge`,
/// `/v1/auth/token`), and of any route not listed here.
pub const MAX_SMALL_BODY_BYTES: usize = 4 * 1024;
/// Largest single record envelope, in bytes (before base64).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// Most envelopes in one batch upload.
pub const MAX_BATCH_RECORDS: usize = 1024;
/// Most batch capsules in one upload (one per key class of the batch).
pub const MAX_BATCH_CAPSULES: usize = 8;
/// Largest signed batch capsule, in bytes (before base64).
pub const MAX_CAPSULE_BYTES: usize = medrelay_crypto::MAX_SIGNED_CAPSULE_LEN;
/// Most record ids in one batched fetch (`POST /v1/reencrypt`).
pub const MAX_BATCH_REENCRYPT: usize = 1024;
/// Largest JSON body of a single upload (`POST /v1/records`): one
/// envelope and its batch capsule in base64 and the JSON around it.
pub const MAX_RECORD_BODY_BYTES: usize =
    base64_len(MAX_ENVELOPE_BYTES) + base64_len(MAX_CAPSULE_BYTES) + 1024;
/// Largest encoded PRE public key bundle of a principal, in bytes: a
/// patient's eight class keys (the largest bundle there is).
pub const MAX_PRE_PUBLIC_KEYS_BYTES: usize = medrelay_crypto::MAX_PATIENT_PUBLIC_KEYS_LEN;
/// Largest JSON body of a registration (`POST /v1/principals`): the PRE
/// public keys in base64 plus name, keys, signature and token.
pub const MAX_REGISTER_BODY_BYTES: usize = base64_len(MAX_PRE_PUBLIC_KEYS_BYTES) + 4 * 1024;
/// Largest encoded grant, in bytes.
pub const MAX_GRANT_BYTES: usize = 64 * 1024;
/// Largest encoded re-encryption key of one key class, in bytes (the
/// lattice key-switching key, ~1.56 MiB, and up to 16 Umbral fragments).
pub const MAX_REKEY_BYTES: usize = medrelay_crypto::MAX_REKEY_LEN;
/// Most re-encryption keys in one grant (one per key class).
pub const MAX_REKEYS_PER_GRANT: usize = 8;
/// Largest JSON body of a grant creation (`POST /v1/grants`): the signed
/// grant and up to eight re-encryption keys in base64 (~17 MiB).
pub const MAX_GRANT_BODY_BYTES: usize =
    base64_len(MAX_GRANT_BYTES) + MAX_REKEYS_PER_GRANT * (base64_len(MAX_REKEY_BYTES) + 8) + 1024;
/// Largest encoded revocation, in bytes.
pub const MAX_REVOCATION_BYTES: usize = 4 * 1024;
/// Largest JSON body of a revocation (`POST /v1/grants/{id}/revoke`).
pub const MAX_REVOKE_BODY_BYTES: usize = base64_len(MAX_REVOCATION_BYTES) + 1024;
/// Largest JSON body of a batch re-encryption (`POST /v1/reencrypt`): up to
/// [`MAX_BATCH_REENCRYPT`] ids of 32 hex digits.
pub const MAX_REENCRYPT_BODY_BYTES: usize = MAX_BATCH_REENCRYPT * 35 + 1024;
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
