// SPDX-License-Identifier: GPL-2.0

//! The read-then-set fallback's window estimate and correction rule.

use migtime_abi::fallback::{
    needs_correction, WindowEstimate, CORRECTION_THRESHOLD_NS, MAX_CORRECTIONS, MAX_WINDOW_NS,
    WINDOW_SAMPLES,
};
use proptest::prelude::*;

#[test]
fn empty_estimate_is_zero() {
    let w = WindowEstimate::new();
    assert!(w.is_empty());
    assert_eq!(w.estimate(), 0);
}

#[test]
fn one_preempted_sample_does_not_poison_the_estimate() {
    let mut w = WindowEstimate::new();
    w.record(60_000);
    w.record(1_400_000); // preempted
    assert_eq!(w.estimate(), 60_000);
}

#[test]
fn implausible_windows_are_ignored() {
    let mut w = WindowEstimate::new();
    w.record(-1);
    w.record(MAX_WINDOW_NS + 1);
    assert!(w.is_empty());
    w.record(MAX_WINDOW_NS);
    assert_eq!(w.estimate(), MAX_WINDOW_NS);
}

#[test]
fn old_samples_age_out() {
    let mut w = WindowEstimate::new();
    w.record(1);
    for _ in 0..WINDOW_SAMPLES {
        w.record(50_000);
    }
    assert_eq!(w.len(), WINDOW_SAMPLES);
    assert_eq!(w.estimate(), 50_000);
}

#[test]
fn corrections_are_bounded() {
    assert!(!needs_correction(CORRECTION_THRESHOLD_NS, 0));
    assert!(needs_correction(CORRECTION_THRESHOLD_NS + 1, 0));
    assert!(needs_correction(-CORRECTION_THRESHOLD_NS - 1, 0));
    assert!(needs_correction(i64::MIN, 0));
    assert!(!needs_correction(1_000_000, MAX_CORRECTIONS));
}

proptest! {
    /// The estimate is the minimum of the last WINDOW_SAMPLES plausible windows.
    #[test]
    fn estimate_is_min_of_recent(ws in proptest::collection::vec(-5i64..20_000_000, 0..40)) {
        let mut w = WindowEstimate::new();
        for &x in &ws {
            w.record(x);
        }
        let plausible: Vec<i64> = ws.iter().copied().filter(|x| (0..=MAX_WINDOW_NS).contains(x)).collect();
        let recent = &plausible[plausible.len().saturating_sub(WINDOW_SAMPLES)..];
        prop_assert_eq!(w.estimate(), recent.iter().copied().min().unwrap_or(0));
    }
}
