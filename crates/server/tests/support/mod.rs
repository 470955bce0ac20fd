//! Code shared by the integration test binaries. Each binary declares
//! `mod support;` (the `api` binary with a `#[path]`, from its folder).

pub mod harness;
