//! The full-log audit: replay every entry of the audit log, recompute its
//! Merkle root against a signed checkpoint, and check that every
//! re-encryption the server served was allowed by a patient-signed grant.
//!
//! Pure: the caller downloads the entries (each event with the salt its leaf
//! commits with, a [`LeafOpening`], in log order; auditors are entitled to
//! every one) and the checkpoint, and passes the audit time in. Entries can be fed one at a
//! time ([`LogAudit::push_entry`]), so a client can stream a large log page by
//! page; [`audit_log`] does it in one call.
//!
//! What is checked, in log order (the first registration, record or grant
//! with a given id is the one that counts; the server refuses duplicates, so
//! a second one is itself an anomaly):
//!
//! - the root over all entries equals the checkpoint's root, and the number
//!   of entries its size ([`AnomalyKind::is_fatal`] findings);
//! - every entry decodes, and none is dated after the audit time;
//! - principals: a re-registration of the same id is reported, with a changed
//!   PRE key called out as a key swap and a changed role as a role change.
//!   The Ed25519 signing key itself cannot be swapped: the id is its hash and
//!   the event decoder checks that;
//! - records: published for a registered patient, once;
//! - grants: the patient was registered as a patient *before* the grant and
//!   the grant verifies under that key; the doctor was registered as a
//!   doctor before it;
//! - revocations: verify under the patient's registered key and name a grant
//!   of the same patient that the log holds;
//! - every `ReencryptionServed`: its grant is in the log before it, valid,
//!   for this doctor, signed by the record's owner, not revoked by an earlier
//!   entry, and the access time is inside `[not_before, not_after)`; the
//!   record was published before, its owner is the event's patient, its key
//!   class is the event's, and it is in the grant's scope (type, category,
//!   sensitivity labels and key class, the rules [`crate::authorize`]
//!   applies).
//!
//! Events this module does not check (denials, DP events, and any variant
//! added later) are only counted.
//!
//! # Example
//!
//! ```
//! use medrelay_crypto::{GrantId, SigningKey, Timestamp};
//! use medrelay_policy::audit::audit_log;
//! use medrelay_policy::{LeafOpening, LogEvent, LogSigner, MemoryNodeStore, MerkleTree, Role};
//! use rand::rngs::OsRng;
//!
//! let patient = SigningKey::from_seed(&[1; 32]);
//! let doctor = SigningKey::from_seed(&[2; 32]);
//! let register = |k: &SigningKey, role| LogEvent::PrincipalRegistered {
//!     at: Timestamp(10),
//!     principal: k.principal_id(),
//!     role,
//!     signing_key: k.verifying_key(),
//!     pre_key: Some([0; 32]),
//! };
//! // A re-encryption of a record never published, under a grant never made.
//! let served = LogEvent::ReencryptionServed {
//!     at: Timestamp(20),
//!     grant: GrantId::from_bytes([3; 16]),
//!     record: medrelay_crypto::RecordId::from_bytes([4; 16]),
//!     doctor: doctor.principal_id(),
//!     patient: patient.principal_id(),
//!     key_class: medrelay_crypto::KeyClass::General,
//! };
//! // Server: each event sealed with a fresh salt; the tree holds only the
//! // commitments; a signed checkpoint.
//! let entries: Vec<LeafOpening> =
//!     [register(&patient, Role::Patient), register(&doctor, Role::Doctor), served]
//!         .iter()
//!         .map(|e| LeafOpening::seal(e, &mut OsRng))
//!         .collect::<Result<_, _>>()?;
//! let mut tree = MerkleTree::new(MemoryNodeStore::new());
//! for e in &entries {
//!     tree.append_leaf_hash(e.leaf_hash())?;
//! }
//! let signer = LogSigner::new("medrelay.example/log", &SigningKey::from_seed(&[9; 32]))?;
//! let note = signer.sign_checkpoint(tree.size()?, tree.root()?)?;
//!
//! // Auditor: the downloaded entries against the checkpoint.
//! let report = audit_log(&entries, &note, &signer.verifier(), Timestamp(100))?;
//! assert!(!report.is_clean() && !report.has_fatal());
//! let found: Vec<_> = report.anomalies().iter().map(|a| (a.index(), a.kind().code())).collect();
//! assert_eq!(found, [(Some(2), "access_to_unknown_record"), (Some(2), "access_without_grant")]);
//! println!("{}", report.anomalies()[1]); // "entry 2: record … re-encrypted under grant …"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threat model
//!
//! The auditor trusts the log's public key and nothing the server says. A
//! clean full audit proves that the entries it was given are exactly the log
//! the checkpoint signs (the root binds every byte and the order), and that
//! in that log every served re-encryption is backed by a patient-signed,
//! unrevoked, in-window, in-scope grant to that doctor. Patient signatures
//! are checked with the keys the log itself registered, so a server cannot
//! invent a grant without a patient's key.
//!
//! It cannot prove what the log does not say. A server that re-encrypts
//! without logging is invisible here (the doctor's receipt carries a log
//! index, which the doctor can check by an inclusion proof). One checkpoint
//! does not rule out a split view: a server can show this auditor one
//! consistent log and others another; auditors must compare checkpoints with
//! each other and check consistency with the ones they kept (`verify`). A
//! root mismatch shows the log was altered, but not where: the root alone
//! cannot locate a rewritten entry, though a rewrite usually also breaks a
//! signature or a replay rule at its index. Times in events are the server's
//! clock, read just after it decided: an access decided in a window's last
//! second may be logged a second after it. The server's choice among
//! several valid grants is not second-guessed.

