//! What a run reports: each phase's figures, the JSON report, the
//! servers' memory.

use std::net::SocketAddr;

use serde::Serialize;

use crate::args::{Scenario, Target};

#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseReport {
    pub offered_rate: f64,
    pub seconds: f64,
    pub sent: u64,
    pub messages_per_s: f64,
    pub deliveries_per_s: f64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Deliveries out of `seq` order on their connection.
    pub out_of_order: u64,
    pub ack_ok: u64,
    pub ack_errors: u64,
    /// Sends never answered (Palaver only).
    pub ack_missing: u64,
    pub deliver_p50_ms: f64,
    pub deliver_p99_ms: f64,
    pub deliver_p999_ms: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub held: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub target: Target,
    pub scenario: Scenario,
    pub users: usize,
    pub group_size: usize,
    pub servers: Vec<SocketAddr>,
    pub client_msg_ids: bool,
    /// Time to connect every user, in waves of 200 at once (a reconnect
    /// storm in miniature).
    pub connect_seconds: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_connected_kib: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
    /// The `--warm-up-rate` phase (one message per user), if any.
    pub warm_up: Option<PhaseReport>,
    pub phases: Vec<PhaseReport>,
    pub best: Option<PhaseReport>,
}

pub fn rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

pub fn print_phase(p: &PhaseReport) {
    eprintln!(
        "rate {:>8.0}/s: {:>8.0} msg/s {:>9.0} deliveries/s  p50 {:>7.2} p99 {:>8.2} p99.9 {:>8.2} ms  ack p99 {:>7.2} ms  lost {} dup {} disorder {} errors {} unanswered {}  {}",
        p.offered_rate, p.messages_per_s, p.deliveries_per_s, p.deliver_p50_ms, p.deliver_p99_ms,
        p.deliver_p999_ms, p.ack_p99_ms, p.lost, p.duplicates, p.out_of_order, p.ack_errors, p.ack_missing,
        if p.held { "HELD" } else { "not held" }
    );
}
