//! The PostgreSQL implementation of [`StudyStore`].
//!
//! Every write takes the log head lock first (the "write lock" of the
//! trait, shared by every replica), then reads committed state, decides,
//! and writes with its log entries in the same transaction.

use medrelay_crypto::PrincipalId;
use postgres::Transaction;

use super::{append_in, big, decoded, limit, lock_head, unbig, PgStore, R};
use crate::store::study::{
    decide_charge, decide_commit, decide_completion, decide_helper_release, decide_upload, job_report_ids,
    BatchState, ChargeOutcome, CollectCheck, CommitOutcome, HelperReleaseOutcome, JobCommit, JobRecord,
    KeptResponse, ReportIdBytes, StoredStudy, StudyJob, StudyStore, Transform, UploadOutcome,
};
use crate::store::{LogAppend, StoreError};

fn seen(tx: &mut Transaction<'_>, study: &str, id: &ReportIdBytes) -> R<bool> {
    Ok(tx
        .query_opt("SELECT 1 FROM study_seen WHERE study = $1 AND id = $2", &[&study, &id.as_slice()])?
        .is_some())
}

fn read_batch(c: &mut impl postgres::GenericClient, study: &str, batch: u64) -> R<Option<BatchState>> {
    let row = c.query_opt(
        "SELECT value FROM study_batches WHERE study = $1 AND batch = $2",
        &[&study, &big(batch)?],
    )?;
    decoded(row, BatchState::decode)
}

fn write_batch(tx: &mut Transaction<'_>, study: &str, batch: u64, state: &BatchState) -> R<()> {
    tx.execute(
        "INSERT INTO study_batches (study, batch, value) VALUES ($1, $2, $3) \
         ON CONFLICT (study, batch) DO UPDATE SET value = EXCLUDED.value",
        &[&study, &big(batch)?, &state.encode()],
    )?;
    Ok(())
}

fn open_batch_in(c: &mut impl postgres::GenericClient, study: &str) -> R<u64> {
    let row = c.query_opt("SELECT batch FROM study_open_batch WHERE study = $1", &[&study])?;
    Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.map(unbig).transpose()?.unwrap_or(0))
}

impl PgStore {
    /// Under the log head lock, in one transaction: `f` reads, decides and
    /// writes; its log events are appended with `append`.
    fn study_tx<T: Send>(
        &self,
        f: impl Fn(
                &mut Transaction<'_>,
                &mut dyn FnMut(&mut Transaction<'_>, &[&LogAppend]) -> R<Vec<u64>>,
            ) -> R<T>
            + Send
            + Sync,
    ) -> Result<T, StoreError> {
        self.tx(|tx| {
            let size = lock_head(tx)?;
            let mut append = |tx: &mut Transaction<'_>, events: &[&LogAppend]| append_in(tx, size, events);
            f(tx, &mut append)
        })
    }
}

impl StudyStore for PgStore {
    fn put_study(&self, study: &StoredStudy, event: &LogAppend) -> Result<u64, StoreError> {
        self.study_tx(|tx, append| {
            if tx.query_opt("SELECT 1 FROM studies WHERE name = $1", &[&study.name])?.is_some() {
                return Err(StoreError::AlreadyExists("study").into());
            }
            let idx = append(tx, &[event])?[0];
            let mut s = study.clone();
            s.log_index = idx;
            tx.execute("INSERT INTO studies (name, value) VALUES ($1, $2)", &[&study.name, &s.encode()])?;
            Ok(idx)
        })
    }

    fn get_study(&self, name: &str) -> Result<Option<StoredStudy>, StoreError> {
        self.run(|c| {
            let row = c.query_opt("SELECT value FROM studies WHERE name = $1", &[&name])?;
            decoded(row, StoredStudy::decode)
        })
    }

