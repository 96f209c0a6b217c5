//! `Store` conformance suite for the DP methods: schemas, summaries and
//! ledgers, each change atomic with its log entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use medrelay_crypto::PrincipalId;
use medrelay_dp::{AnalystId, Budget, Delta, Epsilon, Ledger, PrivacyCost};

use super::*;

fn ev(tag: u8, subjects: &[PrincipalId]) -> LogAppend {
    LogAppend { opening: super::tests::opening(tag), subjects: subjects.to_vec() }
}

fn schema(name: &str) -> StoredSchema {
    StoredSchema { name: name.into(), json: b"{}".to_vec(), sha256: [1; 32], log_index: 0 }
}

fn budget(eps: f64) -> Budget {
    Budget { epsilon: Epsilon::new(eps).unwrap(), delta: Delta::new(1e-6).unwrap() }
}

pub(crate) fn schemas_are_installed_once_with_their_log_entry<S: Store>(s: S) {
    assert_eq!(s.put_schema(&schema("b"), &ev(1, &[])).unwrap(), 0);
    assert_eq!(s.put_schema(&schema("a"), &ev(2, &[])).unwrap(), 1);
    assert!(matches!(s.put_schema(&schema("a"), &ev(3, &[])), Err(StoreError::AlreadyExists("schema"))));
    assert_eq!(s.log_size().unwrap(), 2);
    assert_eq!(s.get_schema("a").unwrap().unwrap().log_index, 1);
    assert!(s.get_schema("c").unwrap().is_none());
    let names: Vec<_> = s.list_schemas(10).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(s.list_schemas(1).unwrap().len(), 1);
}

