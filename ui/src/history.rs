//! The verified history page the patient and the doctor share: every log
//! event about them (the patient: their records, grants and every access;
//! the doctor: their own accesses and refusals), each proven to be in the
//! signed log by `medrelay-client` before it is shown.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use askama::Template;
use medrelay_client::time::format_utc;
use medrelay_client::{History, HistoryItem};
use medrelay_crypto::PrincipalId;

use crate::page::{self, Ctx, Layout, PageError};

/// Whose history it is (decides the wording and the columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    Patient,
    Doctor,
}

#[derive(Clone, Debug)]
struct HistoryView {
    index: u64,
    at: String,
    kind: String,
    tone: &'static str,
    record: String,
    doctor: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    layout: Layout,
    patient: bool,
    items: Vec<HistoryView>,
    tree_size: u64,
    served: u64,
    denied: u64,
}

/// Shortens every run of 32 or more hex digits (an id) to its first 12.
pub(crate) fn shorten_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 32 {
            out.push_str(&run[..12]);
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A log event kind (`reencryption_served`, …) for people, and its tone.
pub(crate) fn event_label(kind: &str) -> (String, &'static str) {
    let (label, tone) = match kind {
        "reencryption_served" => ("record served", "info"),
        "access_denied" => ("access refused", "bad"),
        "request_refused" => ("request refused", "bad"),
        "grant_created" => ("grant signed", "ok"),
        "grant_revoked" => ("grant revoked", "warn"),
        "record_published" => ("record added", "muted"),
        "principal_registered" => ("keys registered", "muted"),
        "summary_submitted" => ("research summary sent", "muted"),
        "summary_withdrawn" => ("research summary withdrawn", "muted"),
        other => return (other.replace('_', " "), "muted"),
    };
    (label.to_owned(), tone)
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(12).collect()
}

fn view(i: &HistoryItem, names: &BTreeMap<PrincipalId, String>) -> HistoryView {
    let (kind, tone) = event_label(&i.kind);
    HistoryView {
        index: i.index,
        at: format_utc(i.at),
        kind,
        tone,
        record: i.record.map(|r| short(&r)).unwrap_or_default(),
        doctor: i.doctor.map(|d| names.get(&d).cloned().unwrap_or_else(|| short(&d))).unwrap_or_default(),
        detail: shorten_ids(&i.detail),
    }
}

/// The history page, newest first. `names` gives display names for
/// doctor ids.
pub(crate) fn page(
    ctx: &Ctx,
    title: &str,
    audience: Audience,
    h: &History,
    names: &BTreeMap<PrincipalId, String>,
) -> Result<HttpResponse, PageError> {
    let count = |what: &str| -> u64 {
        h.items.iter().filter(|i| i.kind.contains(what)).map(|i| u64::from(i.count.max(1))).sum()
    };
    page::ok(&HistoryPage {
        layout: ctx.layout(title),
        patient: audience == Audience::Patient,
        served: count("served"),
        denied: count("denied"),
        tree_size: h.tree_size,
        items: h.items.iter().rev().map(|i| view(i, names)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_shortened_in_details() {
        let id = "413a700274c4456ff993c3dc9ecd225f22e6c9e6ff9ad6a31087d4708290aa00";
        assert_eq!(
            shorten_ids(&format!("{id} registered as patient")),
            "413a700274c4… registered as patient"
        );
        assert_eq!(shorten_ids("key class general"), "key class general");
        assert_eq!(shorten_ids("deadbeef"), "deadbeef");
        assert_eq!(shorten_ids(""), "");
    }

    #[test]
    fn event_kinds_read_as_words() {
        assert_eq!(event_label("reencryption_served"), ("record served".to_owned(), "info"));
        assert_eq!(event_label("access_denied").1, "bad");
        assert_eq!(event_label("dp_query_answered").0, "dp query answered");
    }
}
