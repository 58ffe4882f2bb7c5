//! Receive: the OTLP listeners and the Kafka consumer. All hand request bodies to a
//! [`consumer::Consumer`]. The HTTP one also answers browsers: CORS (`cors.rs`) and the
//! rate limit on public tokens (`rate.rs`).

pub mod config;

pub mod auth;
pub mod body_pool;
pub mod consumer;
pub mod cors;
pub mod grpc;
pub mod http;
pub mod inflate;
pub mod kafka;
pub mod layers;
pub mod rate;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `grpc-status-details-bin`, worked out by hand from the protobuf
    /// encoding, so senders see the same message as before tonic-types wrote it.
    #[test]
    fn queue_full_carries_a_one_second_retry_info() {
        let status = unavailable_with_retry("full");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "full");
        let url = b"type.googleapis.com/google.rpc.RetryInfo";
        assert_eq!(url.len(), 0x28);
        // RetryInfo { retry_delay: Duration { seconds: 1 } }
        let retry_info = [0x0a, 0x02, 0x08, 0x01];
        // Any { type_url, value }: 2 + 40 + 2 + 4 = 48 bytes.
        let mut any = vec![0x0a, 0x28];
        any.extend_from_slice(url);
        any.extend_from_slice(&[0x12, 0x04]);
        any.extend_from_slice(&retry_info);
        assert_eq!(any.len(), 0x30);
        // Status { code: 14, message: "full", details: [any] }
        let mut want = vec![0x08, 0x0e, 0x12, 0x04];
        want.extend_from_slice(b"full");
        want.extend_from_slice(&[0x1a, 0x30]);
        want.extend_from_slice(&any);
        assert_eq!(status.details(), &want[..]);
    }
}
