//! What a receiver hands on, and what it hears back: the contract between the
//! listeners and the stages after them. The receivers know only this trait; the app
//! plugs in [`crate::ingest::Ingest`], so receive never imports a later stage.

use crate::telemetry::{Telemetry, Transport};

/// The encoding of an OTLP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// An accepted request; `rejected` spans (or metric data points) were invalid and are
/// reported as partial success.
#[derive(Debug, Default, PartialEq)]
pub struct Accepted {
    pub rejected: u64,
    pub message: String,
}

#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Permanent: the sender must not retry this request.
    Malformed(String),
    /// Transient: the queues are full, retry later.
    Unavailable,
    /// Permanent: the request is larger than a limit allows.
    TooLarge(String),
}

/// Takes request bodies that passed the transport's checks (auth, size, encoding).
pub trait Consumer: Send + Sync + 'static {
    fn traces(
        &self,
        body: &[u8],
        format: Format,
        t: Transport,
        tenant: Option<&str>,
    ) -> Result<Accepted, Refused>;
    fn metrics(&self, body: &[u8], format: Format, t: Transport) -> Result<Accepted, Refused>;
    fn logs(&self, body: &[u8], format: Format, t: Transport) -> Result<Accepted, Refused>;
    /// Spans in a traces body refused before it was processed, for the refusal counter.
    fn spans_in(&self, body: &[u8], format: Format) -> u64;
    /// Log records in a logs body, and data points in a metrics body: what a public
    /// client's rate limit counts for those signals.
    fn log_records_in(&self, body: &[u8], format: Format) -> u64;
    fn data_points_in(&self, body: &[u8], format: Format) -> u64;
    /// The counters refusals made in the receiver itself are recorded in.
    fn telemetry(&self) -> &Telemetry;
}
