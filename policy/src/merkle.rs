//! RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency
//! proofs, and their verification.
//!
//! This module is what clients and auditors run, so it depends on nothing but
//! SHA-256. Hashing follows RFC 9162 §2.1.1 exactly:
//!
//! - the hash of the empty tree is `SHA-256()`;
//! - a leaf hash is `SHA-256(0x00 || data)`;
//! - an interior node is `SHA-256(0x01 || left || right)`, where for `n`
//!   leaves the left subtree holds the first `k` leaves, `k` the largest power
//!   of two strictly smaller than `n`.
//!
//! Verification implements the algorithms of RFC 9162 §2.1.3.2 (inclusion) and
//! §2.1.4.2 (consistency) step by step.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::PolicyError;

/// Most hashes a proof may hold: a tree of at most 2^63 leaves needs at most
/// 64 (inclusion) or 65 (consistency) hashes; anything longer is malformed.
pub const MAX_PROOF_HASHES: usize = 66;

/// A SHA-256 Merkle tree hash (leaf, node or root).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MerkleHash([u8; 32]);

impl MerkleHash {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 hash bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PolicyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| PolicyError::Malformed("merkle hash length"))?;
        Ok(Self(arr))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for MerkleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MerkleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MerkleHash({})", hex::encode(self.0))
    }
}

impl FromStr for MerkleHash {
    type Err = PolicyError;
    /// Parses 64 hex digits.
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(PolicyError::Malformed("merkle hash hex length"));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| PolicyError::Malformed("merkle hash hex"))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for MerkleHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for MerkleHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The root of the empty tree: `SHA-256()` (RFC 9162 §2.1.1).
pub fn empty_root() -> MerkleHash {
    MerkleHash(Sha256::digest([]).into())
}

/// The leaf hash `SHA-256(0x00 || data)`.
pub fn hash_leaf(data: &[u8]) -> MerkleHash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    MerkleHash(h.finalize().into())
}

/// The interior node hash `SHA-256(0x01 || left || right)`.
pub fn hash_children(left: &MerkleHash, right: &MerkleHash) -> MerkleHash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    MerkleHash(h.finalize().into())
}

/// The largest power of two strictly smaller than `n` (for `n >= 2`): the
/// size of the left subtree of a tree of `n` leaves.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Reference implementation: the Merkle tree hash of a list of leaf hashes,
/// computed recursively (`O(n)`). Servers use [`crate::MerkleTree`], which
/// computes the same value from stored nodes.
pub fn root_from_leaves(leaf_hashes: &[MerkleHash]) -> MerkleHash {
    match leaf_hashes {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let n = leaf_hashes.len();
            // n fits in u64 on every supported platform; usize <= u64.
            let k = split_point(n as u64) as usize;
            hash_children(&root_from_leaves(&leaf_hashes[..k]), &root_from_leaves(&leaf_hashes[k..]))
        }
    }
}

/// A proof that the leaf at `leaf_index` is in the tree of `tree_size` leaves
/// (RFC 9162 §2.1.3): the audit path, from the leaf's sibling up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    /// Index of the leaf, from 0.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path.
    pub hashes: Vec<MerkleHash>,
}

/// A proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves (RFC 9162 §2.1.4).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// The consistency path.
    pub hashes: Vec<MerkleHash>,
}

