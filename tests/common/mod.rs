//! Shared helpers for the integration tests, one job per module:
//!
//! - [`process`]: the real `cerflow` binary on free loopback ports, CLI runs, stopping;
//! - [`config`]: checked edits of config text;
//! - [`scrape`]: `/metrics` parsed into exact samples, expected histogram values;
//! - [`sdk`]: spans sent with the real OpenTelemetry SDK and OTLP exporters;
//! - [`otlp`]: OTLP protobuf built by hand (attributes, spans, requests, gzip, wire);
//! - [`fake_receiver`]: a downstream OTLP metrics receiver for cerflow's push;
//! - [`gen`]: proptest generators of OTLP trace requests;
//! - [`sse`]: server-sent events read from a streaming response (the web view);
//! - [`kafka`]: a real Apache Kafka broker (KRaft) on free ports, topics, a producer,
//!   and a tee that feeds one cerflow and a topic the same spans;
//! - [`exact`]: one instance's per-journey figures compared with a group's, every
//!   difference reported.
//!
//! `use common::*` brings in the first four; the others are named where used.
//! Every test binary compiles all of them and uses a different part, so an item one
//! binary leaves unused is not dead code: hence the allow on each module.

#[allow(dead_code)]
pub mod config;
#[allow(dead_code)]
pub mod exact;
#[allow(dead_code)]
pub mod fake_receiver;
#[allow(dead_code)]
pub mod gen;
#[allow(dead_code)]
pub mod kafka;
#[allow(dead_code)]
pub mod otlp;
#[allow(dead_code)]
pub mod process;
#[allow(dead_code)]
pub mod scrape;
#[allow(dead_code)]
pub mod sdk;
#[allow(dead_code)]
pub mod sse;

#[allow(unused_imports)]
pub use config::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use scrape::*;
#[allow(unused_imports)]
pub use sdk::*;
