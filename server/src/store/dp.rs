//! Stored values of the differential-privacy service: installed schemas and
//! patients' summaries (analysts' ledgers use `medrelay_dp::Ledger`'s own
//! versioned encoding).

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::DecodeError;
use medrelay_dp::{MAX_SCHEMA_BYTES, MAX_SUMMARY_BYTES};

use super::StoreError;

const V1: u8 = 1;
const SCHEMA_NAME_MAX: usize = 64;

/// An installed summary schema: its canonical JSON (what clients download
/// and the audit log's hash covers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSchema {
    /// The schema's name.
    pub name: String,
    /// Canonical JSON of the validated schema (at most `MAX_SCHEMA_BYTES`).
    pub json: Vec<u8>,
    /// SHA-256 of `json`.
    pub sha256: [u8; 32],
    /// Log index of the `schema added` event (set by the store).
    pub log_index: u64,
}

impl StoredSchema {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSDS", V1, 128 + self.json.len());
        e.str(&self.name).bytes(&self.json).fixed(&self.sha256).u64(self.log_index);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSDS", &[V1], MAX_SCHEMA_BYTES + 256)?;
            let name = d.str(SCHEMA_NAME_MAX)?.to_owned();
            let json = d.bytes(MAX_SCHEMA_BYTES)?.to_vec();
            let sha256 = d.array()?;
            let log_index = d.u64()?;
            d.finish()?;
            Ok(Self { name, json, sha256, log_index })
        })()
        .map_err(|_| StoreError::Corrupt("dp schema"))
    }
}

/// A patient's summary as stored: the canonical JSON of the validated
/// `medrelay_dp::SummaryDoc`, in a versioned blob.
pub fn encode_summary(json: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(b"MSSU", V1, 16 + json.len());
    e.bytes(json);
    e.finish()
}

/// The summary JSON inside a stored blob.
pub fn decode_summary(b: &[u8]) -> Result<&[u8], StoreError> {
    (|| -> Result<&[u8], DecodeError> {
        let mut d = Decoder::open(b, b"MSSU", &[V1], MAX_SUMMARY_BYTES + 64)?;
        let json = d.bytes(MAX_SUMMARY_BYTES)?;
        d.finish()?;
        Ok(json)
    })()
    .map_err(|_| StoreError::Corrupt("dp summary"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn dp_blobs_round_trip_and_reject_truncated_trailing_and_wrong_version() {
        let s = StoredSchema { name: "s".into(), json: b"{}".to_vec(), sha256: [3; 32], log_index: 9 };
        assert_eq!(StoredSchema::decode(&s.encode()).unwrap(), s);
        let summary = encode_summary(br#"{"schema":"s","values":{}}"#);
        assert_eq!(decode_summary(&summary).unwrap(), br#"{"schema":"s","values":{}}"#);
        type Dec = fn(&[u8]) -> Result<(), StoreError>;
        let cases: Vec<(Vec<u8>, Dec)> = vec![
            (s.encode(), |b| StoredSchema::decode(b).map(drop)),
            (summary, |b| decode_summary(b).map(drop)),
        ];
        for (blob, dec) in cases {
            for n in 0..blob.len() {
                assert!(matches!(dec(&blob[..n]), Err(StoreError::Corrupt(_))), "prefix {n} accepted");
            }
            let mut long = blob.clone();
            long.push(0);
            assert!(matches!(dec(&long), Err(StoreError::Corrupt(_))));
            let mut v2 = blob.clone();
            v2[4] = 2;
            assert!(matches!(dec(&v2), Err(StoreError::Corrupt(_))));
        }
    }
}
