//! Test tooling (feature `test-util`, never in a release build): reports a
//! dishonest client could send, to show that the aggregators refuse them.
//!
//! [`seal_out_of_range_report`] shards a measurement whose stratum count is
//! 2 — outside the bits group's range `0..=1` — with a *correct* Prio3
//! proof of that out-of-range encoding: every length and every ciphertext is
//! right, only the validity circuit's range check fails. It uses `prio`'s
//! own `SumVec` circuit with the encoder's range check skipped, under the
//! same algorithm id and context, so the shares are byte-compatible with an
//! honest report's.

use prio::codec::Encode;
use prio::field::Field128;
use prio::flp::gadgets::{Mul, ParallelSum};
use prio::flp::types::SumVec;
use prio::flp::{Flp, FlpError, Gadget, Type};
use prio::vdaf::prio3::{optimal_chunk_length, Prio3};
use prio::vdaf::xof::XofTurboShake128;
use prio::vdaf::Client;
use rand_core::{CryptoRng, RngCore};

use medrelay_crypto::domain;

use crate::study::encoding::Group;
use crate::study::error::StudyError;
use crate::study::report::{Report, ReportId, ReportSealer};
use crate::study::vdaf::{frame, REPORT_ID_LEN};
use crate::summary::Summary;

type Inner = SumVec<Field128, ParallelSum<Field128, Mul>>;

/// `SumVec` whose encoder does not check the range: a value above the
/// maximum is encoded as the maximum with its lowest "bit" raised by the
/// excess, which the validity circuit rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unchecked {
    inner: Inner,
    max: u128,
}

impl Flp for Unchecked {
    type Field = Field128;
    fn gadget(&self) -> Vec<Box<dyn Gadget<Field128>>> {
        self.inner.gadget()
    }
    fn num_gadgets(&self) -> usize {
        self.inner.num_gadgets()
    }
    fn valid(
        &self,
        g: &mut Vec<Box<dyn Gadget<Field128>>>,
        input: &[Field128],
        joint_rand: &[Field128],
        num_shares: usize,
    ) -> Result<Vec<Field128>, FlpError> {
        self.inner.valid(g, input, joint_rand, num_shares)
    }
    fn input_len(&self) -> usize {
        self.inner.input_len()
    }
    fn proof_len(&self) -> usize {
        self.inner.proof_len()
    }
    fn verifier_len(&self) -> usize {
        self.inner.verifier_len()
    }
    fn joint_rand_len(&self) -> usize {
        self.inner.joint_rand_len()
    }
    fn eval_output_len(&self) -> usize {
        self.inner.eval_output_len()
    }
    fn prove_rand_len(&self) -> usize {
        self.inner.prove_rand_len()
    }
}

impl Type for Unchecked {
    type Measurement = Vec<u128>;
    type AggregateResult = Vec<u128>;
    fn encode_measurement(&self, m: &Vec<u128>) -> Result<Vec<Field128>, FlpError> {
        let clamped: Vec<u128> = m.iter().map(|x| (*x).min(self.max)).collect();
        let mut out = self.inner.encode_measurement(&clamped)?;
        let bits = out.len() / m.len().max(1);
        for (i, x) in m.iter().enumerate() {
            if *x > self.max {
                out[i * bits] += Field128::from(*x - self.max);
            }
        }
        Ok(out)
    }
    fn truncate(&self, input: Vec<Field128>) -> Result<Vec<Field128>, FlpError> {
        self.inner.truncate(input)
    }
    fn decode_result(&self, data: &[Field128], n: usize) -> Result<Vec<u128>, FlpError> {
        self.inner.decode_result(data, n)
    }
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }
}

