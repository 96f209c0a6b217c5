//! The sled backend: the only file that touches sled.
//!
//! Everything lives in one sled tree under short key prefixes, so every
//! multi-key change is a single-tree sled transaction (serializable, all or
//! nothing). Every write is followed by `flush` before the call returns, so a
//! returned `Ok` means the change is on disk.

use std::path::Path;

use medrelay_crypto::{GrantId, PrincipalId, RecordId};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{
    Challenge, Enrollment, EnrollmentUse, LogAppend, RecordMeta, SecretHash, Session, Store, StoreError,
    StoredGrant, StoredPrincipal,
};

const LOG_SIZE: &[u8] = b"m/log_size";

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    k.extend_from_slice(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn from_tx(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn read_u64(v: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| StoreError::Corrupt("counter"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Appends one log event inside a transaction; returns its index.
fn tx_append(tx: &TransactionalTree, event: &LogAppend) -> TxResult<u64> {
    let size = match tx.get(LOG_SIZE)? {
        Some(v) => match read_u64(&v) {
            Ok(n) => n,
            Err(e) => return abort(e),
        },
        None => 0,
    };
    let idx = size.to_be_bytes();
    tx.insert(key(b"l/", &[&idx]), event.data.as_slice())?;
    for s in &event.subjects {
        tx.insert(key(b"ls/", &[s.as_bytes(), &idx]), &[][..])?;
    }
    tx.insert(LOG_SIZE, &(size + 1).to_be_bytes()[..])?;
    Ok(size)
}

/// sled-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open().map_err(backend)?;
        Ok(Self { db })
    }

    fn durable(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(backend)
    }

    fn put(&self, k: Vec<u8>, v: Vec<u8>) -> Result<(), StoreError> {
        self.db.insert(k, v).map_err(backend)?;
        self.durable()
    }

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db.get(k).map_err(backend)
    }

    fn scan_ids<const N: usize>(&self, prefix: &[u8], limit: usize) -> Result<Vec<[u8; N]>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix).take(limit) {
            let (k, _) = item.map_err(backend)?;
            let tail = k.get(prefix.len()..).ok_or(StoreError::Corrupt("index key"))?;
            out.push(tail.try_into().map_err(|_| StoreError::Corrupt("index key"))?);
        }
        Ok(out)
    }

    fn grants_in(&self, prefix: &[u8], limit: usize) -> Result<Vec<StoredGrant>, StoreError> {
        let mut out = Vec::new();
        for id in self.scan_ids::<16>(prefix, limit)? {
            let id = GrantId::from_bytes(id);
            out.push(self.get_grant(&id)?.ok_or(StoreError::Corrupt("grant index"))?);
        }
        Ok(out)
    }
}

impl Store for SledStore {
    fn put_challenge(&self, nonce_hash: &SecretHash, challenge: &Challenge) -> Result<(), StoreError> {
        self.put(key(b"c/", &[nonce_hash]), challenge.encode())
    }

    fn take_challenge(&self, nonce_hash: &SecretHash) -> Result<Option<Challenge>, StoreError> {
        // `remove` is atomic: of two concurrent uses of one nonce, one gets None.
        let old = self.db.remove(key(b"c/", &[nonce_hash])).map_err(backend)?;
        self.durable()?;
        old.map(|v| Challenge::decode(&v)).transpose()
    }

    fn put_session(&self, token_hash: &SecretHash, session: &Session) -> Result<(), StoreError> {
        self.put(key(b"s/", &[token_hash]), session.encode())
    }

    fn get_session(&self, token_hash: &SecretHash) -> Result<Option<Session>, StoreError> {
        self.get(&key(b"s/", &[token_hash]))?.map(|v| Session::decode(&v)).transpose()
    }

    fn put_enrollment(&self, token_hash: &SecretHash, enrollment: &Enrollment) -> Result<(), StoreError> {
        self.put(key(b"e/", &[token_hash]), enrollment.encode())
    }

    fn register_principal(
        &self,
        principal: &StoredPrincipal,
        enrollment: Option<EnrollmentUse>,
        event: &LogAppend,
    ) -> Result<u64, StoreError> {
        let pkey = key(b"p/", &[principal.id().as_bytes()]);
        let idx = self
            .db
            .transaction(|tx| {
                if tx.get(&pkey)?.is_some() {
                    return abort(StoreError::AlreadyExists("principal"));
                }
                if let Some(u) = &enrollment {
                    let ekey = key(b"e/", &[&u.token_hash]);
                    let Some(raw) = tx.remove(ekey)? else {
                        return abort(StoreError::InvalidEnrollment);
                    };
                    match Enrollment::decode(&raw) {
                        Ok(en) if en.role == u.role && u.now < en.expires_at => {}
                        Ok(_) => return abort(StoreError::InvalidEnrollment),
                        Err(e) => return abort(e),
                    }
                }
                let idx = tx_append(tx, event)?;
                let mut p = principal.clone();
                p.log_index = idx;
                tx.insert(pkey.as_slice(), p.encode())?;
                Ok(idx)
            })
            .map_err(from_tx)?;
        self.durable()?;
        Ok(idx)
    }

    fn get_principal(&self, id: &PrincipalId) -> Result<Option<StoredPrincipal>, StoreError> {
        self.get(&key(b"p/", &[id.as_bytes()]))?.map(|v| StoredPrincipal::decode(&v)).transpose()
    }

