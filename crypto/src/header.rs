//! The record header: the public metadata of a record, bound to its
//! ciphertext as AES-GCM associated data and signed by the owner.

use crate::category::{KeyClass, RecordCategory, MAX_CODE_LEN};
use crate::encoding::{Decoder, Encoder};
use crate::error::DecodeError;
use crate::ids::{PrincipalId, RecordId, Timestamp};

/// Current record format version.
pub const RECORD_FORMAT_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"MRHD";
/// Largest encoded header accepted.
pub const MAX_HEADER_LEN: usize = 2048;

/// The public, signed metadata of a record. Its canonical encoding
/// ([`RecordHeader::to_bytes`]) is the AES-GCM associated data of the body, so
/// a ciphertext cannot be moved under another header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    record_id: RecordId,
    owner: PrincipalId,
    category: RecordCategory,
    key_class: KeyClass,
    media_type: String,
    created_at: Timestamp,
}

impl RecordHeader {
    /// Builds a header; the key class follows from the category.
    /// `media_type` is a MIME type such as `application/fhir+json`.
    pub fn new(
        record_id: RecordId,
        owner: PrincipalId,
        category: RecordCategory,
        media_type: &str,
        created_at: Timestamp,
    ) -> Result<Self, DecodeError> {
        validate_media_type(media_type)?;
        let key_class = category.key_class();
        Ok(Self { record_id, owner, category, key_class, media_type: media_type.to_owned(), created_at })
    }

    /// The record id.
    pub fn record_id(&self) -> RecordId {
        self.record_id
    }

    /// The owner (patient) id.
    pub fn owner(&self) -> PrincipalId {
        self.owner
    }

    /// What the record is.
    pub fn category(&self) -> &RecordCategory {
        &self.category
    }

    /// The key class the record is encrypted under.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }

    /// The body's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// When the owner created the record.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The canonical encoding: format version, record id, owner id, key
    /// class, created-at, category, media type.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(MAGIC, RECORD_FORMAT_VERSION);
        e.fixed(self.record_id.as_bytes())
            .fixed(self.owner.as_bytes())
            .u8(self.key_class.code())
            .u64(self.created_at.unix_seconds());
        self.category.encode(&mut e);
        e.str(&self.media_type);
        e.finish()
    }

    /// Decodes and validates a header; the key class must match the category.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[RECORD_FORMAT_VERSION], MAX_HEADER_LEN)?;
        let record_id = RecordId::from_bytes(d.array()?);
        let owner = PrincipalId::from_bytes(d.array()?);
        let key_class = KeyClass::from_code(d.u8()?)?;
        let created_at = Timestamp(d.u64()?);
        let category = RecordCategory::decode(&mut d)?;
        let media_type = d.str(MAX_CODE_LEN * 2)?.to_owned();
        d.finish()?;
        let header = Self::new(record_id, owner, category, &media_type, created_at)?;
        if header.key_class != key_class {
            return Err(DecodeError::Invalid("key class does not match category"));
        }
        Ok(header)
    }
}

fn validate_media_type(s: &str) -> Result<(), DecodeError> {
    let token = |t: &str| {
        !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
    };
    match s.split_once('/') {
        Some((a, b)) if s.len() <= MAX_CODE_LEN * 2 && token(a) && token(b) => Ok(()),
        _ => Err(DecodeError::Invalid("media type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::category::SensitivityLabel;

    fn header() -> RecordHeader {
        let cat =
            RecordCategory::new("Observation", ["laboratory".to_string()], [SensitivityLabel::Genetics])
                .unwrap();
        RecordHeader::new(
            RecordId::from_bytes([1; 16]),
            PrincipalId::from_bytes([2; 32]),
            cat,
            "application/fhir+json",
            Timestamp(1_700_000_000),
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let h = header();
        assert_eq!(h.key_class(), KeyClass::Genetics);
        assert_eq!(RecordHeader::from_bytes(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn truncated_and_trailing_inputs_fail() {
        let bytes = header().to_bytes();
        for n in 0..bytes.len() {
            assert!(RecordHeader::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(RecordHeader::from_bytes(&long), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn inconsistent_key_class_is_rejected() {
        let mut bytes = header().to_bytes();
        // Byte 5 + 16 + 32 is the key class code.
        bytes[53] = KeyClass::General.code();
        assert!(matches!(RecordHeader::from_bytes(&bytes), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn bad_media_types_are_rejected() {
        let h = header();
        for bad in ["", "json", "a/", "/b", "a/b c", "a/b/c"] {
            assert!(
                RecordHeader::new(h.record_id(), h.owner(), h.category().clone(), bad, h.created_at())
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
