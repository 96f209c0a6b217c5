//! The Prio3 side of a study: one `Prio3SumVec` per measurement [`Group`],
//! sharding on the client, preparation (proof verification) on the two
//! aggregators, aggregate shares with their DP noise, and unsharding.
//!
//! Everything crossing a process boundary is bytes in `prio`'s own
//! encodings (DAP's), framed per group, and decoded here with exact lengths;
//! a wrong length is [`PrepError::Malformed`], a failed proof
//! [`PrepError::InvalidProof`].
//!
//! Randomness: `prio` draws sharding randomness from `rand`'s thread-local
//! CSPRNG (seeded by the OS), the one place beside OpenDP's noise where a
//! pure medrelay crate does not take its RNG as a parameter: `prio` keeps
//! its deterministic sharding entry point for test vectors only.

use prio::codec::{Encode, ParameterizedDecode};
use prio::field::{Field128, FieldElementWithInteger};
use prio::vdaf::prio3::{
    optimal_chunk_length, Prio3InputShare, Prio3PublicShare, Prio3SumVec, Prio3VerifierMessage,
    Prio3VerifierShare, Prio3VerifyState,
};
use prio::vdaf::{
    Aggregatable, AggregateShare, Aggregator, Client, Collector, OutputShare, VerifyTransition,
};

use medrelay_crypto::domain;

use crate::study::encoding::{Group, Measurement, StudyEncoding};
use crate::study::error::{PrepError, StudyError};

/// Length of a report id (the Prio3 nonce).
pub const REPORT_ID_LEN: usize = 16;
/// Length of the verification key the two aggregators share per study.
pub const VERIFY_KEY_LEN: usize = 32;

type VerifyState = Prio3VerifyState<Field128, 32>;

/// Which aggregator: the leader (Prio3 aggregator 0) or the helper (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregatorRole {
    /// Receives uploads, drives preparation, answers analysts.
    Leader,
    /// Reachable only by the leader.
    Helper,
}

impl AggregatorRole {
    /// Prio3 aggregator id.
    pub fn agg_id(self) -> usize {
        match self {
            AggregatorRole::Leader => 0,
            AggregatorRole::Helper => 1,
        }
    }

    /// `leader` or `helper`.
    pub fn name(self) -> &'static str {
        match self {
            AggregatorRole::Leader => "leader",
            AggregatorRole::Helper => "helper",
        }
    }
}

struct GroupVdaf {
    group: Group,
    vdaf: Prio3SumVec,
    ctx: Vec<u8>,
}

/// The study's Prio3 instances (one per non-empty group).
pub struct StudyVdaf {
    groups: Vec<GroupVdaf>,
}

impl std::fmt::Debug for StudyVdaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudyVdaf")
            .field("groups", &self.groups.iter().map(|g| g.group).collect::<Vec<_>>())
            .finish()
    }
}

/// The shares of one measurement: a public share and an input share per
/// aggregator, each framed over the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    /// Public share (the joint-randomness parts), framed per group.
    pub public_share: Vec<u8>,
    /// The leader's input share, framed per group.
    pub leader: Vec<u8>,
    /// The helper's input share, framed per group.
    pub helper: Vec<u8>,
}

/// An aggregator's state between its first message and the verifier
/// message.
#[derive(Clone)]
pub struct PrepState(Vec<VerifyState>);

impl std::fmt::Debug for PrepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrepState(..)")
    }
}

/// A verified report's output shares (one per group).
#[derive(Clone)]
pub struct OutputShares(Vec<OutputShare<Field128>>);

impl std::fmt::Debug for OutputShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputShares(..)")
    }
}

/// One aggregator's share of a batch's sums (one field vector per group).
#[derive(Clone, PartialEq, Eq)]
pub struct AggregateShares(Vec<AggregateShare<Field128>>);

impl std::fmt::Debug for AggregateShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AggregateShares(..)")
    }
}

/// Frames byte strings: for each, a u32 big-endian length and the bytes.
pub(crate) fn frame(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Splits [`frame`]'s output into exactly `n` parts.
pub(crate) fn unframe(mut bytes: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let part = bytes.get(4..4 + len)?;
        out.push(part);
        bytes = &bytes[4 + len..];
    }
    bytes.is_empty().then_some(out)
}

