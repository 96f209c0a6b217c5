//! Reading a whole sled store as [`Row`]s (for `medrelay-server migrate`).
//! A child of the sled backend: the key layout stays in this module tree.

use std::collections::BTreeMap;

use medrelay_crypto::{CapsuleId, GrantId, PrincipalId};

use super::{backend, read_u64, subject_run_len, SledStore};
use crate::store::dump::Row;
use crate::store::{LogAppend, Store, StoreError};

fn corrupt(_: impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt("key layout")
}

/// `bytes` as an `N`-byte array.
fn arr<const N: usize>(bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(corrupt)
}

/// Splits `study/tail` (study names are `[a-z0-9_-]`).
fn study_and(rest: &[u8]) -> Result<(String, &[u8]), StoreError> {
    let slash = rest.iter().position(|b| *b == b'/').ok_or(StoreError::Corrupt("key layout"))?;
    let name = std::str::from_utf8(&rest[..slash]).map_err(corrupt)?.to_owned();
    Ok((name, &rest[slash + 1..]))
}

fn text(b: &[u8]) -> Result<String, StoreError> {
    Ok(std::str::from_utf8(b).map_err(corrupt)?.to_owned())
}

impl SledStore {
    /// Every stored item, passed to `sink` (the server must be stopped, as
    /// for any offline command). Log entries come in index order.
    pub fn export(&self, sink: &mut dyn FnMut(Row) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let scan = |prefix: &'static [u8]| {
            self.db.scan_prefix(prefix).map(move |item| {
                let (k, v) = item.map_err(backend)?;
                Ok::<_, StoreError>((k[prefix.len()..].to_vec(), v.to_vec()))
            })
        };
        for kv in scan(b"c/") {
            let (k, v) = kv?;
            sink(Row::Challenge(arr(&k)?, v))?;
        }
        for kv in scan(b"s/") {
            let (k, v) = kv?;
            sink(Row::Session(arr(&k)?, v))?;
        }
        for kv in scan(b"e/") {
            let (k, v) = kv?;
            sink(Row::Enrollment(arr(&k)?, v))?;
        }
        for kv in scan(b"p/") {
            sink(Row::Principal(self.segs.resolve(&kv?.1)?))?;
        }
        for kv in scan(b"su/") {
            let (k, v) = kv?;
            sink(Row::Suspension(PrincipalId::from_bytes(arr(&k)?), read_u64(&v)?))?;
        }
        for kv in scan(b"cp/") {
            let (k, v) = kv?;
            sink(Row::Capsule(CapsuleId::from_bytes(arr(&k)?), self.segs.resolve(&v)?))?;
        }
        for kv in scan(b"r/") {
            let (k, _) = kv?;
            // The values themselves, not their segment references.
            let (meta, env) = self.record_refs(&k)?.ok_or(StoreError::Corrupt("record reference"))?;
            sink(Row::Record(self.segs.read(&meta)?, self.segs.read(&env)?))?;
        }
        for kv in scan(b"g/") {
            sink(Row::Grant(kv?.1))?;
        }
        for kv in scan(b"k/") {
            let (k, v) = kv?;
            sink(Row::Rekeys(GrantId::from_bytes(arr(&k)?), self.segs.resolve(&v)?))?;
        }
        // After the grants (the copy's stored re-encryptions reference them).
        for kv in scan(b"rd/") {
            let (k, v) = kv?;
            if k.len() != 48 {
                return Err(StoreError::Corrupt("stored re-encryption key"));
            }
            sink(Row::Delivered(
                GrantId::from_bytes(arr(&k[..16])?),
                CapsuleId::from_bytes(arr(&k[16..])?),
                self.segs.resolve(&v)?,
            ))?;
        }
        // The log: subjects are an index by subject; regroup them by entry.
        let mut subjects: BTreeMap<u64, Vec<PrincipalId>> = BTreeMap::new();
        for kv in scan(b"ls/") {
            let (k, v) = kv?;
            if k.len() != 40 {
                return Err(StoreError::Corrupt("log subject key"));
            }
            let (subject, first) = (PrincipalId::from_bytes(arr(&k[..32])?), read_u64(&k[32..])?);
            for i in first..first.saturating_add(subject_run_len(&v)?) {
                subjects.entry(i).or_default().push(subject);
            }
        }
        let size = self.log_size()?;
        let mut at = 0;
        while at < size {
            let end = size.min(at + 1024);
            for (i, opening) in self.openings(at, end)? {
                let subjects = subjects.remove(&i).unwrap_or_default();
                sink(Row::LogEntry(i, LogAppend { opening, subjects }))?;
            }
            at = end;
        }
        for kv in scan(b"dsc/") {
            sink(Row::Schema(kv?.1))?;
        }
        for kv in scan(b"dsu/") {
            let (k, v) = kv?;
            let (schema, patient) = study_and(&k)?;
            sink(Row::Summary(schema, PrincipalId::from_bytes(arr(patient)?), v))?;
        }
        for kv in scan(b"dl/") {
            let (k, v) = kv?;
            if k.len() < 33 {
                return Err(StoreError::Corrupt("ledger key"));
            }
            sink(Row::Ledger(PrincipalId::from_bytes(arr(&k[..32])?), text(&k[32..])?, v))?;
        }
        for kv in scan(b"ysd/") {
            sink(Row::Study(kv?.1))?;
        }
        for kv in scan(b"yrp/") {
            let (k, v) = kv?;
            let (study, id) = study_and(&k)?;
            sink(Row::StudyPending(study, arr(id)?, v))?;
        }
        for kv in scan(b"yri/") {
            let (k, _) = kv?;
            let (study, id) = study_and(&k)?;
            sink(Row::StudySeen(study, arr(id)?))?;
        }
        for kv in scan(b"yq/") {
            let (k, v) = kv?;
            let (study, patient) = study_and(&k)?;
            sink(Row::StudyQuota(study, PrincipalId::from_bytes(arr(patient)?), read_u64(&v)?))?;
        }
        for kv in scan(b"ybc/") {
            let (k, v) = kv?;
            sink(Row::StudyOpenBatch(text(&k)?, read_u64(&v)?))?;
        }
        for kv in scan(b"yj/") {
            let (k, v) = kv?;
            let (study, job) = study_and(&k)?;
            sink(Row::StudyJob(study, arr(job)?, v))?;
        }
        for kv in scan(b"yhj/") {
            let (k, v) = kv?;
            let (study, job) = study_and(&k)?;
            if v.len() < 32 {
                return Err(StoreError::Corrupt("job response"));
            }
            sink(Row::StudyJobResponse(study, arr(job)?, arr(&v[..32])?, v[32..].to_vec()))?;
        }
        for kv in scan(b"yb/") {
            let (k, v) = kv?;
            let (study, batch) = study_and(&k)?;
            sink(Row::StudyBatch(study, read_u64(batch)?, v))?;
        }
        Ok(())
    }
}