mod anomaly;
mod replay;

use std::borrow::Borrow;
use std::collections::BTreeMap;

use medrelay_crypto::Timestamp;

pub use self::anomaly::{Anomaly, AnomalyKind};
use self::replay::Replay;
use crate::checkpoint::{Checkpoint, LogVerifier};
use crate::error::PolicyError;
use crate::merkle::{empty_root, hash_children, MerkleHash};
use crate::opening::LeafOpening;

/// How far (in seconds) an entry may be dated after the audit time before it
/// is reported as [`AnomalyKind::FutureTimestamp`]: room for clock skew
/// between the server and the auditor.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// The result of a full audit: what was audited, counts, and every anomaly
/// in order (log-wide findings first, then by entry index). Only
/// [`LogAudit::finish`] makes one.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditReport {
    checkpoint: Checkpoint,
    computed_root: MerkleHash,
    entries: u64,
    audited_at: Timestamp,
    counts: BTreeMap<&'static str, u64>,
    undecodable: u64,
    active_grants: u64,
    clean: bool,
    anomalies: Vec<Anomaly>,
}

impl AuditReport {
    /// No anomaly at all: the entries are the checkpoint's log and every
    /// rule held.
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Whether any finding is fatal ([`AnomalyKind::is_fatal`]).
    pub fn has_fatal(&self) -> bool {
        self.anomalies.iter().any(|a| a.kind().is_fatal())
    }

    /// Every anomaly, log-wide ones first, then in entry order.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// The verified checkpoint audited against.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The root of the supplied entries (of the first `tree_size` of them if
    /// more were supplied).
    pub fn computed_root(&self) -> MerkleHash {
        self.computed_root
    }

    /// Number of entries supplied.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The audit time passed in.
    pub fn audited_at(&self) -> Timestamp {
        self.audited_at
    }

    /// Decoded entries per event kind ([`LogEvent::kind`](crate::LogEvent::kind)).
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    /// Decoded entries of one kind (0 if none).
    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// Entries that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// Grants accepted by the audit, unrevoked, whose window contains the
    /// audit time.
    pub fn active_grants(&self) -> u64 {
        self.active_grants
    }
}

/// Incremental RFC 6962 root: the perfect subtrees of the size's binary
/// decomposition, largest first (`O(log n)` memory).
#[derive(Clone, Debug, Default)]
struct RootAccumulator {
    /// (number of leaves, subtree hash), sizes strictly decreasing.
    stack: Vec<(u64, MerkleHash)>,
    size: u64,
}

impl RootAccumulator {
    fn push(&mut self, leaf: MerkleHash) {
        let (mut size, mut hash) = (1u64, leaf);
        while let Some(&(top_size, top_hash)) = self.stack.last() {
            if top_size != size {
                break;
            }
            self.stack.pop();
            hash = hash_children(&top_hash, &hash);
            size = size.saturating_mul(2);
        }
        self.stack.push((size, hash));
        self.size = self.size.saturating_add(1);
    }

