//! The test runner of the binaries with tests that cannot always run
//! (`harness = false` in `Cargo.toml`, on `libtest-mimic`).
//!
//! libtest counts a test that returns early because its database is not
//! there as passed; here such a test is *skipped*: it shows as `ignored`
//! in the summary, and a block after the summary says how many were
//! skipped and why, e.g.
//! `skipped 74 tests: 74 on PostgreSQL — nothing answers at 127.0.0.1:5432 (set PALAVER_TEST_POSTGRES_URL)`.
//! When the variable that makes a need mandatory is set (CI's
//! `PALAVER_REQUIRE_ALL_BACKENDS`, `PALAVER_REQUIRE_JS`,
//! `PALAVER_REQUIRE_BROWSER`, `PALAVER_REQUIRE_PROMETHEUS`), a missing need
//! fails the test instead.
//!
//! The machine's database servers and Redis are found on their default
//! local ports without any variable; a `PALAVER_TEST_*_URL` variable, when
//! set, names another server. Either way the server is probed once per
//! process, and one that does not answer counts as missing.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::Arguments;
pub use libtest_mimic::Trial;

/// Something a test needs that is not here.
#[derive(Debug, Clone)]
pub struct Missing {
    /// Which tests, for the skip summary: "on PostgreSQL", "with Redis".
    pub what: String,
    /// Why, and how to provide it.
    pub why: String,
    /// The variable that turns this skip into a failure when set.
    pub required_by: Option<&'static str>,
}

/// How long a probe waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A test server's URL from `var`, or from its default local address when
/// `var` is unset; `Err` when nothing answers there. One probe per process.
pub fn service(var: &'static str) -> Result<&'static str, Missing> {
    static PROBES: [OnceLock<Result<String, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (slot, name, default_url, default_port) = match var {
        "PALAVER_TEST_MYSQL_URL" => (0, "MySQL", "mysql://root@127.0.0.1:3306", 3306),
        "PALAVER_TEST_POSTGRES_URL" => (
            1,
            "PostgreSQL",
            "postgres://postgres@127.0.0.1:5432/postgres",
            5432,
        ),
        "PALAVER_TEST_REDIS_URL" => (2, "Redis", "redis://127.0.0.1:6379", 6379),
        _ => panic!("no test service is named by {var}"),
    };
    let probed = PROBES[slot].get_or_init(|| {
        let set = std::env::var(var).ok().filter(|v| !v.is_empty());
        let url = set.clone().unwrap_or_else(|| default_url.to_string());
        let parsed = url::Url::parse(&url).map_err(|e| format!("{var} is not a URL: {e}"))?;
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
        let port = parsed.port().unwrap_or(default_port);
        let answers = (host.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| {
                addrs
                    .into_iter()
                    .any(|a| TcpStream::connect_timeout(&a, PROBE_TIMEOUT).is_ok())
            })
            .unwrap_or(false);
        match (answers, set) {
            (true, _) => Ok(url),
            (false, None) => Err(format!("nothing answers at {host}:{port} (set {var})")),
            (false, Some(_)) => Err(format!("nothing answers at {host}:{port} (from {var})")),
        }
    });
    match probed {
        Ok(url) => Ok(url),
        Err(why) => Err(Missing {
            what: if slot == 2 {
                format!("with {name}")
            } else {
                format!("on {name}")
            },
            why: why.clone(),
            required_by: Some("PALAVER_REQUIRE_ALL_BACKENDS"),
        }),
    }
}

/// A test that runs `body`; a panic fails it (libtest-mimic catches it).
pub fn test(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        body();
        Ok(())
    })
}

/// A test that runs `body` if `need` is met, and is skipped (or failed, if
/// the need is required here) with its reason otherwise.
pub fn test_if(
    need: Result<(), Missing>,
    name: impl Into<String>,
    body: impl FnOnce() + Send + 'static,
) -> Trial {
    let name = name.into();
    let Err(missing) = need else {
        return test(name, body);
    };
    let reason = format!("{}: {}", missing.what, missing.why);
    if let Some(var) = missing
        .required_by
        .filter(|v| std::env::var_os(v).is_some())
    {
        return Trial::test(name, move || {
            Err(format!("{var} is set but this test cannot run {reason}").into())
        });
    }
    SKIPPED.lock().unwrap().insert(name.clone(), missing);
    Trial::test(name, move || {
        Err(format!("cannot run here: {reason}").into())
    })
    .with_ignored_flag(true)
}

/// What an async test does today with
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`: runs the
/// future on a runtime of its own with two worker threads.
pub fn on_tokio<F>(test: impl FnOnce() -> F + Send + 'static) -> impl FnOnce() + Send + 'static
where
    F: Future<Output = ()>,
{
    move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(test())
    }
}

/// The tests skipped so far, by name: what is missing.
static SKIPPED: Mutex<BTreeMap<String, Missing>> = Mutex::new(BTreeMap::new());

/// Runs `trials` as libtest would (same command line), says what was
/// skipped and why, and exits.
pub fn run(trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    let mut missing = SKIPPED.lock().unwrap();
    // The skipped tests this run selects (`--ignored` and
    // `--include-ignored` run them, and fail them with their reason).
    let skipped: Vec<Missing> = trials
        .iter()
        .filter(|t| !args.is_filtered_out(t) && args.is_ignored(t))
        .filter_map(|t| missing.remove(t.name()))
        .collect();
    drop(missing);
    let ran: Vec<String> = trials
        .iter()
        .filter(|t| !args.is_filtered_out(t) && !args.is_ignored(t))
        .map(|t| t.name().to_string())
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        println!("{}", ran_summary(&ran));
        if !skipped.is_empty() {
            println!("{}", skip_summary(&skipped));
        }
    }
    conclusion.exit()
}

/// `ran N tests: a on SQLite, b on MariaDB/MySQL, c on PostgreSQL, d
/// others`, from the tests' names (`::sqlite::`, `_on_postgres`, …).
fn ran_summary(names: &[String]) -> String {
    let mut counts = [0usize; 4];
    for name in names {
        let slot = if name.contains("sqlite") {
            0
        } else if name.contains("mysql") || name.contains("mariadb") {
            1
        } else if name.contains("postgres") {
            2
        } else {
            3
        };
        counts[slot] += 1;
    }
    format!(
        "ran {} tests: {} on SQLite, {} on MariaDB/MySQL, {} on PostgreSQL, {} others",
        names.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    )
}

/// `skipped N tests: n on X — why`, one line per reason.
fn skip_summary(skipped: &[Missing]) -> String {
    let mut by_reason: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for m in skipped {
        *by_reason.entry((&m.what, &m.why)).or_default() += 1;
    }
    let lines: Vec<String> = by_reason
        .iter()
        .map(|((what, why), n)| format!("{n} {what} — {why}"))
        .collect();
    let head = format!("skipped {} tests:", skipped.len());
    if lines.len() == 1 {
        format!("{head} {}", lines[0])
    } else {
        format!("{head}\n  {}", lines.join("\n  "))
    }
}
