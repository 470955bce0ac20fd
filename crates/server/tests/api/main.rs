//! Integration tests: a real server on port 0, a fresh database per test,
//! real HTTP and Socket.IO clients. Every test body is an
//! `async fn(Backend)` instantiated for each backend by `backend_tests!`.

mod helpers;

mod accounts;
mod groups;
mod handshake;
mod history;
mod js;
mod messaging;
mod process;

/// Instantiates each named `async fn(Backend)` of the calling module as a
/// `#[tokio::test]` per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
    };
}
