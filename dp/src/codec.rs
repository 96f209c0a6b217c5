//! The versioned binary layout of stored DP state (the budget ledger).
//!
//! Same layout rules as `medrelay_crypto::encoding`: a 4-byte magic naming
//! the type, a 1-byte format version, big-endian fields, the size limit
//! checked before anything else, and no trailing bytes. It is reimplemented
//! here (about sixty lines) so that this pure crate does not pull the
//! lattice-crypto build into everything that only needs DP accounting.

use crate::error::DecodeError;

#[derive(Debug)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(magic: &[u8; 4], version: u8) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(magic);
        buf.push(version);
        Self { buf }
    }
    pub(crate) fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.fixed(&v.to_be_bytes())
    }
    /// A string of at most `u16::MAX` bytes (callers validate shorter limits).
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.fixed(&len.to_be_bytes());
        self.fixed(&s.as_bytes()[..usize::from(len)])
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn open(
        bytes: &'a [u8],
        magic: &[u8; 4],
        versions: &[u8],
        max_len: usize,
    ) -> Result<Self, DecodeError> {
        if bytes.len() > max_len {
            return Err(DecodeError::TooLarge { limit: max_len, actual: bytes.len() });
        }
        if bytes.len() < 5 {
            return Err(DecodeError::Truncated);
        }
        if &bytes[..4] != magic {
            return Err(DecodeError::WrongMagic);
        }
        if !versions.contains(&bytes[4]) {
            return Err(DecodeError::UnsupportedVersion { found: bytes[4] });
        }
        Ok(Self { rest: &bytes[5..] })
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        if len > max {
            return Err(DecodeError::TooLarge { limit: max, actual: len });
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Invalid("utf-8 string"))
    }
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
