//! `--search`: the highest rate held at p99 ≤ --p99-limit-ms with nothing
//! lost. The rate goes up by 1.5× while phases hold (down by 1.5× while
//! none has, from a start too high), a phase failed by latency alone is
//! run once more before it counts, then three bisections between the best
//! rate held and the first failure.

use std::time::Duration;

use crate::report::{print_phase, PhaseReport, Report};
use crate::Bench;

/// A search that holds nothing stops going down below this rate.
const MIN_SEARCH_RATE: f64 = 50.0;

/// The search's next rate before it bisects: up by 1.5× while phases
/// hold; down by 1.5× while none has held yet (the start was too high);
/// `None` at the first failure after a hold, or when going down reaches
/// [`MIN_SEARCH_RATE`].
fn next_search_rate(rate: f64, held: bool, any_held: bool) -> Option<f64> {
    if held {
        Some(rate * 1.5)
    } else if !any_held && rate / 1.5 >= MIN_SEARCH_RATE {
        Some(rate / 1.5)
    } else {
        None
    }
}

/// Whether a failed phase before the search's bisection (climbing, or
/// going down from a start that failed) is run once more before it
/// counts: only when nothing was lost, duplicated, reordered or refused,
/// so that only the latency limit failed it. The bisection's phases are
/// not repeated.
fn retry_failed_climb(p: &PhaseReport) -> bool {
    !p.held
        && p.lost == 0
        && p.duplicates == 0
        && p.out_of_order == 0
        && p.ack_errors == 0
        && p.ack_missing == 0
}

/// Runs the search on `bench` from `start` msg/s; every phase goes into
/// `report.phases`, the best one held into `report.best`.
pub async fn run(bench: &Bench, report: &mut Report, start: f64) {
    let mut rate = start;
    let failed = loop {
        let mut p = bench.phase(rate).await;
        print_phase(&p);
        report.phases.push(p.clone());
        if retry_failed_climb(&p) {
            // One stall of the shared host (a stolen slice, a database
            // flush) fails a phase far below the limit and would end the
            // climb there: the phase runs once more, and the repeat decides.
            eprintln!("  repeating the failed phase once");
            tokio::time::sleep(Duration::from_secs(2)).await;
            p = bench.phase(rate).await;
            print_phase(&p);
            report.phases.push(p.clone());
        }
        let held = p.held;
        let any_held = held || report.best.is_some();
        if held {
            report.best = Some(p);
        }
        match next_search_rate(rate, held, any_held) {
            Some(next) => rate = next,
            None => break rate,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Narrow down between the best held rate and the first failure.
    if let Some(best) = report.best.clone() {
        let (mut lo, mut hi) = (best.offered_rate, failed);
        for _ in 0..3 {
            let mid = (lo + hi) / 2.0;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let p = bench.phase(mid).await;
            print_phase(&p);
            report.phases.push(p.clone());
            if p.held {
                lo = mid;
                report.best = Some(p);
            } else {
                hi = mid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_goes_up_while_held_and_down_until_something_holds() {
        assert_eq!(next_search_rate(4000.0, true, true), Some(6000.0));
        // The start rate failed: go down, not stop.
        assert_eq!(next_search_rate(4000.0, false, false), Some(4000.0 / 1.5));
        // A failure after a hold ends the climb (then the bisection runs).
        assert_eq!(next_search_rate(6000.0, false, true), None);
        // Going down stops at the floor.
        assert_eq!(next_search_rate(MIN_SEARCH_RATE, false, false), None);
    }

    #[test]
    fn a_failed_phase_is_repeated_only_when_latency_alone_failed_it() {
        let slow = PhaseReport {
            deliver_p99_ms: 90.0,
            ..PhaseReport::default()
        };
        assert!(retry_failed_climb(&slow));
        let held = PhaseReport {
            held: true,
            ..PhaseReport::default()
        };
        assert!(!retry_failed_climb(&held));
        let faults = [
            PhaseReport {
                lost: 1,
                ..slow.clone()
            },
            PhaseReport {
                duplicates: 1,
                ..slow.clone()
            },
            PhaseReport {
                out_of_order: 1,
                ..slow.clone()
            },
            PhaseReport {
                ack_errors: 1,
                ..slow.clone()
            },
            PhaseReport {
                ack_missing: 1,
                ..slow.clone()
            },
        ];
        for p in &faults {
            assert!(!retry_failed_climb(p), "{p:?}");
        }
    }
}
