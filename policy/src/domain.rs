//! Domain-separation labels and blob magics of medrelay-policy. Signature
//! contexts for grants and revocations are in [`medrelay_crypto::domain`];
//! the labels here are the ones this crate adds.

/// Magic of an encoded grant body (`Grant::to_bytes`).
pub const GRANT_MAGIC: &[u8; 4] = b"MRGT";
/// Magic of an encoded signed grant (body + signature).
pub const SIGNED_GRANT_MAGIC: &[u8; 4] = b"MRSG";
/// Magic of an encoded revocation body.
pub const REVOCATION_MAGIC: &[u8; 4] = b"MRRV";
/// Magic of an encoded signed revocation.
pub const SIGNED_REVOCATION_MAGIC: &[u8; 4] = b"MRSR";
/// Magic of an encoded principal.
pub const PRINCIPAL_MAGIC: &[u8; 4] = b"MRPR";
/// Magic of an encoded audit log event (the Merkle leaf data).
pub const LOG_EVENT_MAGIC: &[u8; 4] = b"MRLE";

/// C2SP signed-note signature type byte for Ed25519.
pub const NOTE_SIG_TYPE_ED25519: u8 = 0x01;
/// Magic of an encoded leaf opening (salt + event), the log's stored and
/// served entry form.
pub const LEAF_OPENING_MAGIC: &[u8; 4] = b"MRLO";
/// Domain prefix of a log leaf's commitment to its event:
/// `SHA-256(LEAF_COMMITMENT_DOMAIN || salt || event bytes)`.
pub const LEAF_COMMITMENT_DOMAIN: &[u8] = b"medrelay/log-leaf-commitment/v1\0";
