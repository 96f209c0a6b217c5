//! The HPKE suite medrelay's private studies use (DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256, AES-256-GCM): RFC 9180 `DeriveKeyPair`
//! known answers, and the key file round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::hpke::{hpke_open, hpke_seal, HpkePublicKey, HpkeSecretKey};

#[test]
fn derive_key_pair_matches_rfc9180_appendix_a1() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("data/hpke-rfc9180-a1-keys.json")).unwrap();
    let pairs = doc["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    for p in pairs {
        let hex = |k: &str| hex::decode(p[k].as_str().unwrap()).unwrap();
        let sk = HpkeSecretKey::derive(&hex("ikm"));
        // The stored secret is the RFC's skRm with X25519 clamping applied
        // (x25519-dalek keeps scalars clamped; the same Diffie-Hellman key).
        let mut clamped = hex("sk");
        clamped[0] &= 248;
        clamped[31] = (clamped[31] & 127) | 64;
        assert_eq!(sk.to_bytes().to_vec(), clamped);
        let reloaded = HpkeSecretKey::from_bytes(&hex("sk").try_into().unwrap()).unwrap();
        assert_eq!(reloaded.public_key().as_bytes().to_vec(), hex("pk"));
        assert_eq!(sk.public_key().as_bytes().to_vec(), hex("pk"));
        assert_eq!(HpkePublicKey::from_bytes(&hex("pk")).unwrap(), sk.public_key());
    }
}

#[test]
fn a_share_sealed_to_one_aggregator_opens_only_there() {
    let mut rng = rand::rngs::OsRng;
    let leader = HpkeSecretKey::generate(&mut rng);
    let helper = HpkeSecretKey::generate(&mut rng);
    let ct =
        hpke_seal(&mut rng, &helper.public_key(), b"medrelay study helper", b"report", b"share").unwrap();
    assert_eq!(&hpke_open(&helper, b"medrelay study helper", b"report", &ct).unwrap()[..], b"share");
    assert!(hpke_open(&leader, b"medrelay study helper", b"report", &ct).is_err());
    // Two seals of the same plaintext differ (fresh ephemeral key each time).
    let again =
        hpke_seal(&mut rng, &helper.public_key(), b"medrelay study helper", b"report", b"share").unwrap();
    assert_ne!(again.enc, ct.enc);
}