    fn list_studies(&self, n: usize) -> Result<Vec<StoredStudy>, StoreError> {
        self.run(|c| {
            let rows =
                c.query("SELECT value FROM studies ORDER BY name COLLATE \"C\" LIMIT $1", &[&limit(n)])?;
            rows.iter().map(|r| Ok(StoredStudy::decode(r.try_get(0)?)?)).collect()
        })
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
        let p = patient.as_bytes().as_slice();
        self.study_tx(|tx, append| {
            let used = tx
                .query_opt("SELECT used FROM study_quota WHERE study = $1 AND patient = $2", &[&study, &p])?
                .map(|r| r.try_get::<_, i64>(0))
                .transpose()?
                .map(unbig)
                .transpose()?
                .unwrap_or(0);
            let d = decide_upload(quota, used, reports, refused_before, |id| seen(tx, study, id))?;
            let ev = event(d.accepted, d.refused)?;
            let idx = append(tx, &[&ev])?[0];
            for ((id, report), outcome) in reports.iter().zip(&d.outcomes) {
                if *outcome == UploadOutcome::Accepted {
                    tx.execute(
                        "INSERT INTO study_pending (study, id, report) VALUES ($1, $2, $3)",
                        &[&study, &id.as_slice(), report],
                    )?;
                    tx.execute(
                        "INSERT INTO study_seen (study, id) VALUES ($1, $2)",
                        &[&study, &id.as_slice()],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO study_quota (study, patient, used) VALUES ($1, $2, $3) \
                 ON CONFLICT (study, patient) DO UPDATE SET used = EXCLUDED.used",
                &[&study, &p, &big(d.used_after)?],
            )?;
            Ok((d.outcomes, idx))
        })
    }

    fn pending_reports(&self, study: &str, n: usize) -> Result<Vec<(ReportIdBytes, Vec<u8>)>, StoreError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT id, report FROM study_pending WHERE study = $1 ORDER BY id LIMIT $2",
                &[&study, &limit(n)],
            )?;
            rows.iter()
                .map(|r| {
                    let id: &[u8] = r.try_get(0)?;
                    let id: ReportIdBytes =
                        id.try_into().map_err(|_| StoreError::Corrupt("pending report key"))?;
                    Ok((id, r.try_get(1)?))
                })
                .collect()
        })
    }

    fn open_batch(&self, study: &str) -> Result<u64, StoreError> {
        self.run(|c| open_batch_in(c, study))
    }

    fn start_job(&self, study: &str, job: &StudyJob) -> Result<(), StoreError> {
        let record = JobRecord {
            job_id: job.job_id,
            batch: job.batch,
            ids: job.reports.iter().map(|(id, _)| *id).collect(),
        };
        let blob = record.encode();
        self.study_tx(|tx, _| {
            for id in &record.ids {
                let row = tx.query_opt(
                    "SELECT 1 FROM study_pending WHERE study = $1 AND id = $2",
                    &[&study, &id.as_slice()],
                )?;
                if row.is_none() {
                    return Err(StoreError::NotFound("pending report").into());
                }
            }
            tx.execute(
                "INSERT INTO study_jobs (study, job_id, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (study, job_id) DO UPDATE SET value = EXCLUDED.value",
                &[&study, &job.job_id.as_slice(), &blob],
            )?;
            Ok(())
        })
    }

    fn jobs(&self, study: &str) -> Result<Vec<StudyJob>, StoreError> {
        self.run(|c| {
            let rows = c.query("SELECT value FROM study_jobs WHERE study = $1 ORDER BY job_id", &[&study])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let record = JobRecord::decode(r.try_get(0)?)?;
                let mut reports = Vec::with_capacity(record.ids.len());
                for id in record.ids {
                    let row = c
                        .query_opt(
                            "SELECT report FROM study_pending WHERE study = $1 AND id = $2",
                            &[&study, &id.as_slice()],
                        )?
                        .ok_or(StoreError::Corrupt("a job's report is missing"))?;
                    reports.push((id, row.try_get(0)?));
                }
                out.push(StudyJob { job_id: record.job_id, batch: record.batch, reports });
            }
            Ok(out)
        })
    }

    fn seen_reports(&self, study: &str, ids: &[ReportIdBytes]) -> Result<Vec<bool>, StoreError> {
        self.run(|c| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row = c.query_opt(
                    "SELECT 1 FROM study_seen WHERE study = $1 AND id = $2",
                    &[&study, &id.as_slice()],
                )?;
                out.push(row.is_some());
            }
            Ok(out)
        })
    }

    fn job_response(&self, study: &str, job: &[u8; 16]) -> Result<Option<KeptResponse>, StoreError> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT hash, response FROM study_job_responses WHERE study = $1 AND job_id = $2",
                &[&study, &job.as_slice()],
            )?;
            let Some(row) = row else { return Ok(None) };
            let hash: &[u8] = row.try_get(0)?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt("job response"))?;
            Ok(Some((hash, row.try_get(1)?)))
        })
    }

    fn commit_job(
        &self,
        study: &str,
        commit: &JobCommit<'_>,
        empty: &[u8],
        merge: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<CommitOutcome, StoreError> {
        self.study_tx(|tx, append| {
            let stored = read_batch(tx, study, commit.batch)?;
            let state = match decide_commit(stored, commit, empty, merge, |id| seen(tx, study, id))? {
                Ok(state) => state,
                Err(outcome) => return Ok(outcome),
            };
            let idx = append(tx, &[event])?[0];
            write_batch(tx, study, commit.batch, &state)?;
            match commit.helper_response {
                Some((hash, response)) => {
                    for id in job_report_ids(commit) {
                        tx.execute(
                            "INSERT INTO study_seen (study, id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&study, &id.as_slice()],
                        )?;
                    }
                    tx.execute(
                        "INSERT INTO study_job_responses (study, job_id, hash, response) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (study, job_id) DO UPDATE SET hash = EXCLUDED.hash, response = EXCLUDED.response",
                        &[&study, &commit.job_id.as_slice(), &hash.as_slice(), &response],
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM study_jobs WHERE study = $1 AND job_id = $2",
                        &[&study, &commit.job_id.as_slice()],
                    )?;
                    for id in job_report_ids(commit) {
                        tx.execute(
                            "DELETE FROM study_pending WHERE study = $1 AND id = $2",
                            &[&study, &id.as_slice()],
                        )?;
                    }
                }
            }
            Ok(CommitOutcome::Committed(idx))
        })
    }

    fn get_batch(&self, study: &str, batch: u64) -> Result<Option<BatchState>, StoreError> {
        self.run(|c| read_batch(c, study, batch))
    }

    fn list_batches(&self, study: &str, n: usize) -> Result<Vec<(u64, BatchState)>, StoreError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT batch, value FROM study_batches WHERE study = $1 ORDER BY batch LIMIT $2",
                &[&study, &limit(n)],
            )?;
            rows.iter().map(|r| Ok((unbig(r.try_get(0)?)?, BatchState::decode(r.try_get(1)?)?))).collect()
        })
    }

    fn charge_release(
        &self,
        study: &str,
        batch: u64,
        min_reports: u64,
        event: &(dyn Fn(u64) -> Result<LogAppend, StoreError> + Sync),
    ) -> Result<ChargeOutcome, StoreError> {
        self.study_tx(|tx, append| {
            let open = open_batch_in(tx, study)?;
            let state = if batch > open { None } else { read_batch(tx, study, batch)? };
            let mut s = match decide_charge(open, batch, state, min_reports) {
                Ok(s) => s,
                Err(outcome) => return Ok(outcome),
            };
            let ev = event(s.reports)?;
            s.release_log_index = append(tx, &[&ev])?[0];
            write_batch(tx, study, batch, &s)?;
            tx.execute(
                "INSERT INTO study_open_batch (study, batch) VALUES ($1, $2) \
                 ON CONFLICT (study) DO UPDATE SET batch = EXCLUDED.batch",
                &[&study, &big(batch + 1)?],
            )?;
            Ok(ChargeOutcome::Charged(s))
        })
    }

    fn complete_release(&self, study: &str, batch: u64, release: &[u8]) -> Result<BatchState, StoreError> {
        self.study_tx(|tx, _| {
            let s = decide_completion(read_batch(tx, study, batch)?, release)?;
            write_batch(tx, study, batch, &s)?;
            Ok(s)
        })
    }

    fn helper_release(
        &self,
        study: &str,
        check: &CollectCheck,
        noisy: &Transform<'_>,
        event: &LogAppend,
    ) -> Result<HelperReleaseOutcome, StoreError> {
        let batch = check.batch;
        self.study_tx(|tx, append| {
            let mut s = match decide_helper_release(read_batch(tx, study, batch)?, check, noisy)? {
                Ok(s) => s,
                Err(outcome) => return Ok(outcome),
            };
            s.release_log_index = append(tx, &[event])?[0];
            write_batch(tx, study, batch, &s)?;
            Ok(HelperReleaseOutcome::Released(s.release))
        })
    }
}
