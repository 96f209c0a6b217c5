//! Base URLs of medrelay servers, as clients and the leader aggregator
//! (which calls its helper) accept them.

/// Why a base URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBaseUrl(&'static str);

impl InvalidBaseUrl {
    /// Why, in a few words.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidBaseUrl {}

/// Longest base URL accepted.
pub const MAX_BASE_URL_LEN: usize = 2048;

/// Validates a base URL: `http://` or `https://`, a host, no query,
/// fragment, whitespace or control character, at most
/// [`MAX_BASE_URL_LEN`] bytes. Returns it without a trailing slash.
pub fn normalize_base_url(url: &str) -> Result<String, InvalidBaseUrl> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(InvalidBaseUrl("must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(InvalidBaseUrl("no host"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidBaseUrl("must not contain a query, fragment or whitespace"));
    }
    if url.len() > MAX_BASE_URL_LEN {
        return Err(InvalidBaseUrl("too long"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_urls_are_validated_and_lose_their_trailing_slash() {
        assert_eq!(normalize_base_url("http://127.0.0.1:8443/").unwrap(), "http://127.0.0.1:8443");
        assert_eq!(normalize_base_url("https://h.example").unwrap(), "https://h.example");
        assert_eq!(normalize_base_url("https://h.example/medrelay/").unwrap(), "https://h.example/medrelay");
        for (bad, why) in [
            ("ftp://x", "must start with http:// or https://"),
            ("127.0.0.1:80", "must start with http:// or https://"),
            ("http://", "no host"),
            ("http:///x", "no host"),
            ("http://h?x=1", "must not contain a query, fragment or whitespace"),
            ("http://h #", "must not contain a query, fragment or whitespace"),
            ("http://h\u{7}", "must not contain a query, fragment or whitespace"),
        ] {
            assert_eq!(normalize_base_url(bad), Err(InvalidBaseUrl(why)), "{bad:?}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_BASE_URL_LEN));
        assert_eq!(normalize_base_url(&long).unwrap_err().reason(), "too long");
    }
}
