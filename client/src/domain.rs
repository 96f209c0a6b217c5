//! Domain-separation labels the client adds (the crypto and policy crates
//! keep theirs in their own `domain` modules; record-id prefixes are in
//! `medrelay_fhir::ids`).

/// Hash prefix of the id of a Bundle `fetch-all` writes (over patient,
/// doctor and time: it names the export, not its content).
pub const FETCH_ALL_BUNDLE_ID: &[u8] = b"medrelay/v1/client/fetch-all-bundle";
/// The opaque PRE key bytes an auditor registers: auditors hold no PRE keys,
/// but the directory requires a non-empty value.
pub const NO_PRE_KEYS: &[u8] = b"medrelay/v1/no-pre-keys";

/// HKDF info for the key that seals a doctor profile's opened batch keys
/// (derived from the doctor's signing key seed).
pub const BATCH_KEY_STORE: &[u8] = b"medrelay/v2/client/batch-key-store";
