//! `medrelay-server migrate --from DATA --to postgres://…`: copies a sled
//! store into an empty PostgreSQL database, then checks that the copy's
//! log has the same size and the same root as the source's (the copy
//! rebuilds its Merkle tree from the copied entries, so equal roots mean
//! every entry was copied exactly), and only then marks the data directory
//! as a PostgreSQL deployment's (so that its sled database, now a stale
//! copy, is never served again: that would fork the log).
//!
//! The server must be stopped (sled admits one process). Rows are copied
//! in transactions of bounded size; a copy that fails part-way leaves the
//! destination partly filled and the data directory unchanged: drop and
//! recreate the database, then run `migrate` again.

use std::path::Path;

use medrelay_policy::MerkleHash;

use crate::serve::{db_dir, load_log_key, mark_backend, DatabaseUrl, ServeError};
use crate::store::dump::{DumpCounts, Row};
use crate::store::{PgStore, SledStore, Store, StoreError};

/// Rows per copy transaction (at most; large values end a chunk sooner).
const CHUNK_ROWS: usize = 2000;
/// Bytes of values per copy transaction (at most, past one large value).
const CHUNK_BYTES: usize = 64 << 20;

/// What a migration copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// Rows of each kind.
    pub counts: DumpCounts,
    /// Log entries at the source and the copy.
    pub log_size: u64,
    /// The log's root at the source, equal at the copy.
    pub root: MerkleHash,
}

fn row_bytes(row: &Row) -> usize {
    match row {
        Row::Record(m, e) => m.len() + e.len(),
        Row::Capsule(_, v) | Row::Delivered(_, _, v) => v.len(),
        Row::Rekeys(_, v) | Row::Grant(v) | Row::Principal(v) | Row::Study(v) => v.len(),
        Row::StudyBatch(_, _, v) | Row::StudyPending(_, _, v) | Row::StudyJob(_, _, v) => v.len(),
        _ => 256,
    }
}

