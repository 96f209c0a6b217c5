//! Strict JSON reading for untrusted FHIR files.
//!
//! `serde_json` alone accepts duplicate object keys (the last one wins, so
//! two readers of one file can see two different resources) and reports a
//! failure only by line and column. This reader builds the same
//! [`serde_json::Value`] but refuses duplicate keys and nesting deeper than
//! [`MAX_DEPTH`], stops at [`MAX_ENTRIES`] Bundle entries, and names the
//! Bundle entry (`entry 12`, or `entry 3 > entry 0` inside a nested Bundle)
//! where anything went wrong.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::FhirError;

/// Most nesting levels (objects and arrays) in one document. FHIR's own
/// examples need 22; `serde_json` gives up at 128.
pub const MAX_DEPTH: usize = 64;
/// Most Bundle entries in one file, nested Bundles included.
pub const MAX_ENTRIES: usize = 50_000;

/// Where in a file something is: the path of Bundle entry indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryPath(Vec<usize>);

impl EntryPath {
    /// The whole file (a single resource).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Entry `i` inside this one.
    pub fn child(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(i);
        Self(v)
    }

    /// The entry indexes, outermost first.
    pub fn indexes(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for EntryPath {
    /// `file`, `entry 4`, `entry 3 > entry 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("file");
        }
        for (n, i) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "entry {i}")?;
        }
        Ok(())
    }
}

/// Shared state of one parse: the entry being read, the entry budget, and
/// the first problem this reader (not `serde_json`) found.
struct Ctx {
    path: RefCell<Vec<usize>>,
    entries: Cell<usize>,
    problem: RefCell<Option<String>>,
}

impl Ctx {
    fn fail<E: de::Error>(&self, reason: String) -> E {
        let mut p = self.problem.borrow_mut();
        if p.is_none() {
            *p = Some(reason);
        }
        E::custom("refused")
    }
}

/// What the value being read is, for entry naming: only the entries of a
/// Bundle (the document itself, or an entry's `resource`) are counted and
/// named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// May be a Bundle: its `entry` array holds entries.
    Container,
    /// An element of a Bundle's `entry` array: its `resource` may be a Bundle.
    Entry,
    /// Anything else.
    Plain,
}

struct Seed<'c> {
    ctx: &'c Ctx,
    depth: usize,
    role: Role,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite f64; `Null` would be wrong
        // data, so this is only a guard.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.ctx.fail(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut out = Vec::new();
        // The entries of a Bundle: counted, and named while being read.
        let entries = self.role == Role::Container;
        loop {
            if entries {
                self.ctx.path.borrow_mut().push(out.len());
            }
            let role = if entries { Role::Entry } else { Role::Plain };
            // On error the entry stays on the path, so the caller sees where.
            let next = seq.next_element_seed(Seed { ctx: self.ctx, depth: self.depth + 1, role })?;
            let Some(v) = next else {
                if entries {
                    self.ctx.path.borrow_mut().pop();
                }
                break;
            };
            if entries {
                let n = self.ctx.entries.get();
                if n >= MAX_ENTRIES {
                    return Err(self.ctx.fail(format!("more than {MAX_ENTRIES} Bundle entries")));
                }
                self.ctx.entries.set(n + 1);
                self.ctx.path.borrow_mut().pop();
            }
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.ctx.fail(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(self.ctx.fail(format!("duplicate key {shown:?}")));
            }
            let role = match (self.role, key.as_str()) {
                (Role::Container, "entry") => Role::Container,
                (Role::Entry, "resource") => Role::Container,
                _ => Role::Plain,
            };
            // A Container's `entry` array is the one whose elements are
            // entries; every other array below is plain.
            let value = map.next_value_seed(Seed { ctx: self.ctx, depth: self.depth + 1, role })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Parses one JSON document strictly.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let ctx = Ctx { path: RefCell::new(Vec::new()), entries: Cell::new(0), problem: RefCell::new(None) };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = Seed { ctx: &ctx, depth: 0, role: Role::Container }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    result.map_err(|e| {
        let at = EntryPath(ctx.path.borrow().clone());
        let reason = match ctx.problem.borrow_mut().take() {
            Some(p) => format!("{p} (line {}, column {})", e.line(), e.column()),
            None => e.to_string(),
        };
        JsonError { at, reason }
    })
}