pub(crate) fn summaries_replace_withdraw_and_need_a_schema<S: Store>(s: S) {
    let p = PrincipalId::from_bytes([1; 32]);
    let q = PrincipalId::from_bytes([2; 32]);
    // No schema: nothing stored, nothing logged.
    assert!(matches!(s.put_summary("hb", &p, b"x", &ev(1, &[p])), Err(StoreError::NotFound("schema"))));
    assert_eq!(s.log_size().unwrap(), 0);
    s.put_schema(&schema("hb"), &ev(0, &[])).unwrap();
    s.put_schema(&schema("hb2"), &ev(0, &[])).unwrap();
    assert_eq!(s.put_summary("hb", &p, b"v1", &ev(1, &[p])).unwrap(), (false, 2));
    assert_eq!(s.put_summary("hb", &q, b"w1", &ev(1, &[q])).unwrap(), (false, 3));
    assert_eq!(s.put_summary("hb2", &p, b"other", &ev(1, &[p])).unwrap(), (false, 4));
    // Resubmission replaces: still one row per patient per schema.
    assert_eq!(s.put_summary("hb", &p, b"v2", &ev(1, &[p])).unwrap(), (true, 5));
    assert_eq!(s.get_summary("hb", &p).unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(s.list_summaries("hb", 10).unwrap(), vec![b"v2".to_vec(), b"w1".to_vec()]);
    // A schema name that is a prefix of another does not see its rows.
    assert_eq!(s.list_summaries("hb2", 10).unwrap(), vec![b"other".to_vec()]);
    assert_eq!(s.list_summaries("hb", 1).unwrap().len(), 1);
    // Withdraw deletes; a second withdraw is NotFound and logs nothing.
    assert_eq!(s.delete_summary("hb", &p, &ev(2, &[p])).unwrap(), 6);
    assert!(s.get_summary("hb", &p).unwrap().is_none());
    assert!(matches!(s.delete_summary("hb", &p, &ev(2, &[p])), Err(StoreError::NotFound("summary"))));
    assert_eq!(s.log_size().unwrap(), 7);
    assert_eq!(s.list_summaries("hb", 10).unwrap(), vec![b"w1".to_vec()]);
    assert_eq!(s.log_indices_for(&p, 0, 10).unwrap(), vec![2, 4, 5, 6]);
}

pub(crate) fn charges_debit_durably_and_refuse_overspend<S: Store>(s: S) {
    let a = PrincipalId::from_bytes([7; 32]);
    s.put_schema(&schema("hb"), &ev(0, &[])).unwrap();
    // No stored ledger and no default: refused, nothing written.
    assert!(matches!(
        s.charge_dp_query(&a, "hb", None, PrivacyCost::Epsilon(0.1), &ev(1, &[a])),
        Err(StoreError::NoBudget)
    ));
    assert!(s.get_ledger(&a, "hb").unwrap().is_none());
    // The default budget is written on the first charge.
    let (l, idx) =
        s.charge_dp_query(&a, "hb", Some(budget(1.0)), PrivacyCost::Epsilon(0.4), &ev(1, &[a])).unwrap();
    assert_eq!((l.spent_pure_epsilon(), l.queries(), idx), (0.4, 1, 1));
    // From then on the stored ledger rules, whatever default is passed.
    let (l, _) =
        s.charge_dp_query(&a, "hb", Some(budget(50.0)), PrivacyCost::Epsilon(0.4), &ev(1, &[a])).unwrap();
    assert_eq!(l.budget(), budget(1.0));
    let before = s.get_ledger(&a, "hb").unwrap().unwrap();
    let size = s.log_size().unwrap();
    let err = s.charge_dp_query(&a, "hb", None, PrivacyCost::Epsilon(0.3), &ev(1, &[a])).unwrap_err();
    let StoreError::Overspend(o) = err else { panic!("expected overspend, got {err:?}") };
    assert_eq!(o.total, 1.0);
    assert_eq!(s.get_ledger(&a, "hb").unwrap().unwrap(), before);
    assert_eq!(s.log_size().unwrap(), size);
    // ρ spending converts at the ledger's δ.
    let (l, _) = s.charge_dp_query(&a, "hb", None, PrivacyCost::Rho(1e-4), &ev(1, &[a])).unwrap();
    assert_eq!(l.spent_rho(), 1e-4);
    let mut expect = Ledger::new(AnalystId::from_bytes([7; 32]), "hb", budget(1.0)).unwrap();
    for c in [PrivacyCost::Epsilon(0.4), PrivacyCost::Epsilon(0.4), PrivacyCost::Rho(1e-4)] {
        expect.debit(c).unwrap();
    }
    assert_eq!(s.get_ledger(&a, "hb").unwrap().unwrap(), expect);
}

pub(crate) fn set_budget_keeps_spending_and_needs_a_schema<S: Store>(s: S) {
    let a = PrincipalId::from_bytes([7; 32]);
    assert!(matches!(s.set_budget(&a, "hb", budget(2.0), &ev(1, &[a])), Err(StoreError::NotFound("schema"))));
    assert_eq!(s.log_size().unwrap(), 0);
    s.put_schema(&schema("hb"), &ev(0, &[])).unwrap();
    let (l, idx) = s.set_budget(&a, "hb", budget(2.0), &ev(1, &[a])).unwrap();
    assert_eq!((l.budget(), l.queries(), idx), (budget(2.0), 0, 1));
    s.charge_dp_query(&a, "hb", None, PrivacyCost::Epsilon(0.5), &ev(2, &[a])).unwrap();
    let (l, _) = s.set_budget(&a, "hb", budget(3.0), &ev(1, &[a])).unwrap();
    assert_eq!((l.spent_pure_epsilon(), l.queries(), l.budget()), (0.5, 1, budget(3.0)));
    assert_eq!(s.get_ledger(&a, "hb").unwrap().unwrap(), l);
    assert_eq!(s.log_indices_for(&a, 0, 10).unwrap(), vec![1, 2, 3]);
}

/// Many threads charging one ledger: exactly as many succeed as fit, the
/// ledger holds exactly their debits, and the log exactly their entries.
pub(crate) fn concurrent_charges_never_overspend<S: Store>(s: S) {
    let a = PrincipalId::from_bytes([7; 32]);
    s.put_schema(&schema("hb"), &ev(0, &[])).unwrap();
    s.set_budget(&a, "hb", budget(1.3), &ev(1, &[a])).unwrap();
    let s = Arc::new(s);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                s.charge_dp_query(&a, "hb", None, PrivacyCost::Epsilon(0.25), &ev(9, &[a])).is_ok()
            })
        })
        .collect();
    let ok = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(ok, 5);
    let l = s.get_ledger(&a, "hb").unwrap().unwrap();
    assert_eq!((l.queries(), l.spent_pure_epsilon()), (5, 1.25));
    assert_eq!(s.log_size().unwrap(), 2 + 5);
}

on_both_backends!(
    schemas_are_installed_once_with_their_log_entry,
    summaries_replace_withdraw_and_need_a_schema,
    charges_debit_durably_and_refuse_overspend,
    set_budget_keeps_spending_and_needs_a_schema,
    concurrent_charges_never_overspend,
);

mod sled_backend {
    use super::*;

    #[test]
    fn ledgers_and_summaries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = PrincipalId::from_bytes([7; 32]);
        let p = PrincipalId::from_bytes([1; 32]);
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put_schema(&schema("hb"), &ev(0, &[])).unwrap();
            s.put_summary("hb", &p, b"v", &ev(1, &[p])).unwrap();
            s.charge_dp_query(&a, "hb", Some(budget(1.0)), PrivacyCost::Epsilon(0.75), &ev(2, &[a])).unwrap();
        }
        // sled releases its file lock a moment after the last handle drops.
        let s = SledStore::open_waiting(dir.path(), std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(s.get_ledger(&a, "hb").unwrap().unwrap().spent_pure_epsilon(), 0.75);
        assert!(s
            .charge_dp_query(&a, "hb", Some(budget(1.0)), PrivacyCost::Epsilon(0.5), &ev(2, &[a]))
            .is_err());
        assert_eq!(s.list_summaries("hb", 10).unwrap(), vec![b"v".to_vec()]);
        assert_eq!(s.log_size().unwrap(), 3);
    }
}
