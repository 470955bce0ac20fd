//! Integration tests: a real server on port 0, a fresh database per test,
//! real HTTP and Socket.IO clients. Every test body is an
//! `async fn(Backend)` instantiated for each backend by `backend_tests!`.

mod helpers;

mod accounts;
mod authz;
mod conversations;
mod groups;
mod handshake;
mod history;
mod js;
mod limits;
mod messaging;
mod process;
mod receipts;
mod shutdown;
mod store;

/// Instantiates each named `async fn(Backend)` of the calling module as a
/// `#[tokio::test]` per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(@backend sqlite, Sqlite, $($name),*);
        $crate::backend_tests!(@backend mysql, MySql, $($name),*);
        $crate::backend_tests!(@backend postgres, Postgres, $($name),*);
    };
    (@backend $module:ident, $backend:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = $crate::helpers::Backend::$backend;
                    if backend.available() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}
