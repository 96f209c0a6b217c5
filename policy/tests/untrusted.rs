//! Property tests: scope text round trips, and no parser panics on
//! arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{SensitivityLabel, SigningKey};
use medrelay_policy::{
    Checkpoint, Grant, LogEvent, LogSigner, LogVerifier, Principal, Revocation, Scope, SignedGrant,
    SignedRevocation,
};
use proptest::prelude::*;

const TYPES: [&str; 5] =
    ["Observation", "Condition", "MedicationRequest", "ImagingStudy", "DiagnosticReport"];
const CODES: [&str; 4] = ["laboratory", "vital-signs", "imaging", "social-history"];

fn scope_items() -> impl Strategy<Value = Vec<String>> {
    (
        proptest::collection::btree_map(0usize..5, proptest::collection::btree_set(0usize..4, 0..3), 1..5),
        proptest::collection::vec(0u8..3, 4),
    )
        .prop_map(|(entries, label_modes)| {
            let mut items = Vec::new();
            for (t, codes) in entries {
                if codes.is_empty() {
                    items.push(TYPES[t].to_string());
                }
                for c in codes {
                    items.push(format!("{}?category={}", TYPES[t], CODES[c]));
                }
            }
            for (l, mode) in SensitivityLabel::ALL.iter().zip(label_modes) {
                match mode {
                    1 => items.push(format!("sensitive:{l}")),
                    2 => items.push(format!("-sensitive:{l}")),
                    _ => {}
                }
            }
            items
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scope_text_round_trips(items in scope_items()) {
        let text = items.join(",");
        let scope: Scope = text.parse().unwrap();
        let canonical = scope.to_string();
        let again: Scope = canonical.parse().unwrap();
        prop_assert_eq!(&again, &scope);
        prop_assert_eq!(again.to_string(), canonical.clone());
        // Same items, so same length once normalised.
        prop_assert_eq!(canonical.len(), text.len());
        // Dropping any one item changes the scope or makes it invalid.
        for i in 0..items.len() {
            let mut fewer = items.clone();
            fewer.remove(i);
            if let Ok(s) = fewer.join(",").parse::<Scope>() {
                prop_assert_ne!(s, scope.clone());
            }
        }
    }

    #[test]
    fn scope_parser_never_panics(s in "[A-Za-z?=:,\\-. ]{0,80}") {
        let _ = Scope::parse(&s);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), magic in 0usize..7) {
        let mut b = bytes;
        let magics: [&[u8; 4]; 7] = [b"MRGT", b"MRSG", b"MRRV", b"MRSR", b"MRPR", b"MRLE", b"XXXX"];
        if b.len() >= 5 {
            b[..4].copy_from_slice(magics[magic]);
            b[4] = 1;
        }
        let _ = Grant::from_bytes(&b);
        let _ = SignedGrant::from_bytes(&b);
        let _ = Revocation::from_bytes(&b);
        let _ = SignedRevocation::from_bytes(&b);
        let _ = Principal::from_bytes(&b);
        let _ = LogEvent::from_bytes(&b);
    }

    #[test]
    fn note_parsers_never_panic(s in "[a-z0-9/+=\\n\u{2014} ]{0,200}") {
        let v = LogSigner::new("log", &SigningKey::from_seed(&[1; 32])).unwrap().verifier();
        let _ = v.verify_checkpoint(&s);
        let _ = Checkpoint::from_note_text(&s);
        let _ = LogVerifier::from_verifier_key(&s);
    }
}
