//! The leader↔helper messages (binary, versioned, decoded with limits).
//!
//! - `PUT /v1/aggregator/studies/{study}/jobs/{job}`: [`JobRequest`] →
//!   [`JobResponse`]. The leader sends, per report, what the helper needs to
//!   prepare it (its sealed share, the public share) and the leader's
//!   verifier share; the helper answers, per report, the verifier message
//!   or why it rejected the report. Retrying the same job gets the same
//!   answer; a different request under a used job id is refused.
//! - `POST /v1/aggregator/studies/{study}/batches/{batch}/collect`:
//!   [`CollectRequest`] → [`CollectResponse`], the helper's noisy aggregate
//!   share of a batch whose report count and checksum it agrees with.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::hpke::HPKE_ENC_LEN;
use medrelay_crypto::DecodeError;
use medrelay_dp::study::{PrepError, MAX_PUBLIC_SHARE_BYTES, MAX_SHARE_CIPHERTEXT_BYTES};

use crate::store::study::MAX_JOB_REPORTS;

/// Largest job request body.
pub(crate) const MAX_JOB_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest verifier share or message of one report.
const MAX_VERIFIER_BYTES: usize = 64 * 1024;
/// Largest collect answer (an aggregate share).
pub(crate) const MAX_COLLECT_BYTES: usize = 4 * 1024 * 1024;

/// One report in a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobReport {
    pub(crate) id: [u8; 16],
    pub(crate) time: u64,
    pub(crate) public_share: Vec<u8>,
    pub(crate) helper_enc: [u8; HPKE_ENC_LEN],
    pub(crate) helper_ciphertext: Vec<u8>,
    pub(crate) leader_verifier: Vec<u8>,
}

/// A preparation job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRequest {
    pub(crate) study: String,
    pub(crate) study_sha256: [u8; 32],
    pub(crate) job_id: [u8; 16],
    pub(crate) batch: u64,
    pub(crate) reports: Vec<JobReport>,
}

impl JobRequest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .reports
            .iter()
            .map(|r| 96 + r.public_share.len() + r.helper_ciphertext.len() + r.leader_verifier.len())
            .sum();
        let mut e = Encoder::with_capacity(b"MRAJ", 1, 128 + size);
        e.str(&self.study).fixed(&self.study_sha256).fixed(&self.job_id).u64(self.batch);
        e.u32(u32::try_from(self.reports.len()).unwrap_or(u32::MAX));
        for r in &self.reports {
            e.fixed(&r.id)
                .u64(r.time)
                .bytes(&r.public_share)
                .fixed(&r.helper_enc)
                .bytes(&r.helper_ciphertext)
                .bytes(&r.leader_verifier);
        }
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(b, b"MRAJ", &[1], MAX_JOB_BODY_BYTES)?;
        let study = d.str(64)?.to_owned();
        let study_sha256 = d.array()?;
        let job_id = d.array()?;
        let batch = d.u64()?;
        let n = usize::try_from(d.u32()?).map_err(|_| DecodeError::Invalid("job size"))?;
        if n == 0 || n > MAX_JOB_REPORTS {
            return Err(DecodeError::Invalid("job size"));
        }
        let mut reports = Vec::with_capacity(n);
        for _ in 0..n {
            reports.push(JobReport {
                id: d.array()?,
                time: d.u64()?,
                public_share: d.bytes(MAX_PUBLIC_SHARE_BYTES)?.to_vec(),
                helper_enc: d.array()?,
                helper_ciphertext: d.bytes(MAX_SHARE_CIPHERTEXT_BYTES)?.to_vec(),
                leader_verifier: d.bytes(MAX_VERIFIER_BYTES)?.to_vec(),
            });
        }
        d.finish()?;
        Ok(Self { study, study_sha256, job_id, batch, reports })
    }
}

/// The helper's answer for one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JobResult {
    /// Prepared: the verifier message the leader finishes with.
    Continue(Vec<u8>),
    /// Rejected, and why.
    Reject(PrepError),
}

/// The helper's answer to a job, in the request's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobResponse {
    pub(crate) job_id: [u8; 16],
    pub(crate) results: Vec<([u8; 16], JobResult)>,
}

