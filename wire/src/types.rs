//! Request and response bodies of the `/v1` API.

use std::fmt;
use std::str::FromStr;

use medrelay_crypto::{
    CapsuleId, GrantId, KeyClass, PrincipalId, RecordId, Signature, Timestamp, VerifyingKey,
};
use serde::{Deserialize, Serialize};

use crate::B64;

/// Every error response: `{ "error": code, "message": text }`. The code is a
/// stable machine-readable string; the message is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable error code, e.g. `invalid_json`, `unauthorized`, `no_grant`.
    pub error: String,
    /// Human-readable explanation (never contains secrets or internal detail).
    pub message: String,
}

/// A principal's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Owns records; self-registers.
    Patient,
    /// Reads granted records; registers with an operator token.
    Doctor,
    /// Asks DP queries; registers with an operator token.
    Analyst,
    /// Reviews the log; registers with an operator token.
    Auditor,
}

impl Role {
    /// One-byte code used in signed messages and storage.
    pub const fn code(self) -> u8 {
        match self {
            Role::Patient => 1,
            Role::Doctor => 2,
            Role::Analyst => 3,
            Role::Auditor => 4,
        }
    }

    /// The role with the given code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Role::Patient),
            2 => Some(Role::Doctor),
            3 => Some(Role::Analyst),
            4 => Some(Role::Auditor),
            _ => None,
        }
    }

    /// Lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    /// Whether registering this role needs an operator enrollment token.
    pub const fn needs_enrollment(self) -> bool {
        !matches!(self, Role::Patient)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing a [`Role`] from text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRole;

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown role (expected patient, doctor, analyst or auditor)")
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "patient" => Ok(Role::Patient),
            "doctor" => Ok(Role::Doctor),
            "analyst" => Ok(Role::Analyst),
            "auditor" => Ok(Role::Auditor),
            _ => Err(UnknownRole),
        }
    }
}

// ---------------------------------------------------------------- auth

/// `POST /v1/auth/challenge`: asks for a nonce to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The registered principal that will sign.
    pub principal: PrincipalId,
}

/// Answer to [`ChallengeRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeResponse {
    /// Random nonce; sign [`crate::challenge_message`] over it. Single use.
    pub nonce: B64,
    /// When the nonce stops being accepted.
    pub expires_at: Timestamp,
}

/// `POST /v1/auth/token`: the signed challenge, exchanged for a bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The principal.
    pub principal: PrincipalId,
    /// The nonce from [`ChallengeResponse`].
    pub nonce: B64,
    /// Signature under `domain::SIG_AUTH_CHALLENGE` over
    /// [`crate::challenge_message`].
    pub signature: Signature,
}

/// Answer to [`TokenRequest`]. The token is a secret: clients keep it out of
/// logs. It goes in `Authorization: Bearer <token>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenResponse {
    /// Opaque bearer token.
    pub token: String,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The principal's role.
    pub role: Role,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"..")
            .field("expires_at", &self.expires_at)
            .field("role", &self.role)
            .finish()
    }
}

// ---------------------------------------------------------------- directory

/// `POST /v1/principals`: registers a principal. Patients self-register;
/// other roles present a one-time operator enrollment token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Requested role.
    pub role: Role,
    /// Display name (a doctor's name; patients may use a pseudonym). At most
    /// [`crate::limits::MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Ed25519 signing key; the principal id is derived from it.
    pub signing_key: VerifyingKey,
    /// Encoded PRE public keys (format defined by medrelay-crypto).
    pub pre_public_keys: B64,
    /// One-time operator token, required for every role but patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    /// Signature under `domain::SIG_REGISTRATION` over
    /// [`crate::registration_message`].
    pub signature: Signature,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("role", &self.role)
            .field("principal", &self.signing_key.principal_id())
            .finish_non_exhaustive()
    }
}

/// A registered principal, as the directory serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalInfo {
    /// Principal id (hash of the signing key).
    pub id: PrincipalId,
    /// Role.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Ed25519 signing key.
    pub signing_key: VerifyingKey,
    /// Encoded PRE public keys.
    pub pre_public_keys: B64,
    /// The registration signature (auditors can re-check it).
    pub signature: Signature,
    /// When the server registered it.
    pub registered_at: Timestamp,
    /// Index of the registration event in the audit log.
    pub log_index: u64,
}