/// Verifies that `leaf_hash` is the leaf at `proof.leaf_index` of the tree of
/// `proof.tree_size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// Fails with [`PolicyError::ProofInvalid`] on any mismatch.
pub fn verify_inclusion(
    leaf_hash: &MerkleHash,
    proof: &InclusionProof,
    root: &MerkleHash,
) -> Result<(), PolicyError> {
    if proof.leaf_index >= proof.tree_size || proof.hashes.len() > MAX_PROOF_HASHES {
        return Err(PolicyError::ProofInvalid);
    }
    let mut fn_ = proof.leaf_index;
    let mut sn = proof.tree_size - 1;
    let mut r = *leaf_hash;
    for p in &proof.hashes {
        if sn == 0 {
            return Err(PolicyError::ProofInvalid);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = hash_children(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = hash_children(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(PolicyError::ProofInvalid)
    }
}

/// Verifies that the tree of `proof.old_size` leaves with root `old_root` is
/// a prefix of the tree of `proof.new_size` leaves with root `new_root`
/// (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal roots (for
/// size 0, both the empty root).
///
/// A proof *from* size 0 to a larger tree is rejected: RFC 9162 defines
/// consistency proofs only for `0 < old_size`, and transparency-dev's
/// verifier refuses them ("consistency proof with empty tree"). Accepting
/// one would let any root pass as an extension of the empty tree; a client
/// that holds only the empty tree needs no proof at all.
///
/// Fails with [`PolicyError::ProofInvalid`] on any mismatch.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    old_root: &MerkleHash,
    new_root: &MerkleHash,
) -> Result<(), PolicyError> {
    let (first, second) = (proof.old_size, proof.new_size);
    let path = &proof.hashes;
    if first > second || path.len() > MAX_PROOF_HASHES {
        return Err(PolicyError::ProofInvalid);
    }
    if first == second {
        let empty_ok = first > 0 || *old_root == empty_root();
        return if path.is_empty() && old_root == new_root && empty_ok {
            Ok(())
        } else {
            Err(PolicyError::ProofInvalid)
        };
    }
    if first == 0 {
        return Err(PolicyError::ProofInvalid);
    }
    // Step 1.
    if path.is_empty() {
        return Err(PolicyError::ProofInvalid);
    }
    // Step 2: if `first` is a power of two, the old root is the first value.
    let mut iter: Box<dyn Iterator<Item = &MerkleHash>> = if first.is_power_of_two() {
        Box::new(std::iter::once(old_root).chain(path.iter()))
    } else {
        Box::new(path.iter())
    };
    // Step 3.
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let Some(start) = iter.next() else {
        return Err(PolicyError::ProofInvalid);
    };
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in iter {
        if sn == 0 {
            return Err(PolicyError::ProofInvalid);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = hash_children(c, &fr);
            sr = hash_children(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = hash_children(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if fr == *old_root && sr == *new_root && sn == 0 {
        Ok(())
    } else {
        Err(PolicyError::ProofInvalid)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn known_answers() {
        // SHA-256 of the empty string.
        assert_eq!(
            empty_root().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 leaf hash of the empty leaf: SHA-256(0x00).
        assert_eq!(
            hash_leaf(b"").to_string(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn hash_text_round_trip_and_errors() {
        let h = hash_leaf(b"x");
        assert_eq!(h.to_string().parse::<MerkleHash>().unwrap(), h);
        assert!(matches!("00".parse::<MerkleHash>(), Err(PolicyError::Malformed(_))));
        assert!(matches!("zz".repeat(32).parse::<MerkleHash>(), Err(PolicyError::Malformed(_))));
        assert!(MerkleHash::from_slice(&[0; 31]).is_err());
    }

    #[test]
    fn degenerate_proofs_are_rejected() {
        let leaf = hash_leaf(b"a");
        // A one-leaf tree: root is the leaf, empty path.
        let p = InclusionProof { leaf_index: 0, tree_size: 1, hashes: vec![] };
        verify_inclusion(&leaf, &p, &leaf).unwrap();
        let out_of_range = InclusionProof { leaf_index: 1, tree_size: 1, hashes: vec![] };
        assert!(verify_inclusion(&leaf, &out_of_range, &leaf).is_err());
        let too_long = InclusionProof { leaf_index: 0, tree_size: 1, hashes: vec![leaf] };
        assert!(verify_inclusion(&leaf, &too_long, &leaf).is_err());
        // From the empty tree: no proof is accepted (RFC 9162, transparency-dev).
        let empty = ConsistencyProof { old_size: 0, new_size: 5, hashes: vec![] };
        assert!(verify_consistency(&empty, &empty_root(), &leaf).is_err());
        assert!(verify_consistency(&empty, &leaf, &leaf).is_err());
        let padded = ConsistencyProof { old_size: 0, new_size: 1, hashes: vec![leaf] };
        assert!(verify_consistency(&padded, &empty_root(), &leaf).is_err());
        // Size 0 to size 0: only the empty root.
        let nothing = ConsistencyProof { old_size: 0, new_size: 0, hashes: vec![] };
        verify_consistency(&nothing, &empty_root(), &empty_root()).unwrap();
        assert!(verify_consistency(&nothing, &leaf, &leaf).is_err());
        let backwards = ConsistencyProof { old_size: 3, new_size: 2, hashes: vec![] };
        assert!(verify_consistency(&backwards, &leaf, &leaf).is_err());
        let same = ConsistencyProof { old_size: 2, new_size: 2, hashes: vec![] };
        verify_consistency(&same, &leaf, &leaf).unwrap();
        assert!(verify_consistency(&same, &leaf, &empty_root()).is_err());
        let no_path = ConsistencyProof { old_size: 2, new_size: 3, hashes: vec![] };
        assert!(verify_consistency(&no_path, &leaf, &leaf).is_err());
    }
}
