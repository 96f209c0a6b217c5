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
//! verify_inclusion(&hash_leaf(b"second"), &inclusion, &new.root_hash)?;
//! let consistency = tree.consistency_proof(old.tree_size, new.tree_size)?;
//! verify_consistency(&consistency, &old.root_hash, &new.root_hash)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod checkpoint;
pub mod domain;
mod error;
mod merkle;
mod tree;

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
