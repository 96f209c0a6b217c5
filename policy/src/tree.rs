//! The incremental Merkle tree: `O(log n)` appends and proofs read from stored
//! node hashes.
//!
//! # Layout
//!
//! Only *perfect* subtrees are stored. Node `(level, index)` is the root of
//! the perfect subtree over leaves `[index·2^level, (index+1)·2^level)`; level
//! 0 holds the leaf hashes. A node is written once, when its last leaf is
//! appended, and never changes, so an append writes the leaf plus at most
//! `log2 n` completed ancestors and reads as many left siblings. The root of
//! any tree size `m <= n` is recombined from the `popcount(m)` perfect
//! subtrees of `m`'s binary decomposition, so old roots and proofs between
//! any two sizes come from the same stored nodes.
//!
//! The server implements [`NodeStore`] on its database; [`MemoryNodeStore`]
//! is the in-memory implementation for tests and tools.

use std::collections::HashMap;
use std::convert::Infallible;

use crate::merkle::{
    empty_root, hash_children, hash_leaf, split_point, ConsistencyProof, InclusionProof, MerkleHash,
};

/// Largest number of leaves the tree accepts (2^63, so every index
/// computation stays far from `u64` overflow).
pub const MAX_TREE_SIZE: u64 = 1 << 63;

/// Address of a stored node: the perfect subtree over leaves
/// `[index·2^level, (index+1)·2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = leaf).
    pub level: u8,
    /// Position among the nodes of this level, from 0.
    pub index: u64,
}

impl NodeId {
    /// Length of [`NodeId::to_key`].
    pub const KEY_LEN: usize = 9;

    /// A fixed-width, order-preserving storage key: `level || index` (big
    /// endian), so a store can keep nodes in one keyspace.
    pub fn to_key(self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = self.level;
        k[1..].copy_from_slice(&self.index.to_be_bytes());
        k
    }

    /// Parses a storage key written by [`NodeId::to_key`].
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let (&level, rest) = key.split_first()?;
        let index = u64::from_be_bytes(rest.try_into().ok()?);
        Some(Self { level, index })
    }
}

/// Persistent storage for the tree's node hashes. Implementations must make
/// [`NodeStore::put_nodes`] atomic: either all nodes and the new size are
/// stored, or none.
pub trait NodeStore {
    /// The storage backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of leaves appended so far.
    fn size(&self) -> Result<u64, Self::Error>;

    /// The stored hash of a node, if present.
    fn get(&self, id: NodeId) -> Result<Option<MerkleHash>, Self::Error>;

    /// Stores the nodes completed by one append and the new size, atomically.
    fn put_nodes(&mut self, nodes: &[(NodeId, MerkleHash)], new_size: u64) -> Result<(), Self::Error>;
}

/// An in-memory [`NodeStore`].
#[derive(Clone, Debug, Default)]
pub struct MemoryNodeStore {
    nodes: HashMap<NodeId, MerkleHash>,
    size: u64,
}

impl MemoryNodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored nodes (for tests: `2n - popcount(n)` for `n` leaves).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl NodeStore for MemoryNodeStore {
    type Error = Infallible;

    fn size(&self) -> Result<u64, Infallible> {
        Ok(self.size)
    }

    fn get(&self, id: NodeId) -> Result<Option<MerkleHash>, Infallible> {
        Ok(self.nodes.get(&id).copied())
    }

    fn put_nodes(&mut self, nodes: &[(NodeId, MerkleHash)], new_size: u64) -> Result<(), Infallible> {
        self.nodes.extend(nodes.iter().copied());
        self.size = new_size;
        Ok(())
    }
}

/// Errors of [`MerkleTree`] operations. Generic over the store's error so the
/// server keeps its database error typed (this is the one error type of the
/// crate that is not [`crate::PolicyError`], because it must carry `E`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E: std::error::Error + 'static> {
    /// The node store failed.
    #[error("node store: {0}")]
    Store(#[source] E),
    /// A node that must exist for the stored size is missing: the store is
    /// corrupt.
    #[error("node store is missing node (level {}, index {})", .0.level, .0.index)]
    MissingNode(NodeId),
    /// A requested index or size is out of range for the current tree.
    #[error("out of range: {what} ({value} for tree size {size})")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// The value requested.
        value: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// The tree holds [`MAX_TREE_SIZE`] leaves.
    #[error("tree is full")]
    Full,
}

/// What one append writes: the new leaf and the subtrees it completes, and
/// the new tree size. See [`MerkleTree::nodes_for_append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendPlan {
    /// The nodes to store, leaf first.
    pub nodes: Vec<(NodeId, MerkleHash)>,
    /// The tree size after the append (the new leaf's index + 1).
    pub new_size: u64,
}