fn vdaf_err(e: impl std::fmt::Display) -> StudyError {
    StudyError::Vdaf(e.to_string())
}

impl StudyVdaf {
    /// The Prio3 instances of `encoding`: for each non-empty group a
    /// `Prio3SumVec` (two aggregators, Field128) whose coordinates are
    /// proven to lie in `0..=group_max`, with an application context that
    /// binds the study's hash and the group.
    pub fn new(encoding: &StudyEncoding) -> Result<Self, StudyError> {
        let mut groups = Vec::new();
        for g in Group::ALL {
            let len = encoding.group_len(g);
            if len == 0 {
                continue;
            }
            let max = encoding.group_max(g);
            let bits = usize::try_from(max.ilog2() + 1).map_err(vdaf_err)?;
            let chunk = optimal_chunk_length(len * bits);
            let vdaf = Prio3SumVec::new_sum_vec(2, max, len, chunk).map_err(vdaf_err)?;
            let mut ctx = domain::PRIO3_STUDY_CONTEXT.to_vec();
            ctx.extend_from_slice(encoding.study_sha256());
            ctx.push(u8::try_from(g.index()).map_err(vdaf_err)?);
            groups.push(GroupVdaf { group: g, vdaf, ctx });
        }
        Ok(Self { groups })
    }

    /// Number of Prio3 instances.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Splits a measurement into shares (client side).
    pub fn shard(&self, m: &Measurement, report_id: &[u8; REPORT_ID_LEN]) -> Result<Shards, StudyError> {
        let (mut public, mut leader, mut helper) = (Vec::new(), Vec::new(), Vec::new());
        for g in &self.groups {
            let (p, shares) =
                g.vdaf.shard(&g.ctx, &m.groups[g.group.index()], report_id).map_err(vdaf_err)?;
            let [l, h]: [Prio3InputShare<Field128, 32>; 2] =
                shares.try_into().map_err(|_| StudyError::Vdaf("expected two input shares".into()))?;
            public.push(p.get_encoded().map_err(vdaf_err)?);
            leader.push(l.get_encoded().map_err(vdaf_err)?);
            helper.push(h.get_encoded().map_err(vdaf_err)?);
        }
        Ok(Shards { public_share: frame(&public), leader: frame(&leader), helper: frame(&helper) })
    }

    /// An aggregator's first step: decodes its input share and the public
    /// share (exact lengths), and returns its state and its verifier share
    /// (framed) for the other aggregator.
    pub fn verify_init(
        &self,
        verify_key: &[u8; VERIFY_KEY_LEN],
        role: AggregatorRole,
        report_id: &[u8; REPORT_ID_LEN],
        public_share: &[u8],
        input_share: &[u8],
    ) -> Result<(PrepState, Vec<u8>), PrepError> {
        let n = self.groups.len();
        let publics = unframe(public_share, n).ok_or(PrepError::Malformed)?;
        let inputs = unframe(input_share, n).ok_or(PrepError::Malformed)?;
        let mut states = Vec::with_capacity(n);
        let mut shares = Vec::with_capacity(n);
        for ((g, public), input) in self.groups.iter().zip(publics).zip(inputs) {
            let public = Prio3PublicShare::get_decoded_with_param(&g.vdaf, public)
                .map_err(|_| PrepError::Malformed)?;
            let input = Prio3InputShare::get_decoded_with_param(&(&g.vdaf, role.agg_id()), input)
                .map_err(|_| PrepError::Malformed)?;
            let (state, share) = g
                .vdaf
                .verify_init(verify_key, &g.ctx, role.agg_id(), &(), report_id, &public, &input)
                .map_err(|_| PrepError::InvalidProof)?;
            shares.push(share.get_encoded().map_err(|_| PrepError::Malformed)?);
            states.push(state);
        }
        Ok((PrepState(states), frame(&shares)))
    }

