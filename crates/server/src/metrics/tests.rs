use super::process::{parse_boot_time, parse_stat, Sample};
use super::*;

#[test]
fn every_error_code_has_its_own_counter() {
    for (i, &code) in CODES.iter().enumerate() {
        assert_eq!(code_index(code), i, "{code}");
    }
    let m = Metrics::new(false);
    m.error(Transport::Http, ErrorCode::NotFound);
    m.error(Transport::SocketIo, ErrorCode::RateLimited);
    m.error(Transport::SocketIo, ErrorCode::RateLimited);
    let text = m.encode();
    for line in [
        r#"palaver_error_answers_total{transport="http",code="not_found"} 1"#,
        r#"palaver_error_answers_total{transport="socketio",code="rate_limited"} 2"#,
        r#"palaver_error_answers_total{transport="socketio",code="not_found"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[test]
fn an_event_name_outside_the_protocol_is_counted_as_unknown() {
    let m = Metrics::new(false);
    m.event("message").inc();
    m.event("no such event").inc();
    m.event("typing").inc();
    m.event("typing").inc();
    let text = m.encode();
    for line in [
        r#"palaver_socketio_events_received_total{event="message"} 1"#,
        r#"palaver_socketio_events_received_total{event="typing"} 2"#,
        r#"palaver_socketio_events_received_total{event="unknown"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(!text.contains("no such event"));
}

#[test]
fn redis_up_exists_only_in_a_cluster() {
    assert!(!Metrics::new(false).encode().contains("palaver_redis_up"));
    let text = Metrics::new(true).encode();
    assert!(text.lines().any(|l| l == "palaver_redis_up 1"), "{text}");
}

/// The metric names a PromQL expression uses (`palaver_*`, `process_*`).
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["palaver_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The dashboard in `docs/` cannot drift from the code: every metric its
/// queries name is in the exposition of a server in a cluster (where
/// every series exists) that has served one HTTP request.
#[test]
fn the_grafana_dashboard_names_only_metrics_the_server_exposes() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../docs/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["schemaVersion"], 39);
    let m = Metrics::new(true);
    m.http_request(&axum::http::Method::GET, "/api/me", 200, 0.01);
    let text = m.encode();
    let exposed: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or(l))
        .collect();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "the queries were found: {queries:?}");
    let mut missing = Vec::new();
    let mut used = 0;
    for q in &queries {
        for name in names_in(q) {
            used += 1;
            if !exposed.contains(name.as_str()) {
                missing.push(name);
            }
        }
    }
    assert!(used >= 20, "names were found in the queries");
    assert!(missing.is_empty(), "not exposed: {missing:?}\n{text}");
}

#[test]
fn names_are_read_out_of_promql() {
    assert_eq!(
        names_in(
            r#"histogram_quantile(0.5, sum by (le) (rate(palaver_x_bucket{a="b"}[1m]))) / process_open_fds"#
        ),
        ["palaver_x_bucket", "process_open_fds"]
    );
}

#[test]
fn proc_stat_is_read_in_base_units() {
    // A command name with a space and a parenthesis.
    let stat = "4242 (pala ver)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                250 150 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
    let s = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
    assert_eq!(
        s,
        Sample {
            cpu_seconds: 4.0,
            resident_bytes: 2560 * 4096,
            virtual_bytes: 104_857_600,
            threads: 7,
            start_time_seconds: 1_700_000_123.45,
            open_fds: None,
            max_fds: None,
        }
    );
    assert_eq!(
        parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
        Some(1_700_000_000.0)
    );
    assert!(parse_stat("garbage", 100.0, 4096, 0.0).is_none());
}

#[cfg(target_os = "linux")]
#[test]
fn this_process_reports_its_memory_and_descriptors() {
    let text = Metrics::new(false).encode();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_threads") >= 1.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
}