/// An append-only Merkle tree over a [`NodeStore`].
#[derive(Debug)]
pub struct MerkleTree<S> {
    store: S,
}

impl<S: NodeStore> MerkleTree<S> {
    /// Opens the tree kept in `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Number of leaves.
    pub fn size(&self) -> Result<u64, TreeError<S::Error>> {
        self.store.size().map_err(TreeError::Store)
    }

    /// Hashes `leaf_data` as a leaf ([`hash_leaf`]) and appends it; returns the
    /// new leaf's index.
    pub fn append(&mut self, leaf_data: &[u8]) -> Result<u64, TreeError<S::Error>> {
        self.append_leaf_hash(hash_leaf(leaf_data))
    }

    /// Appends an already computed leaf hash; returns its index.
    pub fn append_leaf_hash(&mut self, leaf_hash: MerkleHash) -> Result<u64, TreeError<S::Error>> {
        let plan = self.nodes_for_append(leaf_hash)?;
        self.store.put_nodes(&plan.nodes, plan.new_size).map_err(TreeError::Store)?;
        Ok(plan.new_size - 1)
    }

    /// The nodes one append of `leaf_hash` would write, and the new size,
    /// without writing them: for a server that commits them together with
    /// other data in one transaction (then calls its own store). Reads at
    /// most `log2 n` nodes.
    pub fn nodes_for_append(&self, leaf_hash: MerkleHash) -> Result<AppendPlan, TreeError<S::Error>> {
        let size = self.size()?;
        if size >= MAX_TREE_SIZE {
            return Err(TreeError::Full);
        }
        let mut nodes = Vec::with_capacity(1 + (64 - size.leading_zeros() as usize));
        let mut id = NodeId { level: 0, index: size };
        let mut hash = leaf_hash;
        nodes.push((id, hash));
        // While this node is a right child, its left sibling is complete:
        // combine them into the parent, which is now complete too.
        while id.index & 1 == 1 {
            let left = self.node(NodeId { level: id.level, index: id.index - 1 })?;
            hash = hash_children(&left, &hash);
            id = NodeId { level: id.level + 1, index: id.index >> 1 };
            nodes.push((id, hash));
        }
        Ok(AppendPlan { nodes, new_size: size + 1 })
    }

    /// The root of the current tree.
    pub fn root(&self) -> Result<MerkleHash, TreeError<S::Error>> {
        let size = self.size()?;
        self.root_at(size)
    }

    /// The root of the tree as it was at `tree_size` leaves.
    pub fn root_at(&self, tree_size: u64) -> Result<MerkleHash, TreeError<S::Error>> {
        self.check_size(tree_size)?;
        if tree_size == 0 {
            return Ok(empty_root());
        }
        self.range_hash(0, tree_size)
    }