    /// Combines both aggregators' verifier shares into the verifier message
    /// (framed); fails with [`PrepError::InvalidProof`] if the validity
    /// proof does not verify. Run by the helper, with its own state to
    /// decode both shares.
    pub fn verifier_message(
        &self,
        state: &PrepState,
        leader_share: &[u8],
        helper_share: &[u8],
    ) -> Result<Vec<u8>, PrepError> {
        let n = self.groups.len();
        let ls = unframe(leader_share, n).ok_or(PrepError::Malformed)?;
        let hs = unframe(helper_share, n).ok_or(PrepError::Malformed)?;
        if state.0.len() != n {
            return Err(PrepError::Malformed);
        }
        let mut out = Vec::with_capacity(n);
        for (((g, st), l), h) in self.groups.iter().zip(&state.0).zip(ls).zip(hs) {
            let l = Prio3VerifierShare::get_decoded_with_param(st, l).map_err(|_| PrepError::Malformed)?;
            let h = Prio3VerifierShare::get_decoded_with_param(st, h).map_err(|_| PrepError::Malformed)?;
            let msg = g
                .vdaf
                .verifier_shares_to_message(&g.ctx, &(), [l, h])
                .map_err(|_| PrepError::InvalidProof)?;
            out.push(msg.get_encoded().map_err(|_| PrepError::Malformed)?);
        }
        Ok(frame(&out))
    }

    /// Finishes preparation with the verifier message: the output shares,
    /// or [`PrepError::InvalidProof`] (e.g. inconsistent joint randomness).
    pub fn finish(&self, state: PrepState, message: &[u8]) -> Result<OutputShares, PrepError> {
        let n = self.groups.len();
        let msgs = unframe(message, n).ok_or(PrepError::Malformed)?;
        if state.0.len() != n {
            return Err(PrepError::Malformed);
        }
        let mut out = Vec::with_capacity(n);
        for ((g, st), m) in self.groups.iter().zip(state.0).zip(msgs) {
            let msg: Prio3VerifierMessage<32> =
                Prio3VerifierMessage::get_decoded_with_param(&st, m).map_err(|_| PrepError::Malformed)?;
            match g.vdaf.verify_next(&g.ctx, st, msg).map_err(|_| PrepError::InvalidProof)? {
                VerifyTransition::Finish(share) => out.push(share),
                VerifyTransition::Continue(..) => return Err(PrepError::InvalidProof),
            }
        }
        Ok(OutputShares(out))
    }

    /// An empty aggregate share.
    pub fn aggregate_init(&self) -> AggregateShares {
        AggregateShares(self.groups.iter().map(|g| g.vdaf.aggregate_init(&())).collect())
    }

    /// Adds one report's output shares into `agg`.
    pub fn accumulate(&self, agg: &mut AggregateShares, out: &OutputShares) -> Result<(), StudyError> {
        if agg.0.len() != out.0.len() {
            return Err(StudyError::Release("output share groups"));
        }
        for (a, o) in agg.0.iter_mut().zip(&out.0) {
            a.accumulate(o).map_err(vdaf_err)?;
        }
        Ok(())
    }

    /// Adds aggregate share `b` into `a`.
    pub fn merge(&self, a: &mut AggregateShares, b: &AggregateShares) -> Result<(), StudyError> {
        if a.0.len() != b.0.len() {
            return Err(StudyError::Release("aggregate share groups"));
        }
        for (x, y) in a.0.iter_mut().zip(&b.0) {
            x.merge(y).map_err(vdaf_err)?;
        }
        Ok(())
    }

    /// Checks that an input share and a public share have this study's
    /// exact layout and lengths, without preparing them (the leader does
    /// this at upload, to refuse malformed reports at once).
    pub fn check_shares(
        &self,
        role: AggregatorRole,
        public_share: &[u8],
        input_share: &[u8],
    ) -> Result<(), PrepError> {
        let n = self.groups.len();
        let publics = unframe(public_share, n).ok_or(PrepError::Malformed)?;
        let inputs = unframe(input_share, n).ok_or(PrepError::Malformed)?;
        for ((g, public), input) in self.groups.iter().zip(publics).zip(inputs) {
            Prio3PublicShare::get_decoded_with_param(&g.vdaf, public).map_err(|_| PrepError::Malformed)?;
            Prio3InputShare::get_decoded_with_param(&(&g.vdaf, role.agg_id()), input)
                .map_err(|_| PrepError::Malformed)?;
        }
        Ok(())
    }

