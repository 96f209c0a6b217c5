//! A conformance check for [`NodeStore`] implementations: the server runs it
//! against its database-backed store, so every backend is held to the same
//! behaviour as [`crate::MemoryNodeStore`].

use std::fmt;

use crate::merkle::{hash_leaf, root_from_leaves, verify_consistency, verify_inclusion, MerkleHash};
use crate::tree::{MerkleTree, NodeStore, TreeError};

/// Which step of [`node_store_conformance`] failed, at which tree size.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConformanceFailure<E: std::error::Error + 'static> {
    /// A tree operation failed (store error or missing node).
    Tree {
        /// The tree size when it failed.
        size: u64,
        /// The error.
        error: TreeError<E>,
    },
    /// A result differed from the reference.
    Mismatch {
        /// The tree size when it differed.
        size: u64,
        /// What differed.
        what: &'static str,
    },
}

impl<E: std::error::Error + 'static> fmt::Display for ConformanceFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tree { size, error } => write!(f, "at size {size}: {error}"),
            Self::Mismatch { size, what } => write!(f, "at size {size}: {what} differs from the reference"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ConformanceFailure<E> {}

/// Appends `leaves` entries to an *empty* `store` through [`MerkleTree`] and
/// after each append checks the size, the root against
/// [`root_from_leaves`], inclusion proofs of the first, middle and last leaf,
/// and consistency proofs from every earlier non-zero size (there is no
/// proof from the empty tree; asking for one must fail). Returns the store.
pub fn node_store_conformance<S: NodeStore>(
    store: S,
    leaves: u64,
) -> Result<S, ConformanceFailure<S::Error>> {
    let mut tree = MerkleTree::new(store);
    let tree_err = |size| move |error| ConformanceFailure::Tree { size, error };
    let mismatch = |size, what| ConformanceFailure::Mismatch { size, what };
    if tree.size().map_err(tree_err(0))? != 0 {
        return Err(mismatch(0, "initial size (store not empty)"));
    }
    let mut hashes: Vec<MerkleHash> = Vec::new();
    let mut roots = vec![tree.root().map_err(tree_err(0))?];
    for i in 0..leaves {
        let data = i.to_be_bytes();
        if tree.append(&data).map_err(tree_err(i))? != i {
            return Err(mismatch(i, "returned leaf index"));
        }
        hashes.push(hash_leaf(&data));
        let n = i + 1;
        if tree.size().map_err(tree_err(n))? != n {
            return Err(mismatch(n, "size"));
        }
        let root = tree.root().map_err(tree_err(n))?;
        if root != root_from_leaves(&hashes) {
            return Err(mismatch(n, "root"));
        }
        for m in [0, n / 2, n - 1] {
            let p = tree.inclusion_proof(m, n).map_err(tree_err(n))?;
            let leaf = hashes.get(usize::try_from(m).unwrap_or(usize::MAX)).copied().unwrap_or(root);
            verify_inclusion(&leaf, &p, &root).map_err(|_| mismatch(n, "inclusion proof"))?;
        }
        if tree.consistency_proof(0, n).is_ok() {
            return Err(mismatch(n, "consistency proof from the empty tree (must be refused)"));
        }
        for (old, old_root) in roots.iter().enumerate().skip(1) {
            let p = tree.consistency_proof(old as u64, n).map_err(tree_err(n))?;
            verify_consistency(&p, old_root, &root).map_err(|_| mismatch(n, "consistency proof"))?;
        }
        roots.push(root);
    }
    Ok(tree.into_store())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tree::{MemoryNodeStore, NodeId};
    use std::convert::Infallible;

    #[test]
    fn the_memory_store_conforms() {
        let store = node_store_conformance(MemoryNodeStore::new(), 40).unwrap();
        assert_eq!(store.node_count(), 2 * 40 - 2);
    }

    /// A store that loses every write at level 1: conformance must notice.
    #[derive(Default)]
    struct Lossy(MemoryNodeStore);

    impl NodeStore for Lossy {
        type Error = Infallible;
        fn size(&self) -> Result<u64, Infallible> {
            self.0.size()
        }
        fn get(&self, id: NodeId) -> Result<Option<MerkleHash>, Infallible> {
            self.0.get(id)
        }
        fn put_nodes(&mut self, nodes: &[(NodeId, MerkleHash)], new_size: u64) -> Result<(), Infallible> {
            let kept: Vec<_> = nodes.iter().copied().filter(|(id, _)| id.level != 1).collect();
            self.0.put_nodes(&kept, new_size)
        }
    }

    #[test]
    fn a_broken_store_fails_conformance() {
        let err = node_store_conformance(Lossy::default(), 10).err().unwrap();
        assert!(
            matches!(err, ConformanceFailure::Tree { size: 2, error: TreeError::MissingNode(_) }),
            "{err}"
        );
    }
}
