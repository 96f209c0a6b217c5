//! A study report: what a patient's client uploads to the leader.
//!
//! Layout (magic `MRSR`, version 1): report id (16 bytes, the Prio3
//! nonce), time (u64, Unix seconds rounded down to the hour), the study's
//! SHA-256, the public share, then for the leader and the helper an HPKE
//! ciphertext of its input share (encapsulated key, ciphertext). Each input
//! share is sealed to its aggregator's key from the study definition with
//! `info` = [`domain::HPKE_STUDY_SHARE`] ‖ role ‖ study hash and `aad` =
//! [`domain::STUDY_SHARE_AAD`] ‖ id ‖ time ‖ study hash ‖ public share, so a
//! share cannot be replayed under another report, study or aggregator.

use rand_core::{CryptoRng, RngCore};

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::hpke::{
    hpke_open, hpke_seal, HpkeCiphertext, HpkePublicKey, HpkeSecretKey, HPKE_ENC_LEN,
};
use medrelay_crypto::{domain, DecodeError};

use crate::study::definition::TIME_PRECISION_SECS;
use crate::study::encoding::StudyEncoding;
use crate::study::error::{PrepError, StudyError};
use crate::study::vdaf::{AggregatorRole, StudyVdaf, REPORT_ID_LEN};
use crate::summary::Summary;

const MAGIC: &[u8; 4] = b"MRSR";
const VERSION: u8 = 1;
/// Largest public share accepted.
pub const MAX_PUBLIC_SHARE_BYTES: usize = 4 * 1024;
/// Largest encrypted input share accepted.
pub const MAX_SHARE_CIPHERTEXT_BYTES: usize = 512 * 1024;
/// Largest encoded report accepted.
pub const MAX_REPORT_BYTES: usize = 2 * MAX_SHARE_CIPHERTEXT_BYTES + MAX_PUBLIC_SHARE_BYTES + 256;

/// A report id: 16 random bytes, the Prio3 nonce; replay protection keys on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportId(pub [u8; REPORT_ID_LEN]);

impl std::fmt::Display for ReportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for ReportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportId({self})")
    }
}

/// An encrypted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The report id.
    pub id: ReportId,
    /// Unix seconds, a multiple of [`TIME_PRECISION_SECS`].
    pub time: u64,
    /// SHA-256 of the study definition's canonical JSON.
    pub study_sha256: [u8; 32],
    /// The public share (framed per group).
    pub public_share: Vec<u8>,
    /// The leader's input share, sealed to the leader.
    pub leader_share: HpkeCiphertext,
    /// The helper's input share, sealed to the helper.
    pub helper_share: HpkeCiphertext,
}

fn info(role: AggregatorRole, study_sha256: &[u8; 32]) -> Vec<u8> {
    [domain::HPKE_STUDY_SHARE, b"/", role.name().as_bytes(), b"/", study_sha256].concat()
}

fn aad(id: &ReportId, time: u64, study_sha256: &[u8; 32], public_share: &[u8]) -> Vec<u8> {
    [domain::STUDY_SHARE_AAD, &id.0, &time.to_be_bytes(), study_sha256, public_share].concat()
}

