//! Every domain-separation label of this crate.

/// Hash prefix of a FHIR record id: SHA-256 over this prefix, then the
/// owner id, the resource type and the resource id, each with a u64
/// big-endian length prefix; the first 16 bytes. (Unchanged from the
/// client's first importer, so ids stay stable.)
pub const FHIR_RECORD_ID: &[u8] = b"medrelay/v1/client/fhir-record-id";
/// Hash prefix of an uploaded file's record id (prefix, owner, SHA-256 of
/// the content, length-prefixed as above).
pub const FILE_RECORD_ID: &[u8] = b"medrelay/v1/client/file-record-id";
/// Hash prefix of an id assigned from a resource's content.
pub const CONTENT_ID: &[u8] = b"medrelay/v1/fhir/content-id";
