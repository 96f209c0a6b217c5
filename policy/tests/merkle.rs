//! Merkle tree tests against an independent, naive recursive transcription of
//! RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF) working on the raw leaf data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_policy::{
    root_from_leaves, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof,
    MemoryNodeStore, MerkleHash, MerkleTree,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// ---- naive reference, written from the RFC text, sharing no code with the crate ----

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn k_for(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> [u8; 32] {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &d[0]]),
        n => {
            let k = k_for(n);
            sha(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_for(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_for(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn proof(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    if m == 0 || m == d.len() {
        vec![]
    } else {
        subproof(m, d, true)
    }
}

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

fn tree_of(data: &[Vec<u8>]) -> MerkleTree<MemoryNodeStore> {
    let mut t = MerkleTree::new(MemoryNodeStore::new());
    for d in data {
        t.append(d).unwrap();
    }
    t
}

fn h(b: [u8; 32]) -> MerkleHash {
    MerkleHash::from_bytes(b)
}

fn raw(p: &[MerkleHash]) -> Vec<[u8; 32]> {
    p.iter().map(|x| *x.as_bytes()).collect()
}

fn flip(hash: &MerkleHash, bit: usize) -> MerkleHash {
    let mut b = *hash.as_bytes();
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    MerkleHash::from_bytes(b)
}

// ---- hand-computed small trees ----

#[test]
fn hand_computed_roots_for_sizes_0_to_3() {
    let d = leaves(3);
    let l: Vec<[u8; 32]> = d.iter().map(|x| sha(&[&[0], x])).collect();
    let t = tree_of(&d);
    assert_eq!(t.root_at(0).unwrap(), h(sha(&[])));
    assert_eq!(t.root_at(1).unwrap(), h(l[0]));
    let n01 = sha(&[&[1], &l[0], &l[1]]);
    assert_eq!(t.root_at(2).unwrap(), h(n01));
    // Size 3: left = perfect subtree of 2, right = leaf 2 (not duplicated).
    assert_eq!(t.root_at(3).unwrap(), h(sha(&[&[1], &n01, &l[2]])));
    // Inclusion of leaf 2 in size 3: just the left subtree.
    assert_eq!(raw(&t.inclusion_proof(2, 3).unwrap().hashes), vec![n01]);
    // Inclusion of leaf 0 in size 3: leaf 1, then leaf 2.
    assert_eq!(raw(&t.inclusion_proof(0, 3).unwrap().hashes), vec![l[1], l[2]]);
    // Consistency 1 -> 3: leaf 1, leaf 2 (old root is implied).
    assert_eq!(raw(&t.consistency_proof(1, 3).unwrap().hashes), vec![l[1], l[2]]);
    // Consistency 2 -> 3: just leaf 2.
    assert_eq!(raw(&t.consistency_proof(2, 3).unwrap().hashes), vec![l[2]]);
}

#[test]
fn all_roots_and_proofs_for_sizes_0_to_9_match_the_reference() {
    let d = leaves(9);
    let t = tree_of(&d);
    let leaf_hashes: Vec<MerkleHash> = d.iter().map(|x| h(sha(&[&[0], x]))).collect();
    for n in 0..=9 {
        let root = t.root_at(n as u64).unwrap();
        assert_eq!(root, h(mth(&d[..n])), "root of {n}");
        assert_eq!(root, root_from_leaves(&leaf_hashes[..n]));
        for m in 0..n {
            let p = t.inclusion_proof(m as u64, n as u64).unwrap();
            assert_eq!(raw(&p.hashes), path(m, &d[..n]), "PATH({m}, D[{n}])");
            verify_inclusion(&leaf_hashes[m], &p, &root).unwrap();
            // The wrong leaf, index or size fails.
            assert!(verify_inclusion(&leaf_hashes[(m + 1) % 9], &p, &root).is_err());
            let mut wrong_index = p.clone();
            wrong_index.leaf_index = (m as u64 + 1) % n as u64;
            if wrong_index.leaf_index != m as u64 {
                assert!(verify_inclusion(&leaf_hashes[m], &wrong_index, &root).is_err());
            }
            // (A wrong tree_size alone is not always detectable: e.g. PATH(0, D[3])
            // also fits a size-4 shape. The signed checkpoint binds size to root.)
        }
        if n > 0 {
            // No proof from the empty tree (RFC 9162 §2.1.4, transparency-dev):
            // the tree refuses to make one and the verifier refuses any.
            assert!(t.consistency_proof(0, n as u64).is_err());
            let fake = ConsistencyProof { old_size: 0, new_size: n as u64, hashes: vec![] };
            assert!(verify_consistency(&fake, &h(sha(&[])), &root).is_err());
        }
        for m in (1..=n).chain((n == 0).then_some(0)) {
            let p = t.consistency_proof(m as u64, n as u64).unwrap();
            assert_eq!(raw(&p.hashes), proof(m, &d[..n]), "PROOF({m}, D[{n}])");
            let old = t.root_at(m as u64).unwrap();
            verify_consistency(&p, &old, &root).unwrap();
            if m > 0 && m < n {
                // Swapped roots and a root from another size fail.
                assert!(verify_consistency(&p, &root, &old).is_err());
                let other = t.root_at((m - 1) as u64).unwrap();
                assert!(verify_consistency(&p, &other, &root).is_err());
            }
        }
    }
}

#[test]
fn a_proof_does_not_transfer_to_another_tree() {
    let d = leaves(7);
    let mut e = d.clone();
    e[5] = b"forged".to_vec();
    let t = tree_of(&d);
    let u = tree_of(&e);
    let p = t.inclusion_proof(3, 7).unwrap();
    assert!(verify_inclusion(&u.leaf_hash(3).unwrap(), &p, &u.root().unwrap()).is_err());
    let c = t.consistency_proof(4, 7).unwrap();
    assert!(verify_consistency(&c, &t.root_at(4).unwrap(), &u.root().unwrap()).is_err());
}

#[test]
fn oversized_proofs_are_rejected_without_work() {
    let t = tree_of(&leaves(4));
    let mut p = t.inclusion_proof(0, 4).unwrap();
    p.hashes = vec![p.hashes[0]; 10_000];
    assert!(verify_inclusion(&t.leaf_hash(0).unwrap(), &p, &t.root().unwrap()).is_err());
    let c = ConsistencyProof { old_size: 1, new_size: 4, hashes: vec![p.hashes[0]; 10_000] };
    assert!(verify_consistency(&c, &t.root_at(1).unwrap(), &t.root().unwrap()).is_err());
    let big = InclusionProof { leaf_index: u64::MAX - 1, tree_size: u64::MAX, hashes: vec![] };
    assert!(verify_inclusion(&t.leaf_hash(0).unwrap(), &big, &t.root().unwrap()).is_err());
}

// ---- property tests ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_inclusion_proof_verifies_and_any_flipped_bit_fails(
        n in 1usize..300, m_seed in any::<u64>(), bit in 0usize..256, which in any::<u64>()
    ) {
        let d = leaves(n);
        let t = tree_of(&d);
        let m = (m_seed % n as u64) as usize;
        let size = m as u64 + 1 + (which % (n - m) as u64);
        let root = t.root_at(size).unwrap();
        let leaf = t.leaf_hash(m as u64).unwrap();
        let p = t.inclusion_proof(m as u64, size).unwrap();
        prop_assert_eq!(raw(&p.hashes), path(m, &d[..size as usize]));
        prop_assert!(verify_inclusion(&leaf, &p, &root).is_ok());
        prop_assert!(verify_inclusion(&flip(&leaf, bit), &p, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, &p, &flip(&root, bit)).is_err());
        if !p.hashes.is_empty() {
            let mut q = p.clone();
            let i = (which as usize) % q.hashes.len();
            q.hashes[i] = flip(&q.hashes[i], bit);
            prop_assert!(verify_inclusion(&leaf, &q, &root).is_err());
            let mut short = p.clone();
            short.hashes.pop();
            prop_assert!(verify_inclusion(&leaf, &short, &root).is_err());
        }
        let mut long = p.clone();
        long.hashes.push(leaf);
        prop_assert!(verify_inclusion(&leaf, &long, &root).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_flipped_bit_fails(
        n in 1usize..300, old_seed in any::<u64>(), bit in 0usize..256, which in any::<u64>()
    ) {
        let d = leaves(n);
        let t = tree_of(&d);
        let old = 1 + old_seed % n as u64;
        let new = n as u64;
        let p = t.consistency_proof(old, new).unwrap();
        prop_assert_eq!(raw(&p.hashes), proof(old as usize, &d));
        let old_root = t.root_at(old).unwrap();
        let new_root = t.root().unwrap();
        prop_assert_eq!(new_root, h(mth(&d)));
        prop_assert!(verify_consistency(&p, &old_root, &new_root).is_ok());
        prop_assert!(verify_consistency(&p, &flip(&old_root, bit), &new_root).is_err());
        prop_assert!(verify_consistency(&p, &old_root, &flip(&new_root, bit)).is_err());
        if !p.hashes.is_empty() {
            let mut q = p.clone();
            let i = (which as usize) % q.hashes.len();
            q.hashes[i] = flip(&q.hashes[i], bit);
            prop_assert!(verify_consistency(&q, &old_root, &new_root).is_err());
        }
    }
}