    /// Encodes an aggregate share for storage or the wire (framed).
    pub fn encode_aggregate(&self, agg: &AggregateShares) -> Result<Vec<u8>, StudyError> {
        let parts = agg.0.iter().map(|a| a.get_encoded().map_err(vdaf_err)).collect::<Result<Vec<_>, _>>()?;
        Ok(frame(&parts))
    }

    /// Decodes [`StudyVdaf::encode_aggregate`]'s output (exact lengths).
    pub fn decode_aggregate(&self, bytes: &[u8]) -> Result<AggregateShares, StudyError> {
        let parts =
            unframe(bytes, self.groups.len()).ok_or(StudyError::Release("aggregate share framing"))?;
        let mut out = Vec::with_capacity(parts.len());
        for (g, p) in self.groups.iter().zip(parts) {
            out.push(
                AggregateShare::get_decoded_with_param(&(&g.vdaf, &()), p)
                    .map_err(|_| StudyError::Release("aggregate share length"))?,
            );
        }
        Ok(AggregateShares(out))
    }

    /// Adds integer noise (one vector per group of [`Group::ALL`], empty
    /// groups included as empty vectors) to an aggregate share, in the field.
    pub fn add_noise(&self, agg: &mut AggregateShares, noise: &[Vec<i64>; 3]) -> Result<(), StudyError> {
        for (g, a) in self.groups.iter().zip(agg.0.iter_mut()) {
            let n = &noise[g.group.index()];
            if n.len() != a.as_ref().len() {
                return Err(StudyError::Release("noise length"));
            }
            let p = Field128::modulus();
            let field: Vec<Field128> = n
                .iter()
                .map(|x| {
                    let m = u128::from(x.unsigned_abs());
                    if *x >= 0 {
                        Field128::from(m)
                    } else {
                        Field128::from(p - m)
                    }
                })
                .collect();
            a.merge(&AggregateShare::from(field)).map_err(vdaf_err)?;
        }
        Ok(())
    }

