//! Start-up checks that change nothing: every setting that names something
//! outside the process (the database, Redis, the listening address) is
//! checked before migrations run or a secret is stored, and each failure is
//! one line naming the thing, the value given and what to do.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a start-up probe of Redis waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A start-up check that failed; the text is the whole story.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreflightError(pub String);

/// `--listen`: `HOST:PORT`, `[V6]:PORT`, a host name (`localhost:3001`,
/// resolved at start) or a port alone (`3001`, all addresses).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!(
            "{s:?} has no port: give HOST:PORT (e.g. 0.0.0.0:3000) or a port alone (3000)"
        ));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!(
            "{s:?} is not an address to listen on ({e}); give HOST:PORT (e.g. 0.0.0.0:3000) or a port alone (3000)"
        )),
    }
}

/// `--metrics-listen` is not the public listener: metrics are never
/// served on the port clients use. Two addresses are the same listener
/// when their ports match (not 0, which picks a free one) and their hosts
/// match or either is every address.
pub fn check_metrics_listen(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
) -> Result<(), PreflightError> {
    let Some(metrics) = metrics else {
        return Ok(());
    };
    let same_host = listen.ip() == metrics.ip()
        || listen.ip().is_unspecified()
        || metrics.ip().is_unspecified();
    if metrics.port() != 0 && metrics.port() == listen.port() && same_host {
        return Err(PreflightError(format!(
            "--metrics-listen {metrics} is the public listener (--listen {listen}); \
             give the metrics a port of their own (e.g. 127.0.0.1:9100)"
        )));
    }
    Ok(())
}

/// The database URL is one Palaver can open, and for SQLite the file's
/// directory exists. Networked databases are reached by their backend's
/// own probe, which also runs before anything is written.
pub fn check_database_url(url: &str) -> Result<(), PreflightError> {
    let Some((scheme, _)) = url.split_once(':') else {
        return Err(PreflightError(unknown_scheme(url)));
    };
    match scheme {
        "sqlite" => check_sqlite_dir(url),
        "mysql" | "mariadb" | "postgres" | "postgresql" => Ok(()),
        _ => Err(PreflightError(unknown_scheme(url))),
    }
}

fn unknown_scheme(url: &str) -> String {
    let looks_like_file = !url.contains("://")
        && (url.ends_with(".db") || url.ends_with(".sqlite") || url.contains('/'));
    let hint = if looks_like_file {
        format!("; did you mean sqlite://{url}?")
    } else {
        "; expected sqlite://FILE, mysql://USER@HOST/DB or postgres://USER@HOST/DB".to_string()
    };
    format!("--database-url {url:?} names no database Palaver knows{hint}")
}

/// The file an `sqlite:` URL names, if it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

fn check_sqlite_dir(url: &str) -> Result<(), PreflightError> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(PreflightError(format!(
            "the SQLite database {} cannot be created: its directory {} does not exist; \
             create it or give another --database-url",
            path.display(),
            shown(&dir)
        )));
    }
    Ok(())
}

fn shown(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// Redis answers at `url` (a TCP connection to its address); the full
/// client connects afterwards, but an unreachable Redis is reported here in
/// plain words, before the database is touched.
pub async fn check_redis(url: &str) -> Result<(), PreflightError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        PreflightError(format!(
            "--redis-url {:?} is not a URL ({e}); expected redis://HOST:6379",
            redact(url)
        ))
    })?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(PreflightError(format!(
            "--redis-url {:?} is not a Redis URL; expected redis://HOST:6379",
            redact(url)
        )));
    }
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(6379);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(PreflightError(format!(
            "cannot reach Redis at {host}:{port} ({e}); start Redis or fix --redis-url"
        ))),
        Err(_) => Err(PreflightError(format!(
            "cannot reach Redis at {host}:{port} (no answer within {PROBE_TIMEOUT:?}); \
             start Redis or fix --redis-url"
        ))),
    }
}

/// A URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // A password may also travel as a query parameter.
            if u.query()
                .is_some_and(|q| q.to_ascii_lowercase().contains("pass"))
            {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.to_ascii_lowercase().contains("pass") {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Not a URL: nothing in it can be told apart from a secret.
        Err(_) if url.contains('@') || url.contains("pass") => "<hidden: not a URL>".to_string(),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_a_port_alone_a_host_name_and_an_address() {
        assert_eq!(
            parse_listen("3001").unwrap(),
            "0.0.0.0:3001".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:3001").unwrap(),
            "127.0.0.1:3001".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:3001").unwrap(),
            "[::1]:3001".parse().unwrap()
        );
        let local = parse_listen("localhost:3001").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 3001, "{local}");
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("no port"), "{e}");
    }

    #[test]
    fn metrics_are_refused_on_the_public_listener() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let public = addr("0.0.0.0:3000");
        let e = check_metrics_listen(public, Some(addr("127.0.0.1:3000"))).unwrap_err();
        assert!(e.to_string().contains("public listener"), "{e}");
        assert!(check_metrics_listen(public, Some(public)).is_err());
        assert!(check_metrics_listen(addr("10.0.0.1:3000"), Some(addr("10.0.0.2:3000"))).is_ok());
        assert!(check_metrics_listen(public, Some(addr("127.0.0.1:9100"))).is_ok());
        assert!(check_metrics_listen(addr("127.0.0.1:0"), Some(addr("127.0.0.1:0"))).is_ok());
        assert!(check_metrics_listen(public, None).is_ok());
    }

    #[test]
    fn a_database_url_without_scheme_suggests_sqlite() {
        let e = check_database_url("palaver2.db").unwrap_err().to_string();
        assert!(e.contains("did you mean sqlite://palaver2.db?"), "{e}");
        let e = check_database_url("oracle://x").unwrap_err().to_string();
        assert!(e.contains("expected sqlite://"), "{e}");
    }

    #[test]
    fn a_sqlite_file_in_a_missing_directory_is_named() {
        let e = check_database_url("sqlite:///no/such/dir/p.db")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/no/such/dir/p.db") && e.contains("/no/such/dir does not exist"),
            "{e}"
        );
        check_database_url("sqlite://palaver.db").unwrap();
        check_database_url("sqlite::memory:").unwrap();
        let dir = tempfile::tempdir().unwrap();
        check_database_url(&format!("sqlite://{}/p.db?mode=rwc", dir.path().display())).unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_named_in_plain_words() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check_redis(&format!("redis://127.0.0.1:{port}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("cannot reach Redis at 127.0.0.1:{port}")),
            "{e}"
        );
        assert!(!e.contains("Os {"), "{e}");
    }
}
