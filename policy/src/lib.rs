//! medrelay-policy: who may read what, and the audit log that proves it.
//!
//! Pure crate: no I/O, no clock (time is a parameter), no global RNG.
//!
//! # Threat model
//!
//! The server is trusted to be available, not to be honest. Everything it
//! stores that matters for access is either signed by a patient (grants,
//! revocations) or committed to an append-only Merkle log whose signed
//! checkpoints auditors compare: a server that drops, reorders or rewrites a
//! log entry produces checkpoints that fail a consistency proof, and a server
//! that shows different logs to different auditors is caught when they
//! compare checkpoints. The verification code here (proofs, checkpoints,
//! grant signatures) runs in clients and auditors, so it is small and depends
//! only on SHA-256 and Ed25519. All parsers take untrusted input: sizes are
//! bounded before parsing and every malformed input is a typed error.
//!
//! Grants are signed by patients; [`SignedGrant::verify`] consumes the
//! unverified value and returns a [`VerifiedGrant`], the only form
//! [`authorize`] accepts, and [`authorize`] returns a [`ReadCapability`] (the
//! only way to get one) that the server's re-encryption path requires. Scopes
//! fail closed: an empty scope cannot be built, sensitive records are
//! excluded unless each of their labels is named.
//!
//! The log proves without publishing: each leaf is a salted commitment to
//! its event ([`LeafOpening`]), so checkpoints, proofs and leaf hashes can be
//! public while an event's bytes go only to the principals it is about
//! ([`LogEvent::audience`]) and to auditors, each of whom recomputes the leaf
//! and checks its inclusion against a signed checkpoint. A checkpoint of
//! size 0 must carry the empty root, and no consistency proof from size 0 is
//! accepted (RFC 9162, as transparency-dev does).
//!
//! Auditors run [`audit::audit_log`] over the whole log: it recomputes the
//! root against a signed checkpoint and replays every entry, re-verifying
//! each patient signature with the key the log registered and checking every
//! served re-encryption against the grant it names.
//!
//! # Example: grant and authorize
//!
//! ```
//! use medrelay_crypto::{GrantId, RecordCategory, RecordHeader, RecordId, SigningKey, Timestamp};
//! use medrelay_policy::{authorize, Denial, Grant, Purpose, SignedGrant};
//!
//! let patient = SigningKey::from_seed(&[1; 32]);
//! let doctor = SigningKey::from_seed(&[2; 32]);
//! // Patient client: sign a grant for lab results, valid for a day.
//! let grant = Grant::new(
//!     GrantId::from_bytes([3; 16]),
//!     patient.principal_id(),
//!     doctor.principal_id(),
//!     "Observation?category=laboratory".parse()?,
//!     Purpose::Treatment,
//!     Timestamp(1_700_000_000),
//!     Timestamp(1_700_086_400),
//!     Timestamp(1_700_000_000),
//! )?;
//! let wire = grant.sign(&patient)?.to_bytes();
//!
//! // Server: verify with the patient's registered key, then decide.
//! let verified = SignedGrant::from_bytes(&wire)?
//!     .verify(&patient.verifying_key())
//!     .map_err(|(e, _)| e)?;
//! let lab = RecordCategory::new("Observation", ["laboratory".to_string()], [])?;
//! let header = RecordHeader::new(
//!     RecordId::from_bytes([4; 16]), patient.principal_id(), lab, "application/fhir+json", Timestamp(1),
//! )?;
//! let now = Timestamp(1_700_000_100);
//! let cap = authorize(&verified, &doctor.principal_id(), &header, None, now).map_err(|d| d.code())?;
//! assert_eq!(cap.record_id(), header.record_id());
//! let later = Timestamp(1_800_000_000);
//! let denied = authorize(&verified, &doctor.principal_id(), &header, None, later).unwrap_err();
//! assert_eq!(denied, Denial::Expired);
//! assert_eq!(denied.code(), "expired");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: log, checkpoint, proofs
//!
//! ```
//! use medrelay_crypto::SigningKey;
//! use medrelay_policy::{
//!     hash_leaf, verify_consistency, verify_inclusion, LogSigner, MemoryNodeStore, MerkleTree,
//! };
//!
//! // Server: append entries and sign a checkpoint.
//! let mut tree = MerkleTree::new(MemoryNodeStore::new());
//! for entry in [&b"first"[..], b"second", b"third"] {
//!     tree.append(entry)?;
//! }
//! let log_key = SigningKey::from_seed(&[7; 32]);
//! let signer = LogSigner::new("medrelay.example/log", &log_key)?;
//! let old_note = signer.sign_checkpoint(2, tree.root_at(2)?)?;
//! let note = signer.sign_checkpoint(tree.size()?, tree.root()?)?;
//!
//! // Auditor: verify the checkpoints, then an entry and the log's growth.
//! let verifier = signer.verifier();
//! let old = verifier.verify_checkpoint(&old_note)?;
//! let new = verifier.verify_checkpoint(&note)?;
//! let inclusion = tree.inclusion_proof(1, new.tree_size)?;
//! // Through the checkpoint, which also binds the proof's tree size...
//! new.verify_inclusion(&hash_leaf(b"second"), &inclusion)?;
//! // ...or with the bare RFC 9162 functions.
//! verify_inclusion(&hash_leaf(b"second"), &inclusion, &new.root_hash)?;
//! let consistency = tree.consistency_proof(old.tree_size, new.tree_size)?;
//! new.verify_extends(&old, &consistency)?;
//! verify_consistency(&consistency, &old.root_hash, &new.root_hash)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod authorize;
mod checkpoint;
pub mod domain;
mod error;
mod event;
mod grant;
mod merkle;
mod opening;
mod principal;
mod refusal;
mod scope;
mod study_event;
pub mod testing;
mod tree;

pub use authorize::{authorize, grant_in_force, Denial, ReadCapability};
pub use event::{Audience, LogEvent, MAX_EVENT_LEN, MAX_SCHEMA_NAME_LEN};
pub use grant::{
    Grant, Purpose, Revocation, SignedGrant, SignedRevocation, VerifiedGrant, VerifiedRevocation,
    MAX_GRANT_LEN, MAX_REKEY_DIGESTS, MAX_SIGNED_GRANT_LEN, MAX_SIGNED_REVOCATION_LEN,
};
pub use opening::{leaf_commitment, EventSalt, LeafOpening, MAX_OPENING_LEN, SALT_LEN};
pub use principal::{PrePublicKey, Principal, Role, MAX_DISPLAY_NAME_LEN, MAX_PRE_KEY_LEN};
pub use refusal::{Operation, RefusalReason, RefusedObject, MAX_OPERATION_LEN};
pub use scope::{Scope, MAX_SCOPE_ITEMS, MAX_SCOPE_LEN};
pub use study_event::{StudyAggregator, StudyEvent, STUDY_REJECTION_REASONS};

pub use checkpoint::{
    Checkpoint, LogSigner, LogVerifier, MAX_EXTENSION_LINES, MAX_KEY_NAME_LEN, MAX_NOTE_LEN,
    MAX_NOTE_SIGNATURES,
};
pub use error::PolicyError;
pub use merkle::{
    empty_root, hash_children, hash_leaf, root_from_leaves, verify_consistency, verify_inclusion,
    ConsistencyProof, InclusionProof, MerkleHash, MAX_PROOF_HASHES,
};
pub use tree::{AppendPlan, MemoryNodeStore, MerkleTree, NodeId, NodeStore, TreeError, MAX_TREE_SIZE};