/// Seals `summary`'s report with its stratum count set to 2 (out of the
/// bits group's range) and an otherwise honest proof.
pub fn seal_out_of_range_report<R: RngCore + CryptoRng>(
    sealer: &ReportSealer,
    rng: &mut R,
    summary: &Summary,
    now: u64,
) -> Result<Report, StudyError> {
    let e = sealer.encoding();
    let mut m = e.encode(summary)?;
    let bits = &mut m.groups[Group::Bits.index()];
    let at = bits.iter().position(|x| *x == 1).ok_or(StudyError::Report("no count coordinate"))?;
    bits[at] = 2;
    let mut id = [0u8; REPORT_ID_LEN];
    rng.fill_bytes(&mut id);
    let err = |e: &dyn std::fmt::Display| StudyError::Vdaf(e.to_string());
    let (mut public, mut leader, mut helper) = (Vec::new(), Vec::new(), Vec::new());
    for g in Group::ALL {
        let len = e.group_len(g);
        if len == 0 {
            continue;
        }
        let max = e.group_max(g);
        let nbits = usize::try_from(max.ilog2() + 1).map_err(|x| err(&x))?;
        let inner = Inner::new(max, len, optimal_chunk_length(len * nbits)).map_err(|x| err(&x))?;
        let vdaf: Prio3<Unchecked, XofTurboShake128, 32> =
            Prio3::new(2, 1, 0x0000_0003, Unchecked { inner, max }).map_err(|x| err(&x))?;
        let mut ctx = domain::PRIO3_STUDY_CONTEXT.to_vec();
        ctx.extend_from_slice(e.study_sha256());
        ctx.push(u8::try_from(g.index()).map_err(|x| err(&x))?);
        let (p, shares) = vdaf.shard(&ctx, &m.groups[g.index()], &id).map_err(|x| err(&x))?;
        public.push(p.get_encoded().map_err(|x| err(&x))?);
        leader.push(shares[0].get_encoded().map_err(|x| err(&x))?);
        helper.push(shares[1].get_encoded().map_err(|x| err(&x))?);
    }
    sealer.seal_shards(rng, ReportId(id), now, &frame(&public), &frame(&leader), &frame(&helper))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::study::encoding::tests::{encoding, summary};
    use crate::study::vdaf::{AggregatorRole, StudyVdaf};
    use crate::study::PrepError;
    use medrelay_crypto::hpke::HpkeSecretKey;

    #[test]
    fn an_out_of_range_count_with_an_honest_proof_fails_the_proof_and_nothing_else() {
        let mut rng = rand::rngs::OsRng;
        let leader = HpkeSecretKey::generate(&mut rng);
        let helper = HpkeSecretKey::generate(&mut rng);
        let mut def: serde_json::Value =
            serde_json::from_slice(&encoding().definition().canonical_json().unwrap()).unwrap();
        def["aggregators"]["leader"]["hpke_public_key"] =
            serde_json::json!(hex(leader.public_key().as_bytes()));
        def["aggregators"]["helper"]["hpke_public_key"] =
            serde_json::json!(hex(helper.public_key().as_bytes()));
        let def = crate::study::StudyDefinition::from_json(&serde_json::to_vec(&def).unwrap()).unwrap();
        let e = crate::study::StudyEncoding::new(&crate::Schema::health_basics(), &def).unwrap();
        let sealer = ReportSealer::new(e.clone()).unwrap();
        let vdaf = StudyVdaf::new(&e).unwrap();
        let s = summary(serde_json::json!({"systolic_bp": 120.0}));
        let key = [5u8; 32];
        let run = |r: &Report| -> Result<(), PrepError> {
            let l = r.open_share(AggregatorRole::Leader, &leader)?;
            let h = r.open_share(AggregatorRole::Helper, &helper)?;
            let (ls, lshare) =
                vdaf.verify_init(&key, AggregatorRole::Leader, &r.id.0, &r.public_share, &l)?;
            let (hs, hshare) =
                vdaf.verify_init(&key, AggregatorRole::Helper, &r.id.0, &r.public_share, &h)?;
            let msg = vdaf.verifier_message(&hs, &lshare, &hshare)?;
            vdaf.finish(hs, &msg)?;
            vdaf.finish(ls, &msg).map(drop)
        };
        let honest = sealer.seal(&mut rng, &s, 1_800_000_000).unwrap();
        assert_eq!(run(&honest), Ok(()));
        let bad = seal_out_of_range_report(&sealer, &mut rng, &s, 1_800_000_000).unwrap();
        // Same sizes as an honest report: only the proof can tell.
        assert_eq!(bad.encode().len(), honest.encode().len());
        assert_eq!(run(&bad), Err(PrepError::InvalidProof));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