// ---------------------------------------------------------------- records

/// `POST /v1/records`: uploads one signed record envelope (and its batch
/// capsule, unless the server holds it already). Also the answer to
/// `GET /v1/records/{id}`, which always carries the capsule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRecordRequest {
    /// The encoded envelope (format defined by medrelay-crypto).
    pub envelope: B64,
    /// The owner-signed batch capsule the envelope names
    /// (medrelay-crypto `SignedCapsule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capsule: Option<B64>,
}

/// `POST /v1/records/batch`: uploads batch capsules and the envelopes
/// sealed under them, atomically (one transaction, one flush).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRecordsRequest {
    /// At most [`crate::limits::MAX_BATCH_CAPSULES`] owner-signed batch
    /// capsules (medrelay-crypto `SignedCapsule`); an envelope may also
    /// name a capsule the server already holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capsules: Vec<B64>,
    /// At most [`crate::limits::MAX_BATCH_RECORDS`] envelopes.
    pub envelopes: Vec<B64>,
}

/// What the server stored for one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordReceipt {
    /// The record id (from the signed header).
    pub record_id: RecordId,
    /// Index of the `record published` event in the audit log.
    pub log_index: u64,
}

/// Answer to an upload: one receipt per envelope, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRecordsResponse {
    /// Receipts.
    pub receipts: Vec<RecordReceipt>,
}

/// Public metadata of a stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSummary {
    /// Record id.
    pub record_id: RecordId,
    /// Owner.
    pub owner: PrincipalId,
    /// Key class the record is encrypted under.
    pub key_class: KeyClass,
    /// When the owner created it (from the signed header).
    pub created_at: Timestamp,
    /// Envelope size in bytes.
    pub size: u64,
}

/// `GET /v1/patients/{id}/records`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordList {
    /// Records, ordered by id (for a doctor: only those a grant in force
    /// covers).
    pub records: Vec<RecordSummary>,
    /// When more may follow: the cursor to pass as `?after=` for the next
    /// page (the last id scanned, which a doctor's page may not show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<RecordId>,
}

// ---------------------------------------------------------------- grants

/// `POST /v1/grants`: a patient-signed grant with its re-encryption keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantRequest {
    /// The encoded signed grant (format defined by medrelay-policy).
    pub grant: B64,
    /// One encoded re-encryption key (medrelay-crypto `ReencryptionKey`)
    /// per key class the scope touches; at most
    /// [`crate::limits::MAX_REKEYS_PER_GRANT`].
    pub rekeys: Vec<B64>,
}

/// Answer to a grant creation or revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantReceipt {
    /// Grant id.
    pub grant_id: GrantId,
    /// Index of the event in the audit log.
    pub log_index: u64,
}

/// `POST /v1/grants/{id}/revoke`: a patient-signed revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The encoded signed revocation (format defined by medrelay-policy).
    pub revocation: B64,
}

/// A stored grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantInfo {
    /// Grant id.
    pub grant_id: GrantId,
    /// Patient who signed it.
    pub patient: PrincipalId,
    /// Doctor it authorizes.
    pub doctor: PrincipalId,
    /// The encoded signed grant, so the reader can verify it.
    pub grant: B64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A list of grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantList {
    /// Grants, ordered by id.
    pub grants: Vec<GrantInfo>,
}

// ---------------------------------------------------------------- re-encryption

/// `POST /v1/reencrypt`: a doctor asks for several records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReencryptRequest {
    /// At most [`crate::limits::MAX_BATCH_REENCRYPT`] record ids.
    pub record_ids: Vec<RecordId>,
}