    fn put_records(
        &self,
        records: &[(RecordMeta, Vec<u8>)],
        events: &[LogAppend],
    ) -> Result<Vec<u64>, StoreError> {
        if records.len() != events.len() {
            return Err(StoreError::Backend("one log event per record expected".into()));
        }
        let out = self
            .db
            .transaction(|tx| {
                let mut idxs = Vec::with_capacity(records.len());
                for ((meta, envelope), event) in records.iter().zip(events) {
                    let rid = meta.record_id.as_bytes();
                    if tx.get(key(b"r/", &[rid]))?.is_some() {
                        return abort(StoreError::AlreadyExists("record"));
                    }
                    let idx = tx_append(tx, event)?;
                    let mut m = meta.clone();
                    m.log_index = idx;
                    tx.insert(key(b"r/", &[rid]), m.encode())?;
                    tx.insert(key(b"b/", &[rid]), envelope.as_slice())?;
                    tx.insert(key(b"o/", &[meta.owner.as_bytes(), rid]), &[][..])?;
                    idxs.push(idx);
                }
                Ok(idxs)
            })
            .map_err(from_tx)?;
        self.durable()?;
        Ok(out)
    }

    fn get_record(&self, id: &RecordId) -> Result<Option<(RecordMeta, Vec<u8>)>, StoreError> {
        let Some(meta) = self.get(&key(b"r/", &[id.as_bytes()]))? else {
            return Ok(None);
        };
        let meta = RecordMeta::decode(&meta)?;
        let env = self.get(&key(b"b/", &[id.as_bytes()]))?.ok_or(StoreError::Corrupt("record envelope"))?;
        Ok(Some((meta, env.to_vec())))
    }

    fn list_records(&self, owner: &PrincipalId, limit: usize) -> Result<Vec<RecordMeta>, StoreError> {
        let mut out = Vec::new();
        for id in self.scan_ids::<16>(&key(b"o/", &[owner.as_bytes()]), limit)? {
            let raw = self.get(&key(b"r/", &[&id]))?.ok_or(StoreError::Corrupt("record index"))?;
            out.push(RecordMeta::decode(&raw)?);
        }
        Ok(out)
    }

    fn put_grant(&self, grant: &StoredGrant, rekeys: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gid = grant.grant_id.as_bytes();
        let idx = self
            .db
            .transaction(|tx| {
                if tx.get(key(b"g/", &[gid]))?.is_some() {
                    return abort(StoreError::AlreadyExists("grant"));
                }
                let idx = tx_append(tx, event)?;
                tx.insert(key(b"g/", &[gid]), grant.encode())?;
                tx.insert(key(b"k/", &[gid]), rekeys)?;
                tx.insert(key(b"gp/", &[grant.patient.as_bytes(), gid]), &[][..])?;
                tx.insert(key(b"gd/", &[grant.doctor.as_bytes(), gid]), &[][..])?;
                Ok(idx)
            })
            .map_err(from_tx)?;
        self.durable()?;
        Ok(idx)
    }

    fn revoke_grant(&self, id: &GrantId, revocation: &[u8], event: &LogAppend) -> Result<u64, StoreError> {
        let gkey = key(b"g/", &[id.as_bytes()]);
        let idx = self
            .db
            .transaction(|tx| {
                let Some(raw) = tx.get(&gkey)? else {
                    return abort(StoreError::NotFound("grant"));
                };
                let mut g = match StoredGrant::decode(&raw) {
                    Ok(g) => g,
                    Err(e) => return abort(e),
                };
                if g.revocation.is_some() {
                    return abort(StoreError::AlreadyRevoked);
                }
                g.revocation = Some(revocation.to_vec());
                let idx = tx_append(tx, event)?;
                tx.insert(gkey.as_slice(), g.encode())?;
                tx.remove(key(b"k/", &[id.as_bytes()]))?;
                Ok(idx)
            })
            .map_err(from_tx)?;
        self.durable()?;
        Ok(idx)
    }

    fn get_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        self.get(&key(b"g/", &[id.as_bytes()]))?.map(|v| StoredGrant::decode(&v)).transpose()
    }

    fn get_rekeys(&self, id: &GrantId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&key(b"k/", &[id.as_bytes()]))?.map(|v| v.to_vec()))
    }

    fn list_grants_by_patient(
        &self,
        patient: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_in(&key(b"gp/", &[patient.as_bytes()]), limit)
    }

    fn list_grants_by_doctor(
        &self,
        doctor: &PrincipalId,
        limit: usize,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_in(&key(b"gd/", &[doctor.as_bytes()]), limit)
    }

    fn append_log(&self, event: &LogAppend) -> Result<u64, StoreError> {
        let idx = self.db.transaction(|tx| tx_append(tx, event)).map_err(from_tx)?;
        self.durable()?;
        Ok(idx)
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        self.get(LOG_SIZE)?.map(|v| read_u64(&v)).transpose().map(|n| n.unwrap_or(0))
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let end = end.min(self.log_size()?);
        let mut out = Vec::new();
        for i in start..end {
            let v = self
                .get(&key(b"l/", &[&i.to_be_bytes()]))?
                .ok_or(StoreError::Corrupt("log entry missing"))?;
            out.push((i, v.to_vec()));
        }
        Ok(out)
    }

    fn log_indices_for(
        &self,
        subject: &PrincipalId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let prefix = key(b"ls/", &[subject.as_bytes()]);
        let start = key(&prefix, &[&from.to_be_bytes()]);
        let mut out = Vec::new();
        for item in self.db.range(start..).take(limit) {
            let (k, _) = item.map_err(backend)?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(read_u64(&k[prefix.len()..])?);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable()
    }
}
