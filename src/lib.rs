//! cerflow turns OpenTelemetry spans into customer-experience reliability figures.
//!
//! Data flows one way: [`receiver`] (OTLP gRPC/HTTP) -> [`decode`] -> [`journey`]
//! (match, cohort, classify) -> [`pipeline`] (bounded queues to workers that own the
//! [`window`] state) -> [`sli`] (derive on each evaluation tick) -> [`export`]
//! (Prometheus text, OTLP push). [`config`] is parsed and validated once before any
//! of it starts; [`predicate`] is the rule language shared by match, failure and
//! correctness.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod config;
pub mod decode;
pub mod export;
pub mod gate;
pub mod hist;
pub mod ingest;
pub mod journey;
pub mod loadgen;
pub mod openslo;
pub mod pipeline;
pub mod predicate;
pub mod receiver;
pub mod rng;
pub mod rules;
pub mod score;
pub mod sli;
pub mod slo;
pub mod span;
pub mod telemetry;
pub mod tls;
pub mod window;

/// cerflow's own API, generated from `proto/cerflow/v1/score.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cerflow.v1");
}
