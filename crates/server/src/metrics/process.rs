//! The process's own figures, under the standard `process_*` names every
//! Prometheus client uses, read from `/proc` at each scrape.
//!
//! `prometheus-client` has no process collector (its Go and Python
//! siblings have); reading four small files needs no crate. On systems
//! without `/proc` the collector reports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads `/proc/self` when scraped.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What `/proc/self/stat` and friends say, in base units.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Sample {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub virtual_bytes: i64,
    pub threads: i64,
    pub start_time_seconds: f64,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
}

/// Fields of `/proc/self/stat` after the command name (its third field
/// on): utime, stime, num_threads, starttime, vsize and rss.
pub(super) fn parse_stat(stat: &str, ticks: f64, page: i64, boot: f64) -> Option<Sample> {
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Option<f64> { f.get(i)?.parse().ok() };
    Some(Sample {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        threads: num(17)? as i64,
        start_time_seconds: boot + num(19)? / ticks,
        virtual_bytes: num(20)? as i64,
        resident_bytes: num(21)? as i64 * page,
        open_fds: None,
        max_fds: None,
    })
}

/// The boot time (`btime`) from `/proc/stat`, in seconds since the epoch.
pub(super) fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(target_os = "linux")]
fn sample() -> Option<Sample> {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // `c_long` is narrower than i64 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let mut sample = parse_stat(&stat, ticks as f64, page as i64, boot)?;
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64);
    sample.max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft.min(i64::MAX as u64) as i64);
    Some(sample)
}

#[cfg(not(target_os = "linux"))]
fn sample() -> Option<Sample> {
    None
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                Some(s.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(Unit::Bytes),
                Some(s.virtual_bytes as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Some(Unit::Seconds),
                Some(s.start_time_seconds),
            ),
            (
                "process_threads",
                "Number of OS threads",
                None,
                Some(s.threads as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                s.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                s.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
