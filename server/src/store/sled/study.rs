//! The sled implementation of [`StudyStore`] (a child of the sled backend:
//! only this file and its parent touch sled).
//!
//! Keys, under the same single tree (study names are `[a-z0-9_-]`, so `/`
//! ends a name): `ysd/{study}` definition, `yrp/{study}/{id}` pending
//! report (leader), `yri/{study}/{id}` replay marker, `yq/{study}/{patient}`
//! reports per patient (leader), `ybc/{study}` open batch (leader),
//! `yj/{study}/{job}` started job (leader), `yhj/{study}/{job}` job response
//! (helper), `yb/{study}/{batch}` batch state.
//!
//! Decisions that depend on stored state are taken under the append lock
//! that every study write holds, from committed state, and the writes and
//! log entries they lead to commit in one transaction ([`SledStore::decide_logged`]).

use medrelay_crypto::PrincipalId;
use sled::transaction::TransactionalTree;

use super::{abort, backend, from_tx, key, read_u64, tx_apply_log, SledStore, TxResult};
use crate::store::study::{
    decide_charge, decide_commit, decide_completion, decide_helper_release, decide_upload, job_report_ids,
    BatchState, ChargeOutcome, CollectCheck, CommitOutcome, HelperReleaseOutcome, JobCommit, JobRecord,
    KeptResponse, ReportIdBytes, StoredStudy, StudyJob, StudyStore, Transform, UploadOutcome,
};
use crate::store::{LogAppend, StoreError};

fn study_key(name: &str) -> Vec<u8> {
    key(b"ysd/", &[name.as_bytes()])
}
fn prefix(p: &[u8], study: &str) -> Vec<u8> {
    key(p, &[study.as_bytes(), b"/"])
}
fn pending_key(study: &str, id: &ReportIdBytes) -> Vec<u8> {
    key(&prefix(b"yrp/", study), &[id])
}
fn seen_key(study: &str, id: &ReportIdBytes) -> Vec<u8> {
    key(&prefix(b"yri/", study), &[id])
}
fn quota_key(study: &str, patient: &PrincipalId) -> Vec<u8> {
    key(&prefix(b"yq/", study), &[patient.as_bytes()])
}
fn open_batch_key(study: &str) -> Vec<u8> {
    key(b"ybc/", &[study.as_bytes()])
}
fn job_key(study: &str, job: &[u8; 16]) -> Vec<u8> {
    key(&prefix(b"yj/", study), &[job])
}
fn job_response_key(study: &str, job: &[u8; 16]) -> Vec<u8> {
    key(&prefix(b"yhj/", study), &[job])
}
fn batch_key(study: &str, batch: u64) -> Vec<u8> {
    key(&prefix(b"yb/", study), &[&batch.to_be_bytes()])
}

/// What a decision under the lock leads to.
enum Decided<P, T> {
    /// Nothing to write; return this.
    Skip(T),
    /// Append these events and apply this plan.
    Write(Vec<LogAppend>, P),
}

impl SledStore {
    /// Under the append lock: `decide` reads committed state and decides;
    /// if it writes, its events and `apply`'s changes commit in one
    /// transaction, durable before this returns.
    fn decide_logged<P, T>(
        &self,
        decide: impl FnOnce(&sled::Db) -> Result<Decided<P, T>, StoreError>,
        apply: impl Fn(&TransactionalTree, &P, &[u64]) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let gate = self.gate_read()?;
        let guard = self.lock()?;
        let (events, data) = match decide(&self.db)? {
            Decided::Skip(t) => return Ok(t),
            Decided::Write(events, data) => (events, data),
        };
        let refs: Vec<&LogAppend> = events.iter().collect();
        let plan = self.plan(&gate, &refs)?;
        let out = self
            .db
            .transaction(|tx| {
                let idxs = tx_apply_log(tx, &plan, &refs)?;
                apply(tx, &data, &idxs)
            })
            .map_err(from_tx)?;
        drop(guard);
        self.durable()?;
        Ok(out)
    }

    fn read_batch(db: &sled::Db, study: &str, batch: u64) -> Result<Option<BatchState>, StoreError> {
        db.get(batch_key(study, batch)).map_err(backend)?.map(|v| BatchState::decode(&v)).transpose()
    }
}

impl StudyStore for SledStore {
    fn put_study(&self, study: &StoredStudy, event: &LogAppend) -> Result<u64, StoreError> {
        let k = study_key(&study.name);
        self.logged(&[event], |tx, idxs| {
            if tx.get(&k)?.is_some() {
                return abort(StoreError::AlreadyExists("study"));
            }
            let mut s = study.clone();
            s.log_index = idxs[0];
            tx.insert(k.as_slice(), s.encode())?;
            Ok(idxs[0])
        })
    }

