//! The register linearizability checker on hand-made histories, some
//! linearizable and some not (the classic stale read among them).

use shoal_chaos::linearizable::{check, check_with_budget, Entry, RegisterOp, Verdict};

fn w(v: u64, invoke: u64, complete: u64) -> Entry {
    Entry {
        op: RegisterOp::Write(v),
        invoke,
        complete: Some(complete),
    }
}

fn w_unknown(v: u64, invoke: u64) -> Entry {
    Entry {
        op: RegisterOp::Write(v),
        invoke,
        complete: None,
    }
}

fn r(v: Option<u64>, invoke: u64, complete: u64) -> Entry {
    Entry {
        op: RegisterOp::Read(v),
        invoke,
        complete: Some(complete),
    }
}

fn linearizable(h: &[Entry], init: Option<u64>) -> bool {
    match check(h, init) {
        Verdict::Linearizable { .. } => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::Undecided { visited } => panic!("undecided after {visited}"),
    }
}

#[test]
fn sequential_writes_and_reads_are_linearizable() {
    let h = [
        r(None, 0, 1),
        w(1, 2, 3),
        r(Some(1), 4, 5),
        w(2, 6, 7),
        r(Some(2), 8, 9),
    ];
    assert!(linearizable(&h, None));
}

#[test]
fn the_classic_stale_read_is_not() {
    // Client A writes 1, then 2 (acknowledged); client B, starting after
    // that, reads 1: a stale read, which no order explains.
    let h = [w(1, 0, 10), w(2, 20, 30), r(Some(1), 40, 50)];
    match check(&h, None) {
        Verdict::NotLinearizable {
            placed,
            value,
            stuck,
        } => {
            assert_eq!(placed, vec![0, 1], "both writes ordered");
            assert_eq!(value, Some(2));
            assert_eq!(
                stuck,
                vec![2],
                "the stale read is what could not be ordered"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_of_the_initial_value_after_a_write_completed_is_not() {
    let h = [w(1, 0, 10), r(None, 20, 30)];
    assert!(!linearizable(&h, None));
    assert!(linearizable(&[r(Some(7), 0, 1)], Some(7)));
}

#[test]
fn a_read_of_a_value_never_written_is_not() {
    assert!(!linearizable(&[w(1, 0, 10), r(Some(3), 20, 30)], None));
}

#[test]
fn concurrent_writes_may_land_in_either_order() {
    // Two overlapping writes; later reads agree on one of them.
    for last in [1, 2] {
        let h = [
            w(1, 0, 50),
            w(2, 10, 60),
            r(Some(last), 70, 80),
            r(Some(last), 90, 95),
        ];
        assert!(linearizable(&h, None), "last {last}");
    }
}

#[test]
fn reads_that_flip_flop_between_concurrent_writes_are_not() {
    // Once one read saw 2 after both writes completed, no later read can see 1.
    let h = [
        w(1, 0, 50),
        w(2, 10, 60),
        r(Some(2), 70, 80),
        r(Some(1), 90, 95),
    ];
    assert!(!linearizable(&h, None));
}

#[test]
fn a_read_concurrent_with_a_write_sees_the_old_or_the_new_value() {
    for seen in [Some(1), Some(2)] {
        let h = [w(1, 0, 10), w(2, 20, 40), r(seen, 25, 30)];
        assert!(linearizable(&h, None));
    }
    // ...but not both, in real-time order: new, then old.
    let h = [
        w(1, 0, 10),
        w(2, 20, 100),
        r(Some(2), 25, 30),
        r(Some(1), 40, 50),
    ];
    assert!(!linearizable(&h, None));
}

#[test]
fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
    // The timed-out write of 2 shows up long after it was sent.
    let h = [
        w(1, 0, 10),
        w_unknown(2, 20),
        r(Some(1), 30, 40),
        r(Some(2), 500, 510),
    ];
    assert!(linearizable(&h, None));
    // Or never: nothing saw it, and it is left out of the order.
    let h = [w(1, 0, 10), w_unknown(2, 20), r(Some(1), 500, 510)];
    match check(&h, None) {
        Verdict::Linearizable { order } => assert!(!order.contains(&1)),
        other => panic!("{other:?}"),
    }
    // But it cannot take effect before it was sent.
    let h = [w(1, 0, 10), r(Some(2), 12, 15), w_unknown(2, 20)];
    assert!(!linearizable(&h, None));
}

#[test]
fn many_concurrent_operations_are_decided() {
    // 8 clients, 40 rounds: each round every client writes its own value
    // concurrently, then every client reads the one that "won" (the last
    // writer in the round). Memoization keeps this small.
    let mut h = Vec::new();
    let mut v = 0;
    for round in 0..40u64 {
        let base = round * 100;
        for c in 0..8u64 {
            v += 1;
            h.push(w(v, base + c, base + 40 + c));
        }
        for c in 0..8u64 {
            h.push(r(Some(v), base + 60 + c, base + 70 + c));
        }
    }
    assert!(linearizable(&h, None));
    // One stale read at the end breaks it.
    h.push(r(Some(v - 8), 10_000, 10_010));
    assert!(!linearizable(&h, None));
}

#[test]
fn the_search_gives_up_within_its_budget() {
    let h: Vec<Entry> = (0..30u64)
        .map(|i| w(i, 0, 1000))
        .chain([r(Some(999), 2000, 2001)])
        .collect();
    assert!(matches!(
        check_with_budget(&h, None, 1000),
        Verdict::Undecided { .. }
    ));
}
