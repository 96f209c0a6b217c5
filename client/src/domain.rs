//! Domain-separation labels the client adds (the crypto and policy crates
//! keep theirs in their own `domain` modules).

/// Hash prefix of a FHIR record id:
/// `SHA-256(FHIR_RECORD_ID || owner || resourceType || 0x00 || resource id)`,
/// first 16 bytes.
pub const FHIR_RECORD_ID: &[u8] = b"medrelay/v1/client/fhir-record-id";
/// Hash prefix of an uploaded file's record id:
/// `SHA-256(FILE_RECORD_ID || owner || SHA-256(content))`, first 16 bytes.
pub const FILE_RECORD_ID: &[u8] = b"medrelay/v1/client/file-record-id";
/// The opaque PRE key bytes an auditor registers: auditors hold no PRE keys,
/// but the directory requires a non-empty value.
pub const NO_PRE_KEYS: &[u8] = b"medrelay/v1/no-pre-keys";
