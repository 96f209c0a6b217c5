//! The audit log in PostgreSQL: the Merkle tree's nodes read through a
//! connection or transaction, and appends under the log head's row lock.

use std::cell::RefCell;
use std::collections::BTreeMap;

use medrelay_policy::{MerkleHash, MerkleTree, NodeId, NodeStore, TreeError};
use postgres::{GenericClient, Transaction};

use super::{big, unbig, Fail, R};
use crate::store::{LogAppend, StoreError};

pub(super) fn tree_err(e: TreeError<Fail>) -> Fail {
    match e {
        TreeError::Store(e) => e,
        TreeError::MissingNode(_) => StoreError::Corrupt("merkle node missing").into(),
        TreeError::OutOfRange { what, value, size } => {
            StoreError::OutOfRange(format!("{what} {value} is out of range for tree size {size}")).into()
        }
        other => StoreError::Backend(other.to_string()).into(),
    }
}

/// The Merkle tree's committed nodes read through one connection or
/// transaction, plus the nodes of appends planned in it but not written yet.
pub(super) struct Nodes<'a, C: GenericClient> {
    pub(super) db: RefCell<&'a mut C>,
    pub(super) size: u64,
    pub(super) pending: BTreeMap<NodeId, MerkleHash>,
}

impl<C: GenericClient> NodeStore for Nodes<'_, C> {
    type Error = Fail;

    fn size(&self) -> Result<u64, Fail> {
        Ok(self.size)
    }

    fn get(&self, id: NodeId) -> Result<Option<MerkleHash>, Fail> {
        if let Some(h) = self.pending.get(&id) {
            return Ok(Some(*h));
        }
        let row = self.db.borrow_mut().query_opt(
            "SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2",
            &[&i16::from(id.level), &big(id.index)?],
        )?;
        match row {
            Some(r) => {
                let h: &[u8] = r.try_get(0)?;
                Ok(Some(MerkleHash::from_slice(h).map_err(|_| StoreError::Corrupt("merkle node"))?))
            }
            None => Ok(None),
        }
    }

    fn put_nodes(&mut self, nodes: &[(NodeId, MerkleHash)], new_size: u64) -> Result<(), Fail> {
        self.pending.extend(nodes.iter().copied());
        self.size = new_size;
        Ok(())
    }
}

pub(super) fn read_size(db: &mut impl GenericClient) -> R<u64> {
    let row = db.query_one("SELECT size FROM log_head WHERE id = 1", &[])?;
    Ok(unbig(row.try_get(0)?)?)
}

/// Locks the log head for this transaction (the append lock of every
/// replica) and returns the committed size.
pub(super) fn lock_head(tx: &mut Transaction<'_>) -> R<u64> {
    let row = tx.query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[])?;
    Ok(unbig(row.try_get(0)?)?)
}

/// Appends `events` inside `tx`, whose log head is locked at `size`;
/// returns their indices.
pub(super) fn append_in(tx: &mut Transaction<'_>, size: u64, events: &[&LogAppend]) -> R<Vec<u64>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (new_size, nodes) = {
        let mut tree = MerkleTree::new(Nodes { db: RefCell::new(&mut *tx), size, pending: BTreeMap::new() });
        for e in events {
            tree.append_leaf_hash(e.opening.leaf_hash()).map_err(tree_err)?;
        }
        let n = tree.into_store();
        (n.size, n.pending)
    };
    let idxs: Vec<u64> = (size..new_size).collect();
    let big_idxs = idxs.iter().map(|i| big(*i)).collect::<Result<Vec<_>, _>>()?;
    let openings: Vec<Vec<u8>> = events.iter().map(|e| e.opening.to_bytes()).collect();
    tx.execute(
        "INSERT INTO log_entries (idx, opening) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
        &[&big_idxs, &openings],
    )?;
    let (mut subj, mut subj_idx) = (Vec::new(), Vec::new());
    for (e, i) in events.iter().zip(&big_idxs) {
        for s in &e.subjects {
            subj.push(s.as_bytes().to_vec());
            subj_idx.push(*i);
        }
    }
    if !subj.is_empty() {
        tx.execute(
            "INSERT INTO log_subjects (subject, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) \
             ON CONFLICT DO NOTHING",
            &[&subj, &subj_idx],
        )?;
    }
    let levels: Vec<i16> = nodes.keys().map(|id| i16::from(id.level)).collect();
    let positions = nodes.keys().map(|id| big(id.index)).collect::<Result<Vec<_>, _>>()?;
    let hashes: Vec<Vec<u8>> = nodes.values().map(|h| h.as_bytes().to_vec()).collect();
    tx.execute(
        "INSERT INTO merkle_nodes (level, idx, hash) \
         SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[])",
        &[&levels, &positions, &hashes],
    )?;
    tx.execute("UPDATE log_head SET size = $1 WHERE id = 1", &[&big(new_size)?])?;
    Ok(idxs)
}
