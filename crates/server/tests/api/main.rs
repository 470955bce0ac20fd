//! Integration tests: a real server on port 0, a fresh database per test,
//! real HTTP and Socket.IO clients. Every test body is an
//! `async fn(Backend)` instantiated for each backend by `backend_tests!`;
//! tests that run once are listed with `tests!`. Each module's list is a
//! `trials()` function, collected here.
//!
//! A test whose backend is not there is skipped, not passed: see
//! `support::harness`.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod accounts;
mod admin;
mod authz;
mod blocks;
mod browser;
mod conversations;
mod groups;
mod handshake;
mod history;
mod js;
mod lifecycle;
mod limits;
mod messaging;
mod metrics;
mod openapi;
mod operating;
mod process;
mod prometheus;
mod receipts;
mod running;
mod schemathesis;
mod sessions;
mod shutdown;
mod store;

fn main() {
    let trials = [
        accounts::trials(),
        admin::trials(),
        authz::trials(),
        blocks::trials(),
        browser::trials(),
        conversations::trials(),
        groups::trials(),
        handshake::trials(),
        history::trials(),
        js::trials(),
        lifecycle::trials(),
        limits::trials(),
        messaging::trials(),
        metrics::trials(),
        openapi::trials(),
        operating::trials(),
        prometheus::trials(),
        process::trials(),
        receipts::trials(),
        running::trials(),
        sessions::trials(),
        receipts::presence_tests::trials(),
        schemathesis::trials(),
        shutdown::trials(),
        store::trials(),
    ];
    support::harness::run(trials.into_iter().flatten().collect())
}

/// Instantiates each named `async fn(Backend)` of the calling module as a
/// test per backend, `<module>::<backend>::<name>`, skipped where the
/// backend is not available. Defines the module's `trials()`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        /// This module's tests, one per backend.
        pub fn trials() -> Vec<$crate::support::harness::Trial> {
            let mut trials = Vec::new();
            $crate::backend_tests!(@backend trials, sqlite, Sqlite, $($name),*);
            $crate::backend_tests!(@backend trials, mysql, MySql, $($name),*);
            $crate::backend_tests!(@backend trials, postgres, Postgres, $($name),*);
            trials
        }
    };
    (@backend $trials:ident, $module:ident, $backend:ident, $($name:ident),*) => {
        $(
            let backend = $crate::helpers::Backend::$backend;
            $trials.push($crate::support::harness::test_if(
                backend.needed(),
                $crate::test_name!(concat!(stringify!($module), "::", stringify!($name))),
                $crate::support::harness::on_tokio(move || $name(backend)),
            ));
        )*
    };
}

/// Lists the calling module's tests that run once, each `async name` (on
/// a two-worker tokio runtime, as `#[tokio::test(flavor = "multi_thread",
/// worker_threads = 2)]`) or `fn name`, as `<module>::<name>`. Defines the
/// module's `trials()`.
#[macro_export]
macro_rules! tests {
    ($($kind:tt $name:ident),* $(,)?) => {
        /// This module's tests.
        pub fn trials() -> Vec<$crate::support::harness::Trial> {
            vec![$($crate::tests!(@one $kind $name)),*]
        }
    };
    (@one async $name:ident) => {
        $crate::support::harness::test(
            $crate::test_name!(stringify!($name)),
            $crate::support::harness::on_tokio($name),
        )
    };
    (@one fn $name:ident) => {
        $crate::support::harness::test($crate::test_name!(stringify!($name)), $name)
    };
}

/// `<module path below the crate root>::<tail>`, libtest's test name.
#[macro_export]
macro_rules! test_name {
    ($tail:expr) => {
        match module_path!().split_once("::") {
            Some((_, module)) => format!("{module}::{}", $tail),
            None => $tail.to_string(),
        }
    };
}
