//! Receive: the OTLP listeners. Both hand request bodies to a [`consumer::Consumer`].

pub mod config;

pub mod auth;
pub mod consumer;
pub mod grpc;
pub mod http;

use std::time::Duration;
use tonic_types::{ErrorDetails, StatusExt};

/// How long cerflow asks a sender to wait when its queues are full.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A gRPC UNAVAILABLE carrying `google.rpc.RetryInfo`, so OTLP exporters back off for
/// that long.
pub fn unavailable_with_retry(message: &str) -> tonic::Status {
    tonic::Status::with_error_details(
        tonic::Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(Duration::from_secs(RETRY_AFTER_SECS))),
    )
}
