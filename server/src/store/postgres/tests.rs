//! PostgreSQL-only behaviour: migrations, the shared log key, and several
//! stores (as several replicas would hold) on one database at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use medrelay_crypto::{PrincipalId, SigningKey};
use medrelay_dp::{Budget, Delta, Epsilon, PrivacyCost};
use medrelay_policy::{root_from_leaves, verify_consistency, EventSalt, LeafOpening};
use rand_chacha::rand_core::SeedableRng;

use super::testing::fresh_database;
use super::*;
use crate::store::Challenge;

fn ev(tag: u64, subjects: &[PrincipalId]) -> LogAppend {
    let mut salt = [0u8; 32];
    salt[..8].copy_from_slice(&tag.to_be_bytes());
    let opening = LeafOpening::from_parts(EventSalt::from_bytes(salt), tag.to_be_bytes().to_vec()).unwrap();
    LogAppend { opening, subjects: subjects.to_vec() }
}

fn raw(url: &str) -> Client {
    let url = url.to_owned();
    std::thread::spawn(move || Client::connect(&url, postgres::NoTls).unwrap()).join().unwrap()
}

#[test]
fn migrations_apply_once_and_a_newer_or_altered_schema_is_refused() {
    let Some(url) = fresh_database() else { return };
    let s = PgStore::open(&url).unwrap();
    assert_eq!(s.log_size().unwrap(), 0);
    drop(s);
    // Re-opening applies nothing and keeps the data.
    let s = PgStore::open(&url).unwrap();
    s.append_log(&ev(1, &[])).unwrap();
    drop(s);
    let url2 = url.clone();
    std::thread::spawn(move || {
        let mut c = raw(&url2);
        let rows = c.query("SELECT version FROM medrelay_migrations", &[]).unwrap();
        assert_eq!(rows.len(), MIGRATIONS_KNOWN);
        // A version this binary does not know: written by a newer one.
        c.execute(
            "INSERT INTO medrelay_migrations (version, name, sha256) VALUES (99, 'future', '\\x00')",
            &[],
        )
        .unwrap();
    })
    .join()
    .unwrap();
    let err = PgStore::open(&url).unwrap_err().to_string();
    assert!(err.contains("version 99, newer than this medrelay-server knows"), "{err}");
    // An applied migration whose text differs from the binary's.
    let url2 = url.clone();
    std::thread::spawn(move || {
        let mut c = raw(&url2);
        c.execute("DELETE FROM medrelay_migrations WHERE version = 99", &[]).unwrap();
        c.execute("UPDATE medrelay_migrations SET sha256 = '\\x01' WHERE version = 1", &[]).unwrap();
    })
    .join()
    .unwrap();
    let err = PgStore::open(&url).unwrap_err().to_string();
    assert!(err.contains("differs from this binary's"), "{err}");
}

const MIGRATIONS_KNOWN: usize = migrate::MIGRATIONS.len();

#[test]
fn a_bad_url_is_a_clear_error_that_does_not_echo_it() {
    let err = PgStore::open("postgres://user:s3cret@[::1/db").unwrap_err().to_string();
    assert!(err.contains("does not parse") && !err.contains("s3cret"), "{err}");
}

#[test]
fn every_replica_must_hold_the_one_log_signing_key() {
    let Some(url) = fresh_database() else { return };
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let a = SigningKey::generate(&mut rng).verifying_key();
    let b = SigningKey::generate(&mut rng).verifying_key();
    let s1 = PgStore::open(&url).unwrap();
    let s2 = PgStore::open(&url).unwrap();
    s1.claim_log_key(&a).unwrap();
    s2.claim_log_key(&a).unwrap();
    let err = s2.claim_log_key(&b).unwrap_err().to_string();
    assert!(err.contains("another log signing key"), "{err}");
}