    /// Sums the two aggregators' (noisy) shares into the released vectors:
    /// one per group of [`Group::ALL`] (empty groups empty), as signed
    /// integers (noise can make a sum negative).
    pub fn unshard(
        &self,
        leader: &AggregateShares,
        helper: &AggregateShares,
        reports: u64,
    ) -> Result<[Vec<i64>; 3], StudyError> {
        let mut out: [Vec<i64>; 3] = Default::default();
        let n = usize::try_from(reports).map_err(vdaf_err)?;
        if leader.0.len() != self.groups.len() || helper.0.len() != self.groups.len() {
            return Err(StudyError::Release("aggregate share groups"));
        }
        let p = Field128::modulus();
        for ((g, l), h) in self.groups.iter().zip(&leader.0).zip(&helper.0) {
            let sums = g.vdaf.unshard(&(), [l.clone(), h.clone()], n).map_err(vdaf_err)?;
            out[g.group.index()] = sums
                .into_iter()
                .map(|v| {
                    let signed = if v > p / 2 {
                        -i128::try_from(p - v).unwrap_or(i128::MAX)
                    } else {
                        i128::try_from(v).unwrap_or(i128::MAX)
                    };
                    i64::try_from(signed).map_err(|_| StudyError::Release("a released sum exceeds 64 bits"))
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(out)
    }
}

// Servers share these across worker threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StudyVdaf>();
    send_sync::<AggregateShares>();
    send_sync::<PrepState>();
    send_sync::<OutputShares>();
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::study::encoding::tests::{encoding, summary};
    use serde_json::json;

    fn prepare(
        v: &StudyVdaf,
        key: &[u8; 32],
        id: &[u8; 16],
        s: &Shards,
    ) -> Result<(OutputShares, OutputShares), PrepError> {
        let (ls, lshare) = v.verify_init(key, AggregatorRole::Leader, id, &s.public_share, &s.leader)?;
        let (hs, hshare) = v.verify_init(key, AggregatorRole::Helper, id, &s.public_share, &s.helper)?;
        let msg = v.verifier_message(&hs, &lshare, &hshare)?;
        let h = v.finish(hs, &msg)?;
        let l = v.finish(ls, &msg)?;
        Ok((l, h))
    }

    #[test]
    fn shares_prepare_aggregate_and_unshard_to_the_exact_sums() {
        let e = encoding();
        let v = StudyVdaf::new(&e).unwrap();
        assert_eq!(v.group_count(), 3);
        let key = [9u8; 32];
        let people = [
            json!({"diabetes": true, "systolic_bp": 120.0, "bmi": 25.0, "sex": "female"}),
            json!({"diabetes": true, "systolic_bp": 160.0, "bmi": 31.0, "sex": "male"}),
            json!({"diabetes": false, "systolic_bp": 100.0}),
        ];
        let (mut la, mut ha) = (v.aggregate_init(), v.aggregate_init());
        let mut expected: [Vec<i64>; 3] = Group::ALL.map(|g| vec![0i64; e.group_len(g)]);
        for (i, p) in people.iter().enumerate() {
            let m = e.encode(&summary(p.clone())).unwrap();
            for g in Group::ALL {
                for (x, y) in expected[g.index()].iter_mut().zip(&m.groups[g.index()]) {
                    *x += i64::try_from(*y).unwrap();
                }
            }
            let id = [u8::try_from(i).unwrap(); 16];
            let s = v.shard(&m, &id).unwrap();
            let (l, h) = prepare(&v, &key, &id, &s).unwrap();
            v.accumulate(&mut la, &l).unwrap();
            v.accumulate(&mut ha, &h).unwrap();
        }
        // Storage round trip.
        let la = v.decode_aggregate(&v.encode_aggregate(&la).unwrap()).unwrap();
        assert_eq!(v.unshard(&la, &ha, 3).unwrap(), expected);
        // Noise is added in the field and comes out signed.
        let mut noisy = la.clone();
        let mut noise: [Vec<i64>; 3] = Group::ALL.map(|g| vec![0i64; e.group_len(g)]);
        noise[0][0] = -5;
        noise[2][1] = 7;
        v.add_noise(&mut noisy, &noise).unwrap();
        let out = v.unshard(&noisy, &ha, 3).unwrap();
        assert_eq!(out[0][0], expected[0][0] - 5);
        assert_eq!(out[2][1], expected[2][1] + 7);
        assert!(v.decode_aggregate(&[0u8; 7]).is_err());
    }

    #[test]
    fn tampered_wrong_length_and_wrongly_keyed_shares_are_refused() {
        let e = encoding();
        let v = StudyVdaf::new(&e).unwrap();
        let key = [3u8; 32];
        let id = [1u8; 16];
        let m = e.encode(&summary(json!({"systolic_bp": 130.0, "bmi": 22.0}))).unwrap();
        let s = v.shard(&m, &id).unwrap();
        assert!(prepare(&v, &key, &id, &s).is_ok());
        // A truncated or extended share, a bad frame.
        let mut short = s.clone();
        short.leader.pop();
        assert_eq!(prepare(&v, &key, &id, &short).unwrap_err(), PrepError::Malformed);
        let mut long = s.clone();
        long.helper.push(0);
        assert_eq!(prepare(&v, &key, &id, &long).unwrap_err(), PrepError::Malformed);
        // A changed coordinate in the leader's measurement share: the proof
        // (or the joint randomness) no longer checks out.
        let mut bad = s.clone();
        let at = 4 + 5 * 16 + 15;
        bad.leader[at] ^= 0x01;
        assert_eq!(prepare(&v, &key, &id, &bad).unwrap_err(), PrepError::InvalidProof);
        // Another nonce than the one sharded with.
        assert_eq!(prepare(&v, &key, &[2u8; 16], &s).unwrap_err(), PrepError::InvalidProof);
    }

    #[test]
    fn frames_are_exact() {
        let f = frame(&[vec![1, 2], vec![], vec![3]]);
        assert_eq!(unframe(&f, 3).unwrap(), vec![&[1u8, 2][..], &[][..], &[3u8][..]]);
        assert!(unframe(&f, 2).is_none());
        assert!(unframe(&f, 4).is_none());
        assert!(unframe(&f[..f.len() - 1], 3).is_none());
    }
}
