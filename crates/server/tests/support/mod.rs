//! Code shared by the integration test binaries. Each binary declares
//! `mod support;` (the `api` binary with a `#[path]`, from its folder).
//!
//! - `harness`: the test runner for `harness = false` binaries, and which
//!   services are there.
//! - `db`: a fresh database per test, on each backend.
//! - `process`: real `palaver serve` processes, started, signalled,
//!   restarted and measured.

// Each binary compiles this whole tree and uses a part of it; what one
// binary leaves unused another uses.
#![allow(dead_code)]

pub mod db;
pub mod harness;
pub mod process;