/// Two stores on one database (two replicas) appending from four threads
/// each: 400 consecutive indices, none twice, and the tree over them is the
/// tree of the entries in index order, consistent with every earlier size.
#[test]
fn concurrent_appends_from_two_replicas_form_one_log() {
    let Some(url) = fresh_database() else { return };
    let replicas =
        [Arc::new(PgStore::open_with(&url, 4).unwrap()), Arc::new(PgStore::open_with(&url, 4).unwrap())];
    let who = PrincipalId::from_bytes([3; 32]);
    let mut handles = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for t in 0..4u64 {
            let s = Arc::clone(store);
            handles.push(std::thread::spawn(move || {
                (0..50u64)
                    .map(|i| s.append_log(&ev((r as u64) << 32 | t << 16 | i, &[who])).unwrap())
                    .collect::<Vec<u64>>()
            }));
        }
    }
    let mut idxs: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    idxs.sort_unstable();
    assert_eq!(idxs, (0..400).collect::<Vec<u64>>());
    let [a, b] = replicas;
    assert_eq!(a.log_size().unwrap(), 400);
    let leaves: Vec<_> = b.log_entries(0, 400).unwrap().iter().map(|(_, o)| o.leaf_hash()).collect();
    assert_eq!(b.log_leaf_hashes(0, 400).unwrap().into_iter().map(|(_, h)| h).collect::<Vec<_>>(), leaves);
    assert_eq!(a.log_root(400).unwrap(), root_from_leaves(&leaves));
    for old in [1, 37, 200, 399] {
        let proof = b.consistency_proof(old, 400).unwrap();
        verify_consistency(&proof, &a.log_root(old).unwrap(), &a.log_root(400).unwrap()).unwrap();
    }
    assert_eq!(a.log_indices_for(&who, 0, 1000).unwrap().len(), 400);
}

/// Charges racing at two replicas: exactly as many succeed as the budget
/// holds, whatever replica they went to.
#[test]
fn concurrent_charges_at_two_replicas_never_overspend() {
    let Some(url) = fresh_database() else { return };
    let a = PrincipalId::from_bytes([7; 32]);
    let s1 = Arc::new(PgStore::open_with(&url, 4).unwrap());
    let s2 = Arc::new(PgStore::open_with(&url, 4).unwrap());
    let schema = StoredSchema { name: "hb".into(), json: b"{}".to_vec(), sha256: [1; 32], log_index: 0 };
    s1.put_schema(&schema, &ev(0, &[])).unwrap();
    let budget = Budget { epsilon: Epsilon::new(1.3).unwrap(), delta: Delta::new(1e-6).unwrap() };
    s1.set_budget(&a, "hb", budget, &ev(1, &[a])).unwrap();
    let handles: Vec<_> = (0..16u64)
        .map(|i| {
            let s = Arc::clone(if i % 2 == 0 { &s1 } else { &s2 });
            std::thread::spawn(move || {
                s.charge_dp_query(&a, "hb", None, PrivacyCost::Epsilon(0.25), &ev(10 + i, &[a])).is_ok()
            })
        })
        .collect();
    let ok = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(ok, 5);
    let l = s2.get_ledger(&a, "hb").unwrap().unwrap();
    assert_eq!((l.queries(), l.spent_pure_epsilon()), (5, 1.25));
    assert_eq!(s1.log_size().unwrap(), 2 + 5);
}

/// One challenge taken at two replicas at once: exactly one gets it.
#[test]
fn a_challenge_is_taken_once_across_replicas() {
    let Some(url) = fresh_database() else { return };
    let s1 = Arc::new(PgStore::open_with(&url, 2).unwrap());
    let s2 = Arc::new(PgStore::open_with(&url, 2).unwrap());
    for n in 0..20u8 {
        let c = Challenge { principal: PrincipalId::from_bytes([n; 32]), expires_at: Timestamp(100) };
        s1.put_challenge(&[n; 32], &c).unwrap();
        let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
        let h1 = std::thread::spawn(move || x.take_challenge(&[n; 32]).unwrap());
        let h2 = std::thread::spawn(move || y.take_challenge(&[n; 32]).unwrap());
        let got = [h1.join().unwrap(), h2.join().unwrap()];
        assert_eq!(got.iter().filter(|g| g.as_ref() == Some(&c)).count(), 1, "{got:?}");
    }
}

/// Called from inside an async runtime's worker (as the bearer-token check
/// is), the store still works: its calls run on its own threads.
#[test]
fn the_store_can_be_called_from_an_async_worker() {
    let Some(url) = fresh_database() else { return };
    let s = PgStore::open_with(&url, 2).unwrap();
    let rt = actix_web::rt::System::new();
    let size = rt.block_on(async move { s.log_size().unwrap() });
    assert_eq!(size, 0);
}
