//! cerflow turns OpenTelemetry spans into customer-experience reliability figures.
//!
//! Data flows one way: [`receiver`] (OTLP gRPC/HTTP, handing bodies to a
//! [`receiver::consumer::Consumer`]) -> [`decode`] -> [`journey`] (match, cohort,
//! classify) -> [`ingest`] and [`pipeline`] (bounded queues to workers that own the
//! [`window`] state and assemble [`traces`] for dependencies and blame; OTLP metrics go
//! through [`metric_input`] to [`signals`] and [`metric_requests`]; with Kafka stage 2,
//! [`partial`] aggregates merged by a journey's [`owners`]) -> [`deriver`] (once per tick: [`sli`], [`slo`], [`score`], published
//! through [`published`]) -> [`export`] and [`api`], which only format. [`config`] is
//! parsed and validated once before any of it starts, each component's section
//! beside the component; [`predicate`] is the rule language shared by match, failure
//! and correctness. Leaf helpers ([`span`], [`span_record`], [`labels`], [`duration`],
//! [`clock`], [`hist`], [`rng`], [`telemetry`], [`internal_events`], [`catalogue`],
//! [`sampling`], [`checkpoint`])
//! import nothing of cerflow's; `tests/architecture.rs` keeps it so.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod catalogue;
pub mod checkpoint;
pub mod clock;
pub mod completion;
pub mod config;
pub mod decode;
pub mod deployments;
pub mod deriver;
pub mod distinct;
pub mod duration;
pub mod experience;
pub mod export;
pub mod gate;
pub mod hist;
pub mod history;
pub mod incidents;
pub mod ingest;
pub mod internal_events;
pub mod journey;
pub mod kstate;
pub mod labels;
pub mod loadgen;
pub mod metric_input;
pub mod metric_requests;
pub mod mix;
pub mod openslo;
pub mod owners;
pub mod partial;
pub mod pipeline;
pub mod pool;
pub mod predicate;
pub mod published;
pub mod receiver;
pub mod reload;
pub mod rng;
pub mod rules;
pub mod sampling;
pub mod score;
pub mod signals;
pub mod sli;
pub mod slo;
pub mod snapshot;
pub mod span;
pub mod span_record;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod ui;
pub mod users;
pub mod value;
pub mod versions;
pub mod window;

/// cerflow's own API, generated from `proto/cerflow/v1/score.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cerflow.v1");

    /// The partial aggregates of the Kafka stage 2, from
    /// `proto/cerflow/aggregates/v1/partials.proto`.
    pub mod aggregates {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("cerflow.aggregates.v1");
    }
}