/// One re-encrypted record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReencryptedRecord {
    /// Record id.
    pub record_id: RecordId,
    /// The grant that authorized it.
    pub grant_id: GrantId,
    /// The owner-signed envelope, unchanged.
    pub envelope: B64,
    /// The batch capsule the envelope is sealed under (delivered once per
    /// answer in [`ReencryptResponse::capsules`]).
    pub capsule_id: CapsuleId,
    /// Index of the `re-encryption served` event in the audit log.
    pub log_index: u64,
}

/// A batch capsule and its re-encryption toward the doctor under one
/// grant: computed once per (capsule, grant), stored, and returned as the
/// same bytes every time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredCapsule {
    /// The capsule's id.
    pub capsule_id: CapsuleId,
    /// The grant it was re-encrypted under.
    pub grant_id: GrantId,
    /// The owner-signed capsule (medrelay-crypto `SignedCapsule`).
    pub capsule: B64,
    /// Its re-encryption toward the doctor (medrelay-crypto
    /// `ReencryptedCapsule`).
    pub reencrypted: B64,
}

/// One item of a batch answer: either the record or the denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ReencryptItem {
    /// Served.
    Served(ReencryptedRecord),
    /// Denied, with the reason code (logged too).
    Denied {
        /// Record id.
        record_id: RecordId,
        /// Error body with the reason code.
        error: ErrorBody,
    },
}

/// Answer to [`ReencryptRequest`], in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReencryptResponse {
    /// Items.
    pub items: Vec<ReencryptItem>,
    /// Each batch capsule the served items need, once.
    #[serde(default)]
    pub capsules: Vec<DeliveredCapsule>,
}

// ---------------------------------------------------------------- log

/// A signed checkpoint of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointResponse {
    /// Number of entries.
    pub tree_size: u64,
    /// Merkle root (RFC 6962).
    pub root_hash: B64,
    /// The signed checkpoint text (C2SP tlog-checkpoint).
    pub checkpoint: String,
}

/// One audit log entry, opened for a reader entitled to it: the event and
/// the salt its leaf commits with. The leaf data is
/// `SHA-256("medrelay/log-leaf-commitment/v1\0" || salt || event)` and the
/// leaf hash `SHA-256(0x00 || leaf data)` (`medrelay_policy::LeafOpening`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// Index in the log.
    pub index: u64,
    /// The 32-byte salt.
    pub salt: B64,
    /// The canonical encoded event.
    pub event: B64,
}

/// `GET /v1/log/entries?start=&end=` and `GET /v1/log/mine`: the entries
/// the caller may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntries {
    /// Entries in index order.
    pub entries: Vec<LogEntry>,
}

/// One public leaf: its RFC 6962 leaf hash, which reveals nothing of the
/// event it commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafHash {
    /// Index in the log.
    pub index: u64,
    /// The 32-byte leaf hash.
    pub hash: B64,
}

/// `GET /v1/log/leaves?start=&end=` (public).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafHashes {
    /// Leaves in index order.
    pub leaves: Vec<LeafHash>,
}

/// A Merkle proof (inclusion or consistency).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofResponse {
    /// Leaf index (inclusion) or old tree size (consistency).
    pub from: u64,
    /// Tree size the proof is against.
    pub tree_size: u64,
    /// Proof hashes, leaf to root.
    pub path: Vec<B64>,
}

/// Health check answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Audit log size.
    pub log_size: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let ok = r#"{"principal":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        serde_json::from_str::<ChallengeRequest>(ok).unwrap();
        let extra =
            r#"{"principal":"0000000000000000000000000000000000000000000000000000000000000000","x":1}"#;
        let err = serde_json::from_str::<ChallengeRequest>(extra).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(serde_json::from_str::<ReencryptRequest>(r#"{"record_ids":[],"y":[]}"#).is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Patient, Role::Doctor, Role::Analyst, Role::Auditor] {
            assert_eq!(Role::from_code(r.code()), Some(r));
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Role>(&j).unwrap(), r);
        }
        assert_eq!(Role::from_code(0), None);
        assert!("operator".parse::<Role>().is_err());
    }

    #[test]
    fn token_debug_hides_the_token() {
        let t = TokenResponse { token: "s3cret".into(), expires_at: Timestamp(1), role: Role::Doctor };
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