    fn get_study(&self, name: &str) -> Result<Option<StoredStudy>, StoreError> {
        self.get(&study_key(name))?.map(|v| StoredStudy::decode(&v)).transpose()
    }

    fn list_studies(&self, limit: usize) -> Result<Vec<StoredStudy>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"ysd/").take(limit) {
            let (_, v) = item.map_err(backend)?;
            out.push(StoredStudy::decode(&v)?);
        }
        Ok(out)
    }

    fn upload_reports(
        &self,
        study: &str,
        patient: &PrincipalId,
        quota: u32,
        reports: &[(ReportIdBytes, Vec<u8>)],
        refused_before: u32,
        event: &(dyn Fn(u32, u32) -> Result<LogAppend, StoreError> + Sync),
    ) -> Result<(Vec<UploadOutcome>, u64), StoreError> {
        let qk = quota_key(study, patient);
        self.decide_logged(
            |db| {
                let used = db.get(&qk).map_err(backend)?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0);
                let d = decide_upload(quota, used, reports, refused_before, |id| {
                    db.contains_key(seen_key(study, id)).map_err(backend)
                })?;
                let ev = event(d.accepted, d.refused)?;
                Ok(Decided::Write(vec![ev], (d.outcomes, d.used_after)))
            },
            |tx, (outcomes, used): &(Vec<UploadOutcome>, u64), idxs| {
                for ((id, report), outcome) in reports.iter().zip(outcomes) {
                    if *outcome == UploadOutcome::Accepted {
                        tx.insert(pending_key(study, id), report.as_slice())?;
                        tx.insert(seen_key(study, id), &[][..])?;
                    }
                }
                tx.insert(qk.as_slice(), &used.to_be_bytes()[..])?;
                Ok((outcomes.clone(), idxs[0]))
            },
        )
    }

    fn pending_reports(
        &self,
        study: &str,
        limit: usize,
    ) -> Result<Vec<(ReportIdBytes, Vec<u8>)>, StoreError> {
        let p = prefix(b"yrp/", study);
        let mut out = Vec::new();
        for item in self.db.scan_prefix(&p).take(limit) {
            let (k, v) = item.map_err(backend)?;
            let id: ReportIdBytes = k
                .get(p.len()..)
                .and_then(|t| t.try_into().ok())
                .ok_or(StoreError::Corrupt("pending report key"))?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    fn open_batch(&self, study: &str) -> Result<u64, StoreError> {
        self.get(&open_batch_key(study))?.map(|v| read_u64(&v)).transpose().map(|b| b.unwrap_or(0))
    }

    fn start_job(&self, study: &str, job: &StudyJob) -> Result<(), StoreError> {
        let jk = job_key(study, &job.job_id);
        let record = JobRecord {
            job_id: job.job_id,
            batch: job.batch,
            ids: job.reports.iter().map(|(id, _)| *id).collect(),
        };
        let blob = record.encode();
        self.decide_logged(
            |_| Ok(Decided::Write(Vec::new(), ())),
            |tx, (), _| {
                for id in &record.ids {
                    if tx.get(pending_key(study, id))?.is_none() {
                        return abort(StoreError::NotFound("pending report"));
                    }
                }
                tx.insert(jk.as_slice(), blob.as_slice())?;
                Ok(())
            },
        )
    }

    fn jobs(&self, study: &str) -> Result<Vec<StudyJob>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix(b"yj/", study)) {
            let (_, v) = item.map_err(backend)?;
            let record = JobRecord::decode(&v)?;
            let mut reports = Vec::with_capacity(record.ids.len());
            for id in record.ids {
                let bytes = self
                    .get(&pending_key(study, &id))?
                    .ok_or(StoreError::Corrupt("a job's report is missing"))?;
                reports.push((id, bytes.to_vec()));
            }
            out.push(StudyJob { job_id: record.job_id, batch: record.batch, reports });
        }
        Ok(out)
    }

    fn seen_reports(&self, study: &str, ids: &[ReportIdBytes]) -> Result<Vec<bool>, StoreError> {
        ids.iter().map(|id| self.db.contains_key(seen_key(study, id)).map_err(backend)).collect()
    }

    fn job_response(&self, study: &str, job: &[u8; 16]) -> Result<Option<KeptResponse>, StoreError> {
        let Some(v) = self.get(&job_response_key(study, job))? else { return Ok(None) };
        let hash: [u8; 32] =
            v.get(..32).and_then(|h| h.try_into().ok()).ok_or(StoreError::Corrupt("job response"))?;
        Ok(Some((hash, v[32..].to_vec())))
    }

    fn commit_job(
        &self,
        study: &str,
        commit: &JobCommit<'_>,
        empty: &[u8],
        merge: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<CommitOutcome, StoreError> {
        let bk = batch_key(study, commit.batch);
        self.decide_logged(
            |db| {
                let stored = Self::read_batch(db, study, commit.batch)?;
                let seen = |id: &ReportIdBytes| db.contains_key(seen_key(study, id)).map_err(backend);
                Ok(match decide_commit(stored, commit, empty, merge, seen)? {
                    Ok(state) => Decided::Write(vec![event.clone()], state.encode()),
                    Err(outcome) => Decided::Skip(outcome),
                })
            },
            |tx, blob: &Vec<u8>, idxs| {
                tx.insert(bk.as_slice(), blob.as_slice())?;
                match commit.helper_response {
                    Some((hash, response)) => {
                        for id in job_report_ids(commit) {
                            tx.insert(seen_key(study, id), &[][..])?;
                        }
                        let mut v = hash.to_vec();
                        v.extend_from_slice(response);
                        tx.insert(job_response_key(study, &commit.job_id), v)?;
                    }
                    None => {
                        tx.remove(job_key(study, &commit.job_id))?;
                        for id in job_report_ids(commit) {
                            tx.remove(pending_key(study, id))?;
                        }
                    }
                }
                Ok(CommitOutcome::Committed(idxs[0]))
            },
        )
    }

    fn get_batch(&self, study: &str, batch: u64) -> Result<Option<BatchState>, StoreError> {
        Self::read_batch(&self.db, study, batch)
    }

    fn list_batches(&self, study: &str, limit: usize) -> Result<Vec<(u64, BatchState)>, StoreError> {
        let p = prefix(b"yb/", study);
        let mut out = Vec::new();
        for item in self.db.scan_prefix(&p).take(limit) {
            let (k, v) = item.map_err(backend)?;
            let n = read_u64(k.get(p.len()..).ok_or(StoreError::Corrupt("batch key"))?)?;
            out.push((n, BatchState::decode(&v)?));
        }
        Ok(out)
    }

    fn charge_release(
        &self,
        study: &str,
        batch: u64,
        min_reports: u64,
        event: &(dyn Fn(u64) -> Result<LogAppend, StoreError> + Sync),
    ) -> Result<ChargeOutcome, StoreError> {
        let ok = open_batch_key(study);
        self.decide_logged(
            |db| {
                let open = db.get(&ok).map_err(backend)?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0);
                let state = if batch > open { None } else { Self::read_batch(db, study, batch)? };
                Ok(match decide_charge(open, batch, state, min_reports) {
                    Ok(s) => Decided::Write(vec![event(s.reports)?], s),
                    Err(outcome) => Decided::Skip(outcome),
                })
            },
            |tx, state: &BatchState, idxs| {
                let mut s = state.clone();
                s.release_log_index = idxs[0];
                tx.insert(batch_key(study, batch), s.encode())?;
                tx.insert(ok.as_slice(), &(batch + 1).to_be_bytes()[..])?;
                Ok(ChargeOutcome::Charged(s))
            },
        )
    }

    fn complete_release(&self, study: &str, batch: u64, release: &[u8]) -> Result<BatchState, StoreError> {
        let bk = batch_key(study, batch);
        self.decide_logged(
            |db| {
                let s = decide_completion(Self::read_batch(db, study, batch)?, release)?;
                Ok(Decided::Write(Vec::new(), s))
            },
            |tx, s: &BatchState, _| {
                tx.insert(bk.as_slice(), s.encode())?;
                Ok(s.clone())
            },
        )
    }

    fn helper_release(
        &self,
        study: &str,
        check: &CollectCheck,
        noisy: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<HelperReleaseOutcome, StoreError> {
        let bk = batch_key(study, check.batch);
        self.decide_logged(
            |db| {
                Ok(match decide_helper_release(Self::read_batch(db, study, check.batch)?, check, noisy)? {
                    Ok(s) => Decided::Write(vec![event.clone()], s),
                    Err(outcome) => Decided::Skip(outcome),
                })
            },
            |tx, s: &BatchState, idxs| {
                let mut s = s.clone();
                s.release_log_index = idxs[0];
                tx.insert(bk.as_slice(), s.encode())?;
                Ok(HelperReleaseOutcome::Released(s.release))
            },
        )
    }
}