/// A document that is not acceptable JSON, with the entry it failed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) at: EntryPath,
    pub(crate) reason: String,
}

impl JsonError {
    pub(crate) fn into_fhir(self) -> FhirError {
        FhirError::Json { at: self.at.to_string(), reason: self.reason }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn accepts_what_serde_json_accepts() {
        let text = br#"{"resourceType":"Bundle","entry":[{"resource":{"a":[1,2.5,-3,true,null,"x"]}}]}"#;
        let strict = parse_strict(text).unwrap();
        let plain: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, plain);
        // A UTF-8 byte order mark is allowed.
        assert_eq!(parse_strict(b"\xEF\xBB\xBF{\"a\":1}").unwrap(), serde_json::json!({"a": 1}));
    }

    #[test]
    fn duplicate_keys_are_refused_with_the_entry_named() {
        let e = parse_strict(br#"{"resourceType":"Observation","id":"a","id":"b"}"#).unwrap_err();
        assert_eq!(e.at, EntryPath::root());
        assert!(e.reason.starts_with("duplicate key \"id\""), "{}", e.reason);
        let text = br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}},
            {"resource":{"resourceType":"Observation","code":{"text":"x","text":"y"}}}]}"#;
        let e = parse_strict(text).unwrap_err();
        assert_eq!(e.at.to_string(), "entry 1");
        assert!(e.reason.contains("duplicate key \"text\""), "{}", e.reason);
        assert!(e.reason.contains("line 2"), "{}", e.reason);
    }

    #[test]
    fn nested_bundles_name_the_inner_entry() {
        let text = br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}},
            {"resource":{"resourceType":"Bundle","entry":[{"resource":{}},{"resource":{"a":1,"a":2}}]}}]}"#;
        let e = parse_strict(text).unwrap_err();
        assert_eq!(e.at.to_string(), "entry 1 > entry 1");
        // Arrays that are not Bundle entries do not move the path.
        let text =
            br#"{"resourceType":"Composition","section":[{"entry":[{"reference":"x"},{"reference":}]}]}"#;
        let e = parse_strict(text).unwrap_err();
        assert_eq!(e.at, EntryPath::root());
    }

    #[test]
    fn depth_is_bounded_before_serde_json_gives_up() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse_strict(deep.as_bytes()).unwrap_err();
        assert!(e.reason.starts_with("nested deeper than 64 levels"), "{}", e.reason);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        // Far deeper than the stack would like: still a clean error.
        let hostile = "[".repeat(1_000_000);
        assert!(parse_strict(hostile.as_bytes()).is_err());
    }

    #[test]
    fn entry_count_is_bounded() {
        let mut text = String::from(r#"{"resourceType":"Bundle","entry":["#);
        text.push_str(&vec!["{}"; MAX_ENTRIES + 1].join(","));
        text.push_str("]}");
        let e = parse_strict(text.as_bytes()).unwrap_err();
        assert!(e.reason.starts_with("more than 50000 Bundle entries"), "{}", e.reason);
        assert_eq!(e.at.to_string(), "entry 50000");
        // Exactly the limit is fine.
        let mut text = String::from(r#"{"resourceType":"Bundle","entry":["#);
        text.push_str(&vec!["{}"; MAX_ENTRIES].join(","));
        text.push_str("]}");
        assert!(parse_strict(text.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_and_syntax_errors_name_the_entry() {
        let mut text = br#"{"resourceType":"Bundle","entry":[{"resource":{}},{"resource":{"x":""#.to_vec();
        text.extend_from_slice(b"\xff\xfe");
        text.extend_from_slice(br#""}}]}"#);
        let e = parse_strict(&text).unwrap_err();
        assert_eq!(e.at.to_string(), "entry 1");
        assert!(e.reason.contains("line 1"), "{}", e.reason);
        let e = parse_strict(br#"{"resourceType":"Bundle","entry":[{},{"resource":{]}"#).unwrap_err();
        assert_eq!(e.at.to_string(), "entry 1");
        assert!(parse_strict(b"{} trailing").is_err());
        assert!(parse_strict(b"").is_err());
    }
}
