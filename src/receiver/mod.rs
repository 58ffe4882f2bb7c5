//! Receive: the OTLP listeners. Both hand decoded requests to [`crate::ingest::Ingest`].

pub mod grpc;
pub mod http;