impl JobResponse {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MRAR", 1);
        e.fixed(&self.job_id).u32(u32::try_from(self.results.len()).unwrap_or(u32::MAX));
        for (id, r) in &self.results {
            e.fixed(id);
            match r {
                JobResult::Continue(msg) => e.u8(0).bytes(msg),
                JobResult::Reject(why) => e.u8(why.byte()),
            };
        }
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(b, b"MRAR", &[1], MAX_JOB_REPORTS * (MAX_VERIFIER_BYTES + 32) + 64)?;
        let job_id = d.array()?;
        let n = usize::try_from(d.u32()?).map_err(|_| DecodeError::Invalid("job size"))?;
        if n > MAX_JOB_REPORTS {
            return Err(DecodeError::Invalid("job size"));
        }
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            let id = d.array()?;
            let r = match d.u8()? {
                0 => JobResult::Continue(d.bytes(MAX_VERIFIER_BYTES)?.to_vec()),
                b => JobResult::Reject(
                    PrepError::from_byte(b).ok_or(DecodeError::Invalid("rejection reason"))?,
                ),
            };
            results.push((id, r));
        }
        d.finish()?;
        Ok(Self { job_id, results })
    }
}

/// The leader asks for the helper's noisy share of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CollectRequest {
    pub(crate) study: String,
    pub(crate) study_sha256: [u8; 32],
    pub(crate) batch: u64,
    pub(crate) reports: u64,
    pub(crate) checksum: [u8; 32],
}

impl CollectRequest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MRCQ", 1);
        e.str(&self.study).fixed(&self.study_sha256).u64(self.batch).u64(self.reports).fixed(&self.checksum);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(b, b"MRCQ", &[1], 256)?;
        let r = Self {
            study: d.str(64)?.to_owned(),
            study_sha256: d.array()?,
            batch: d.u64()?,
            reports: d.u64()?,
            checksum: d.array()?,
        };
        d.finish()?;
        Ok(r)
    }
}

/// The helper's noisy aggregate share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CollectResponse {
    pub(crate) batch: u64,
    pub(crate) reports: u64,
    pub(crate) share: Vec<u8>,
}

impl CollectResponse {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MRCR", 1, 32 + self.share.len());
        e.u64(self.batch).u64(self.reports).bytes(&self.share);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(b, b"MRCR", &[1], MAX_COLLECT_BYTES + 64)?;
        let r = Self { batch: d.u64()?, reports: d.u64()?, share: d.bytes(MAX_COLLECT_BYTES)?.to_vec() };
        d.finish()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_truncation() {
        let job = JobRequest {
            study: "s".into(),
            study_sha256: [1; 32],
            job_id: [2; 16],
            batch: 3,
            reports: vec![JobReport {
                id: [4; 16],
                time: 3600,
                public_share: vec![5; 8],
                helper_enc: [6; 32],
                helper_ciphertext: vec![7; 20],
                leader_verifier: vec![8; 12],
            }],
        };
        let resp = JobResponse {
            job_id: [2; 16],
            results: vec![
                ([4; 16], JobResult::Continue(vec![1, 2])),
                ([5; 16], JobResult::Reject(PrepError::InvalidProof)),
            ],
        };
        let cq = CollectRequest {
            study: "s".into(),
            study_sha256: [1; 32],
            batch: 3,
            reports: 9,
            checksum: [7; 32],
        };
        let cr = CollectResponse { batch: 3, reports: 9, share: vec![1; 40] };
        assert_eq!(JobRequest::decode(&job.encode()).unwrap(), job);
        assert_eq!(JobResponse::decode(&resp.encode()).unwrap(), resp);
        assert_eq!(CollectRequest::decode(&cq.encode()).unwrap(), cq);
        assert_eq!(CollectResponse::decode(&cr.encode()).unwrap(), cr);
        type Check = fn(&[u8]) -> bool;
        let cases: [(Vec<u8>, Check); 4] = [
            (job.encode(), |b| JobRequest::decode(b).is_ok()),
            (resp.encode(), |b| JobResponse::decode(b).is_ok()),
            (cq.encode(), |b| CollectRequest::decode(b).is_ok()),
            (cr.encode(), |b| CollectResponse::decode(b).is_ok()),
        ];
        for (blob, ok) in cases {
            for n in 0..blob.len() {
                assert!(!ok(&blob[..n]), "prefix {n}");
            }
            assert!(!ok(&[blob.clone(), vec![0]].concat()));
        }
        let mut empty = job.clone();
        empty.reports.clear();
        assert!(JobRequest::decode(&empty.encode()).is_err(), "an empty job is refused");
    }
}
