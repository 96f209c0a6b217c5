//! Prints the cost of the log operations: appends, proof generation from
//! stored nodes, proof verification, checkpoint signing and verification.
//! Run: `cargo bench -p medrelay-policy --bench log` (release figures) or
//! add `--profile dev` for a quick look.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use medrelay_crypto::SigningKey;
use medrelay_policy::{verify_consistency, verify_inclusion, LogSigner, MemoryNodeStore, MerkleTree};

fn per_op(label: &str, n: u64, start: Instant) {
    let total = start.elapsed();
    let each = total / u32::try_from(n).unwrap();
    println!(
        "{label:<44} {n:>8} ops  {:>10.3} ms total  {:>9.2} µs/op",
        total.as_secs_f64() * 1e3,
        each.as_secs_f64() * 1e6
    );
}

fn main() {
    let n: u64 = std::env::var("MEDRELAY_BENCH_LEAVES").ok().and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
    let mut tree = MerkleTree::new(MemoryNodeStore::new());
    let start = Instant::now();
    for i in 0..n {
        tree.append(&i.to_be_bytes()).unwrap();
    }
    per_op("append (hash leaf + store completed nodes)", n, start);
    println!("stored nodes: {} for {n} leaves", tree.store().node_count());

    let root = tree.root().unwrap();
    let samples = 10_000u64;
    let start = Instant::now();
    let mut proofs = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        let idx = i.wrapping_mul(2_654_435_761) % n;
        proofs.push((idx, tree.inclusion_proof(idx, n).unwrap()));
    }
    per_op("inclusion proof from stored nodes", samples, start);
    println!("inclusion proof length at n = {n}: {} hashes", proofs[0].1.hashes.len());
    let start = Instant::now();
    for (idx, p) in &proofs {
        verify_inclusion(&tree.leaf_hash(*idx).unwrap(), black_box(p), &root).unwrap();
    }
    per_op("inclusion proof verification (+ leaf read)", samples, start);

    let start = Instant::now();
    let mut cps = Vec::new();
    for i in 0..samples {
        let old = 1 + i.wrapping_mul(40_503) % (n - 1);
        cps.push((tree.root_at(old).unwrap(), tree.consistency_proof(old, n).unwrap()));
    }
    per_op("old root + consistency proof", samples, start);
    let start = Instant::now();
    for (old_root, p) in &cps {
        verify_consistency(black_box(p), old_root, &root).unwrap();
    }
    per_op("consistency proof verification", samples, start);

    let signer = LogSigner::new("medrelay.example/log", &SigningKey::from_seed(&[1; 32])).unwrap();
    let verifier = signer.verifier();
    let start = Instant::now();
    let mut note = String::new();
    for _ in 0..1000 {
        note = signer.sign_checkpoint(n, root).unwrap();
    }
    per_op("checkpoint signing", 1000, start);
    let start = Instant::now();
    for _ in 0..1000 {
        black_box(verifier.verify_checkpoint(&note).unwrap());
    }
    per_op("checkpoint verification", 1000, start);
}