    /// `MTH` of the leaves pushed so far: subtrees folded from the right.
    fn root(&self) -> MerkleHash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, left)| hash_children(left, &acc)),
        }
    }
}

/// A full audit in progress: verify the checkpoint, push every entry in log
/// order, then [`LogAudit::finish`].
#[derive(Debug)]
pub struct LogAudit {
    checkpoint: Checkpoint,
    now: Timestamp,
    root: RootAccumulator,
    /// The root at the checkpoint's size, once more entries than that arrive.
    prefix_root: Option<MerkleHash>,
    replay: Replay,
}

impl LogAudit {
    /// Starts an audit against `checkpoint_note`, which must verify under
    /// `verifier` (the log's key and origin); `now` is the audit time.
    /// A checkpoint that does not verify is an error: there is nothing to
    /// audit against.
    pub fn new(checkpoint_note: &str, verifier: &LogVerifier, now: Timestamp) -> Result<Self, PolicyError> {
        let checkpoint = verifier.verify_checkpoint(checkpoint_note)?;
        Ok(Self {
            checkpoint,
            now,
            root: RootAccumulator::default(),
            prefix_root: None,
            replay: Replay::default(),
        })
    }

    /// The verified checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Entries pushed so far (the index the next one gets).
    pub fn entries(&self) -> u64 {
        self.root.size
    }

    /// Audits the next entry: the event and the salt its leaf commits with
    /// (the leaf hash is recomputed from them).
    pub fn push_entry(&mut self, entry: &LeafOpening) {
        let index = self.root.size;
        if index == self.checkpoint.tree_size {
            self.prefix_root = Some(self.root.root());
        }
        self.root.push(entry.leaf_hash());
        self.replay.entry(index, entry.event_bytes(), self.now);
    }

    /// Ends the audit: compares root and size with the checkpoint and
    /// returns the report.
    pub fn finish(self) -> AuditReport {
        let Self { checkpoint, now, root, prefix_root, replay } = self;
        let entries = root.size;
        let mut integrity = Vec::new();
        if entries != checkpoint.tree_size {
            integrity.push(Anomaly::new(
                Some(entries.min(checkpoint.tree_size)),
                AnomalyKind::SizeMismatch { entries, checkpoint: checkpoint.tree_size },
            ));
        }
        // Too few entries: no root to compare. Too many: compare the prefix.
        let computed = prefix_root.unwrap_or_else(|| root.root());
        if entries >= checkpoint.tree_size && computed != checkpoint.root_hash {
            integrity.push(Anomaly::new(
                None,
                AnomalyKind::RootMismatch { computed, checkpoint: checkpoint.root_hash },
            ));
        }
        let active_grants = replay.active_grants(now);
        integrity.extend(replay.anomalies);
        AuditReport {
            checkpoint,
            computed_root: computed,
            entries,
            audited_at: now,
            counts: replay.counts,
            undecodable: replay.undecodable,
            active_grants,
            clean: integrity.is_empty(),
            anomalies: integrity,
        }
    }
}

/// Audits a whole log in one call: `entries` are the leaf openings in log
/// order, `checkpoint_note` the signed checkpoint (verified here under
/// `verifier`), `now` the audit time. Errors only if the checkpoint does not
/// verify; everything wrong with the log is in the report.
pub fn audit_log<I>(
    entries: I,
    checkpoint_note: &str,
    verifier: &LogVerifier,
    now: Timestamp,
) -> Result<AuditReport, PolicyError>
where
    I: IntoIterator,
    I::Item: Borrow<LeafOpening>,
{
    let mut audit = LogAudit::new(checkpoint_note, verifier, now)?;
    for e in entries {
        audit.push_entry(e.borrow());
    }
    Ok(audit.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::merkle::{hash_leaf, root_from_leaves};

    #[test]
    fn the_incremental_root_matches_the_reference() {
        let mut acc = RootAccumulator::default();
        let mut leaves = Vec::new();
        assert_eq!(acc.root(), empty_root());
        for i in 0u32..70 {
            let h = hash_leaf(&i.to_be_bytes());
            acc.push(h);
            leaves.push(h);
            assert_eq!(acc.root(), root_from_leaves(&leaves), "size {}", i + 1);
            assert_eq!(acc.size, u64::from(i) + 1);
            assert_eq!(acc.stack.len(), (i + 1).count_ones() as usize);
        }
    }
}