impl Report {
    /// The versioned binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(
            MAGIC,
            VERSION,
            128 + self.public_share.len()
                + self.leader_share.ciphertext.len()
                + self.helper_share.ciphertext.len(),
        );
        e.fixed(&self.id.0)
            .u64(self.time)
            .fixed(&self.study_sha256)
            .bytes(&self.public_share)
            .fixed(&self.leader_share.enc)
            .bytes(&self.leader_share.ciphertext)
            .fixed(&self.helper_share.enc)
            .bytes(&self.helper_share.ciphertext);
        e.finish()
    }

    /// Decodes [`Report::encode`]'s output with size limits (truncated,
    /// trailing, oversized or wrong-version input refused).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], MAX_REPORT_BYTES)?;
        let id = ReportId(d.array()?);
        let time = d.u64()?;
        let study_sha256 = d.array()?;
        let public_share = d.bytes(MAX_PUBLIC_SHARE_BYTES)?.to_vec();
        let leader_share = HpkeCiphertext {
            enc: d.array::<HPKE_ENC_LEN>()?,
            ciphertext: d.bytes(MAX_SHARE_CIPHERTEXT_BYTES)?.to_vec(),
        };
        let helper_share = HpkeCiphertext {
            enc: d.array::<HPKE_ENC_LEN>()?,
            ciphertext: d.bytes(MAX_SHARE_CIPHERTEXT_BYTES)?.to_vec(),
        };
        d.finish()?;
        if time % TIME_PRECISION_SECS != 0 {
            return Err(DecodeError::Invalid("report time is not rounded to the hour"));
        }
        Ok(Self { id, time, study_sha256, public_share, leader_share, helper_share })
    }

    /// Opens the input share sealed to `role` with its key.
    pub fn open_share(
        &self,
        role: AggregatorRole,
        key: &HpkeSecretKey,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, PrepError> {
        let ct = match role {
            AggregatorRole::Leader => &self.leader_share,
            AggregatorRole::Helper => &self.helper_share,
        };
        hpke_open(
            key,
            &info(role, &self.study_sha256),
            &aad(&self.id, self.time, &self.study_sha256, &self.public_share),
            ct,
        )
        .map_err(|_| PrepError::DecryptFailed)
    }
}

/// Everything a client needs to seal reports for one study.
#[derive(Debug)]
pub struct ReportSealer {
    encoding: StudyEncoding,
    vdaf: StudyVdaf,
    leader: HpkePublicKey,
    helper: HpkePublicKey,
}

impl ReportSealer {
    /// From a checked encoding (the aggregator keys come from its definition).
    pub fn new(encoding: StudyEncoding) -> Result<Self, StudyError> {
        let keys = encoding.definition().aggregators();
        let key = |k: &crate::study::AggregatorKey| {
            HpkePublicKey::from_bytes(&k.public_key_bytes()?)
                .map_err(|_| StudyError::Report("aggregator HPKE key"))
        };
        let (leader, helper) = (key(&keys.leader)?, key(&keys.helper)?);
        let vdaf = StudyVdaf::new(&encoding)?;
        Ok(Self { encoding, vdaf, leader, helper })
    }

    /// The encoding.
    pub fn encoding(&self) -> &StudyEncoding {
        &self.encoding
    }

    /// The Prio3 instances.
    pub fn vdaf(&self) -> &StudyVdaf {
        &self.vdaf
    }

    /// Encodes, shards and seals one summary; `now` is Unix seconds (the
    /// report carries it rounded down to the hour).
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        summary: &Summary,
        now: u64,
    ) -> Result<Report, StudyError> {
        let m = self.encoding.encode(summary)?;
        self.seal_measurement(rng, &m, now)
    }

    /// Shards and seals an already encoded measurement.
    pub fn seal_measurement<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        m: &crate::study::Measurement,
        now: u64,
    ) -> Result<Report, StudyError> {
        let mut id = [0u8; REPORT_ID_LEN];
        rng.fill_bytes(&mut id);
        let id = ReportId(id);
        let shards = self.vdaf.shard(m, &id.0)?;
        self.seal_shards(rng, id, now, &shards.public_share, &shards.leader, &shards.helper)
    }

    /// Seals given shares into a report (also used by tests that build
    /// invalid shares on purpose).
    pub fn seal_shards<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        id: ReportId,
        now: u64,
        public_share: &[u8],
        leader: &[u8],
        helper: &[u8],
    ) -> Result<Report, StudyError> {
        let time = now - now % TIME_PRECISION_SECS;
        let sha = *self.encoding.study_sha256();
        let aad = aad(&id, time, &sha, public_share);
        let seal = |rng: &mut R, role, key: &HpkePublicKey, pt: &[u8]| {
            hpke_seal(rng, key, &info(role, &sha), &aad, pt).map_err(|_| StudyError::Report("HPKE seal"))
        };
        let leader_share = seal(rng, AggregatorRole::Leader, &self.leader, leader)?;
        let helper_share = seal(rng, AggregatorRole::Helper, &self.helper, helper)?;
        Ok(Report {
            id,
            time,
            study_sha256: sha,
            public_share: public_share.to_vec(),
            leader_share,
            helper_share,
        })
    }
}
