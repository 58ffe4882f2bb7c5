//! Receive: the OTLP listeners. Both hand request bodies to a [`consumer::Consumer`].

pub mod auth;
pub mod consumer;
pub mod grpc;
pub mod http;

use prost::Message;

/// `google.rpc.Status`: the error body of OTLP/HTTP and the details of a gRPC status.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: how long a client should wait before retrying.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// How long cerflow asks a sender to wait when its queues are full.
pub const RETRY_AFTER_SECS: i64 = 1;

/// A gRPC UNAVAILABLE carrying RetryInfo, so OTLP exporters back off for that long.
pub fn unavailable_with_retry(message: &str) -> tonic::Status {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: RETRY_AFTER_SECS,
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: tonic::Code::Unavailable as i32,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(
        tonic::Code::Unavailable,
        message,
        details.encode_to_vec().into(),
    )
}