    /// The stored hash of leaf `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<MerkleHash, TreeError<S::Error>> {
        let size = self.size()?;
        if index >= size {
            return Err(TreeError::OutOfRange { what: "leaf index", value: index, size });
        }
        self.node(NodeId { level: 0, index })
    }

    /// An inclusion proof for leaf `leaf_index` in the tree of `tree_size`
    /// leaves (RFC 6962 §2.1.1 `PATH`).
    pub fn inclusion_proof(
        &self,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, TreeError<S::Error>> {
        self.check_size(tree_size)?;
        if leaf_index >= tree_size {
            return Err(TreeError::OutOfRange { what: "leaf index", value: leaf_index, size: tree_size });
        }
        let mut hashes = Vec::new();
        self.path(leaf_index, 0, tree_size, &mut hashes)?;
        Ok(InclusionProof { leaf_index, tree_size, hashes })
    }

    /// A consistency proof from the tree of `old_size` leaves to the tree of
    /// `new_size` leaves (RFC 6962 §2.1.2 `PROOF`; empty when `old_size`
    /// equals `new_size`). There is no proof from the empty tree to a larger
    /// one (RFC 9162 §2.1.4 needs `0 < old_size`): asking for one is
    /// [`TreeError::OutOfRange`].
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, TreeError<S::Error>> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(TreeError::OutOfRange { what: "old tree size", value: old_size, size: new_size });
        }
        if old_size == 0 && new_size > 0 {
            return Err(TreeError::OutOfRange {
                what: "old tree size (no consistency proof from the empty tree)",
                value: 0,
                size: new_size,
            });
        }
        let mut hashes = Vec::new();
        if old_size < new_size {
            self.subproof(old_size, 0, new_size, true, &mut hashes)?;
        }
        Ok(ConsistencyProof { old_size, new_size, hashes })
    }

    fn check_size(&self, tree_size: u64) -> Result<(), TreeError<S::Error>> {
        let size = self.size()?;
        if tree_size > size {
            return Err(TreeError::OutOfRange { what: "tree size", value: tree_size, size });
        }
        Ok(())
    }

    fn node(&self, id: NodeId) -> Result<MerkleHash, TreeError<S::Error>> {
        self.store.get(id).map_err(TreeError::Store)?.ok_or(TreeError::MissingNode(id))
    }

    /// The Merkle tree hash of leaves `[start, end)`, where `start` is a
    /// multiple of the largest power of two not above `end - start` (true for
    /// every range the RFC 6962 recursion visits).
    fn range_hash(&self, start: u64, end: u64) -> Result<MerkleHash, TreeError<S::Error>> {
        let n = end - start;
        if n.is_power_of_two() {
            let level = n.trailing_zeros();
            // level < 64 always fits u8.
            return self.node(NodeId { level: level as u8, index: start >> level });
        }
        let k = split_point(n);
        let left = self.range_hash(start, start + k)?;
        let right = self.range_hash(start + k, end)?;
        Ok(hash_children(&left, &right))
    }

    fn path(
        &self,
        m: u64,
        start: u64,
        end: u64,
        out: &mut Vec<MerkleHash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if n == 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < start + k {
            self.path(m, start, start + k, out)?;
            out.push(self.range_hash(start + k, end)?);
        } else {
            self.path(m, start + k, end, out)?;
            out.push(self.range_hash(start, start + k)?);
        }
        Ok(())
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        out: &mut Vec<MerkleHash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.range_hash(start, end)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out)?;
            out.push(self.range_hash(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.range_hash(start, start + k)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::merkle::root_from_leaves;

    #[test]
    fn node_keys_round_trip_and_sort() {
        let a = NodeId { level: 0, index: 300 };
        let b = NodeId { level: 1, index: 0 };
        assert_eq!(NodeId::from_key(&a.to_key()), Some(a));
        assert!(a.to_key() < b.to_key());
        assert_eq!(NodeId::from_key(&[0; 8]), None);
        assert_eq!(NodeId::from_key(&[]), None);
    }

    #[test]
    fn append_stores_only_perfect_subtrees() {
        let mut t = MerkleTree::new(MemoryNodeStore::new());
        let mut leaves = Vec::new();
        for i in 0u64..37 {
            let idx = t.append(&i.to_be_bytes()).unwrap();
            assert_eq!(idx, i);
            leaves.push(hash_leaf(&i.to_be_bytes()));
            let n = i + 1;
            assert_eq!(t.store().node_count() as u64, 2 * n - u64::from(n.count_ones()));
            assert_eq!(t.root().unwrap(), root_from_leaves(&leaves));
        }
        for m in 0..=37u64 {
            assert_eq!(t.root_at(m).unwrap(), root_from_leaves(&leaves[..m as usize]));
        }
    }

    #[test]
    fn out_of_range_requests_are_typed_errors() {
        let mut t = MerkleTree::new(MemoryNodeStore::new());
        for i in 0u8..5 {
            t.append(&[i]).unwrap();
        }
        assert!(matches!(t.root_at(6), Err(TreeError::OutOfRange { what: "tree size", value: 6, size: 5 })));
        assert!(matches!(t.inclusion_proof(5, 5), Err(TreeError::OutOfRange { .. })));
        assert!(matches!(t.inclusion_proof(0, 6), Err(TreeError::OutOfRange { .. })));
        assert!(matches!(t.consistency_proof(4, 3), Err(TreeError::OutOfRange { .. })));
        assert!(matches!(t.consistency_proof(0, 5), Err(TreeError::OutOfRange { value: 0, .. })));
        assert_eq!(t.consistency_proof(5, 5).unwrap().hashes, vec![]);
        assert!(matches!(t.leaf_hash(5), Err(TreeError::OutOfRange { .. })));
        // Nothing changed.
        assert_eq!(t.size().unwrap(), 5);
    }

    #[test]
    fn a_corrupt_store_is_reported_not_panicked() {
        let mut store = MemoryNodeStore::new();
        // Claims 3 leaves but holds no nodes.
        store.put_nodes(&[], 3).unwrap();
        let t = MerkleTree::new(store);
        assert!(matches!(t.root(), Err(TreeError::MissingNode(NodeId { level: 1, index: 0 }))));
        assert!(matches!(t.inclusion_proof(0, 3), Err(TreeError::MissingNode(_))));
    }

    #[test]
    fn planning_an_append_writes_nothing() {
        let mut t = MerkleTree::new(MemoryNodeStore::new());
        t.append(b"a").unwrap();
        let plan = t.nodes_for_append(hash_leaf(b"b")).unwrap();
        assert_eq!(plan.new_size, 2);
        assert_eq!(plan.nodes.len(), 2);
        assert_eq!(t.size().unwrap(), 1);
        assert_eq!(plan.nodes[1].1, hash_children(&hash_leaf(b"a"), &hash_leaf(b"b")));
    }
}