/// Copies `data`'s sled store into the empty database at `to` and verifies it.
pub fn migrate(data: &Path, to: &DatabaseUrl) -> Result<Migrated, ServeError> {
    let key = load_log_key(data)?;
    if crate::serve::backend_is_postgres(data)? {
        return Err(ServeError::Argument("this data directory already serves a PostgreSQL database".into()));
    }
    let src = SledStore::open(&db_dir(data))?;
    let dst = PgStore::open(to.expose())?;
    if !dst.is_empty()? {
        return Err(ServeError::Argument(
            "the destination database is not empty: migrate copies into a new, empty database".into(),
        ));
    }
    dst.claim_log_key(&key.verifying_key())?;
    let mut counts = DumpCounts::default();
    let mut chunk: Vec<Row> = Vec::new();
    let mut bytes = 0;
    src.export(&mut |row| {
        counts.add(&row);
        bytes += row_bytes(&row);
        chunk.push(row);
        if chunk.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
            dst.import(&chunk)?;
            chunk.clear();
            bytes = 0;
        }
        Ok::<(), StoreError>(())
    })?;
    dst.import(&chunk)?;
    let log_size = src.log_size()?;
    let root = src.log_root(log_size)?;
    let copied = dst.log_size()?;
    if copied != log_size || dst.log_root(copied)? != root {
        return Err(ServeError::Store(StoreError::Backend(format!(
            "the copied log does not match the source's (size {copied} vs {log_size}, or another root): \
             the data directory is unchanged"
        ))));
    }
    mark_backend(data, "postgres")?;
    Ok(Migrated { counts, log_size, root })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::postgres::testing::fresh_database;
    use crate::store::{
        Challenge, CollectCheck, Enrollment, HelperReleaseOutcome, LogAppend, RecordMeta, Session,
        StoredGrant, StoredPrincipal, StoredSchema, StudyStore,
    };
    use medrelay_crypto::{
        CapsuleId, GrantId, PrincipalId, RecordCategory, RecordHeader, RecordId, SigningKey, Timestamp,
    };
    use medrelay_dp::{Budget, Delta, Epsilon, PrivacyCost};
    use medrelay_policy::{EventSalt, LeafOpening};
    use medrelay_wire::Role;
    use rand_chacha::rand_core::SeedableRng;

    fn ev(tag: u8, subjects: &[PrincipalId]) -> LogAppend {
        let opening = LeafOpening::from_parts(EventSalt::from_bytes([tag; 32]), vec![tag; 5]).unwrap();
        LogAppend { opening, subjects: subjects.to_vec() }
    }

    /// A sled store with something of every kind.
    fn fill(s: &SledStore) -> (StoredPrincipal, RecordId, GrantId) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let sk = SigningKey::generate(&mut rng);
        let p = StoredPrincipal {
            role: Role::Patient,
            name: "P".into(),
            signing_key: sk.verifying_key(),
            pre_public_keys: vec![1; 40],
            signature: sk.sign(b"c", b"m"),
            registered_at: Timestamp(3),
            log_index: 0,
        };
        let pid = p.id();
        s.register_principal(&p, None, &ev(1, &[pid])).unwrap();
        let lab = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
        let rid = RecordId::from_bytes([7; 16]);
        let header = RecordHeader::new(rid, pid, lab, "application/fhir+json", Timestamp(5)).unwrap();
        let capsule = CapsuleId::from_bytes([3; 32]);
        s.put_batch(
            &[(capsule, vec![4; 700])],
            &[(RecordMeta { header, size: 3, log_index: 0 }, vec![9; 3000])],
            &[ev(2, &[pid])],
        )
        .unwrap();
        let doctor = PrincipalId::from_bytes([2; 32]);
        let gid = GrantId::from_bytes([5; 16]);
        let g = StoredGrant { grant_id: gid, patient: pid, doctor, grant: vec![1; 9], revocation: None };
        s.put_grant(&g, &[8; 5000], &ev(3, &[pid, doctor])).unwrap();
        s.put_served(&[gid], &[(gid, capsule, vec![6; 900])], &[ev(42, &[doctor])]).unwrap();
        let g2 = StoredGrant { grant_id: GrantId::from_bytes([6; 16]), ..g };
        s.put_grant(&g2, b"k2", &ev(4, &[pid])).unwrap();
        s.revoke_grant(&g2.grant_id, b"rev", &ev(5, &[pid])).unwrap();
        s.put_session(&[1; 32], &Session { principal: pid, role: Role::Patient, expires_at: Timestamp(99) })
            .unwrap();
        s.put_challenge(&[2; 32], &Challenge { principal: pid, expires_at: Timestamp(99) }).unwrap();
        s.put_enrollment(
            &[3; 32],
            &Enrollment { role: Role::Doctor, name: "D".into(), expires_at: Timestamp(99) },
        )
        .unwrap();
        let schema = StoredSchema { name: "hb".into(), json: b"{}".to_vec(), sha256: [1; 32], log_index: 0 };
        s.put_schema(&schema, &ev(6, &[])).unwrap();
        s.put_summary("hb", &pid, b"summary", &ev(7, &[pid])).unwrap();
        let budget = Budget { epsilon: Epsilon::new(1.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
        s.charge_dp_query(&doctor, "hb", Some(budget), PrivacyCost::Epsilon(0.25), &ev(8, &[doctor]))
            .unwrap();
        let upload = |_: u32, _: u32| -> Result<LogAppend, StoreError> { Ok(ev(9, &[])) };
        s.upload_reports("st", &pid, 5, &[([1; 16], vec![1]), ([2; 16], vec![2])], 0, &upload).unwrap();
        let commit = crate::store::JobCommit {
            job_id: [4; 16],
            batch: 0,
            aggregated: &[[3; 16]],
            rejected: &[],
            helper_response: Some(([7; 32], b"resp")),
        };
        let merge: &crate::store::Transform<'_> = &|a: &[u8]| Ok([a, b"+"].concat());
        s.commit_job("hs", &commit, b"agg", merge, &ev(10, &[])).unwrap();
        for i in 11..40 {
            s.append_log(&ev(i, &[pid])).unwrap();
        }
        (p, rid, gid)
    }

    #[test]
    fn a_sled_store_is_copied_whole_and_its_log_root_verified() {
        let Some(url) = fresh_database() else { return };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        crate::serve::init(&data).unwrap();
        let (p, rid, gid) = {
            let s = SledStore::open(&db_dir(&data)).unwrap();
            fill(&s)
        };
        let src = SledStore::open_waiting(&db_dir(&data), std::time::Duration::from_secs(30)).unwrap();
        let size = src.log_size().unwrap();
        let root = src.log_root(size).unwrap();
        drop(src);
        let url = DatabaseUrl::new(url);
        let m = migrate_waiting(&data, &url);
        assert_eq!((m.log_size, m.root), (size, root));
        assert_eq!((m.counts.principals, m.counts.records, m.counts.grants, m.counts.secrets), (1, 1, 2, 3));
        assert_eq!(m.counts.capsules, 2, "one capsule and one stored re-encryption");

        // Everything reads back the same through the Store API.
        let src = SledStore::open_waiting(&db_dir(&data), std::time::Duration::from_secs(30)).unwrap();
        let dst = PgStore::open(url.expose()).unwrap();
        assert_eq!(dst.get_principal(&p.id()).unwrap(), src.get_principal(&p.id()).unwrap());
        assert_eq!(dst.get_record(&rid).unwrap(), src.get_record(&rid).unwrap());
        assert_eq!(
            dst.list_records(&p.id(), None, 10).unwrap(),
            src.list_records(&p.id(), None, 10).unwrap()
        );
        assert_eq!(
            dst.list_grants_by_patient(&p.id(), 10).unwrap(),
            src.list_grants_by_patient(&p.id(), 10).unwrap()
        );
        assert_eq!(dst.get_rekeys(&gid).unwrap().unwrap(), vec![8; 5000]);
        let capsule = CapsuleId::from_bytes([3; 32]);
        assert_eq!(dst.get_capsule(&capsule).unwrap(), Some(vec![4; 700]));
        assert_eq!(dst.get_delivered(&gid, &capsule).unwrap(), Some(vec![6; 900]));
        assert_eq!(dst.get_rekeys(&GrantId::from_bytes([6; 16])).unwrap(), None);
        assert_eq!(dst.log_entries(0, size).unwrap(), src.log_entries(0, size).unwrap());
        assert_eq!(
            dst.log_indices_for(&p.id(), 0, 100).unwrap(),
            src.log_indices_for(&p.id(), 0, 100).unwrap()
        );
        assert_eq!(dst.get_session(&[1; 32]).unwrap(), src.get_session(&[1; 32]).unwrap());
        assert_eq!(dst.take_challenge(&[2; 32]).unwrap(), src.take_challenge(&[2; 32]).unwrap());
        let doctor = PrincipalId::from_bytes([2; 32]);
        assert_eq!(dst.get_ledger(&doctor, "hb").unwrap(), src.get_ledger(&doctor, "hb").unwrap());
        assert_eq!(dst.list_summaries("hb", 10).unwrap(), vec![b"summary".to_vec()]);
        assert_eq!(dst.list_schemas(10).unwrap(), src.list_schemas(10).unwrap());
        assert_eq!(dst.pending_reports("st", 10).unwrap(), src.pending_reports("st", 10).unwrap());
        assert_eq!(dst.seen_reports("hs", &[[3; 16], [4; 16]]).unwrap(), vec![true, false]);
        assert_eq!(dst.job_response("hs", &[4; 16]).unwrap(), src.job_response("hs", &[4; 16]).unwrap());
        let batch = dst.get_batch("hs", 0).unwrap().unwrap();
        assert_eq!(Some(&batch), src.get_batch("hs", 0).unwrap().as_ref());
        // The copy carries on: the helper releases the copied batch.
        let check = CollectCheck { batch: 0, reports: 1, checksum: batch.checksum, min_reports: 1 };
        let noisy: &crate::store::Transform<'_> = &|a: &[u8]| Ok(a.to_vec());
        assert!(matches!(
            dst.helper_release("hs", &check, noisy, &ev(41, &[])).unwrap(),
            HelperReleaseOutcome::Released(_)
        ));
        drop(src);

        // The directory now names PostgreSQL: no second copy, no sled serving.
        let err = migrate(&data, &url).unwrap_err().to_string();
        assert!(err.contains("already serves a PostgreSQL database"), "{err}");
    }

    #[test]
    fn migrate_refuses_a_database_that_is_not_empty() {
        let Some(url) = fresh_database() else { return };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        crate::serve::init(&data).unwrap();
        let url = DatabaseUrl::new(url);
        PgStore::open(url.expose()).unwrap().append_log(&ev(1, &[])).unwrap();
        let err = migrate_waiting_err(&data, &url);
        assert!(err.contains("not empty"), "{err}");
        assert!(!crate::serve::backend_is_postgres(&data).unwrap(), "the directory is unchanged");
    }

    /// `migrate`, retried while sled's threads still hold the file lock of
    /// a handle this test just dropped.
    fn migrate_waiting(data: &Path, url: &DatabaseUrl) -> Migrated {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match migrate(data, url) {
                Ok(m) => return m,
                Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn migrate_waiting_err(data: &Path, url: &DatabaseUrl) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match migrate(data, url) {
                Ok(_) => panic!("migrated"),
                Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return e.to_string(),
            }
        }
    }
}
