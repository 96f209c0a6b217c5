//! Shared fixtures for the hybrid PRE integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{
    encrypt_record, generate_batch, generate_reencryption_key, reencrypt_capsule, Batch, KeyClass,
    PatientPublicKeys, PatientSecretKeys, PreKeyPair, RecordCategory, RecordEnvelope, RecordHeader, RecordId,
    ReencryptedCapsule, ReencryptionKey, SensitivityLabel, SigningKey, Threshold, Timestamp,
    VerifiedReencryptionKey,
};
use rand_chacha::rand_core::SeedableRng;
pub(crate) use rand_chacha::ChaCha20Rng;

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub(crate) struct Patient {
    pub(crate) signing: SigningKey,
    pub(crate) keys: PatientSecretKeys,
    pub(crate) public: PatientPublicKeys,
}

impl Patient {
    pub(crate) fn new(rng: &mut ChaCha20Rng) -> Self {
        let signing = SigningKey::generate(rng);
        let keys = PatientSecretKeys::generate(rng);
        let public = keys.public_keys();
        Self { signing, keys, public }
    }

    pub(crate) fn header(&self, rng: &mut ChaCha20Rng, class: KeyClass) -> RecordHeader {
        let category = match class {
            KeyClass::General => RecordCategory::new("Condition", [], []),
            KeyClass::Laboratory => RecordCategory::new("Observation", ["laboratory".to_string()], []),
            KeyClass::Imaging => RecordCategory::new("ImagingStudy", [], []),
            KeyClass::Medications => RecordCategory::new("MedicationRequest", [], []),
            KeyClass::MentalHealth => RecordCategory::new("Condition", [], [SensitivityLabel::MentalHealth]),
            KeyClass::SubstanceUse => RecordCategory::new("Condition", [], [SensitivityLabel::SubstanceUse]),
            KeyClass::SexualHealth => RecordCategory::new("Condition", [], [SensitivityLabel::SexualHealth]),
            KeyClass::Genetics => RecordCategory::new("Observation", [], [SensitivityLabel::Genetics]),
        }
        .unwrap();
        let h = RecordHeader::new(
            RecordId::random(rng),
            self.signing.principal_id(),
            category,
            "application/fhir+json",
            Timestamp(1_700_000_000),
        )
        .unwrap();
        assert_eq!(h.key_class(), class);
        h
    }

    /// A new batch of `class`.
    pub(crate) fn batch(&self, rng: &mut ChaCha20Rng, class: KeyClass) -> Batch {
        generate_batch(rng, &self.signing, &self.public, class).unwrap()
    }

    /// One record of `batch`.
    pub(crate) fn seal_in(&self, rng: &mut ChaCha20Rng, batch: &Batch, body: &[u8]) -> RecordEnvelope {
        let header = self.header(rng, batch.key_class());
        encrypt_record(rng, &self.signing, batch, header, body).unwrap()
    }

    /// A new batch of `class` holding one record.
    pub(crate) fn seal(
        &self,
        rng: &mut ChaCha20Rng,
        class: KeyClass,
        body: &[u8],
    ) -> (Batch, RecordEnvelope) {
        let batch = self.batch(rng, class);
        let env = self.seal_in(rng, &batch, body);
        (batch, env)
    }

    /// A re-encryption key of `class` toward `doctor` with threshold `t`,
    /// as the patient client generates it (not verified yet).
    pub(crate) fn rekey(
        &self,
        rng: &mut ChaCha20Rng,
        class: KeyClass,
        doctor: &PreKeyPair,
        t: Threshold,
    ) -> ReencryptionKey {
        generate_reencryption_key(rng, &self.keys, self.signing.principal_id(), class, doctor.public_key(), t)
    }

    /// [`Patient::rekey`], verified against the patient's and the doctor's
    /// keys as the server verifies it.
    pub(crate) fn verified_rekey(
        &self,
        rng: &mut ChaCha20Rng,
        class: KeyClass,
        doctor: &PreKeyPair,
        t: Threshold,
    ) -> VerifiedReencryptionKey {
        self.rekey(rng, class, doctor, t)
            .verify(&self.signing.verifying_key(), &self.public, doctor.public_key())
            .map_err(|(e, _)| e)
            .unwrap()
    }

    /// A new batch of `class` holding one record, and its capsule
    /// re-encrypted toward `doctor` under a new verified key with
    /// threshold `t`: what a doctor receives for one granted record.
    pub(crate) fn seal_for(
        &self,
        rng: &mut ChaCha20Rng,
        class: KeyClass,
        body: &[u8],
        doctor: &PreKeyPair,
        t: Threshold,
    ) -> Delegated {
        let (batch, env) = self.seal(rng, class, body);
        let rk = self.verified_rekey(rng, class, doctor, t);
        let rc = reencrypt_capsule(rng, &rk, &self.signing.verifying_key(), batch.capsule()).unwrap();
        Delegated { batch, env, rk, rc }
    }
}

/// One sealed record delegated to a doctor ([`Patient::seal_for`]).
pub(crate) struct Delegated {
    pub(crate) batch: Batch,
    pub(crate) env: RecordEnvelope,
    pub(crate) rk: VerifiedReencryptionKey,
    pub(crate) rc: ReencryptedCapsule,
}

pub(crate) fn doctor(rng: &mut ChaCha20Rng) -> PreKeyPair {
    PreKeyPair::generate(rng)
}

/// A sample of prefix lengths: every length up to 600, then a stride.
pub(crate) fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let stride = (len / 200).max(1);
    (0..len.min(600)).chain((600..len).step_by(stride)).chain(len.saturating_sub(64)..len)
}
