//! The span record: what a worker receives of one classified span, and its flags.
//! A leaf shared by match (which makes records) and record (which counts them).

/// A journey's index in the journey table of one config generation.
pub type JourneyId = u32;

/// Span outcome flags carried on each record.
pub mod flag {
    pub const ERROR: u8 = 1;
    pub const SLOW: u8 = 2;
    pub const INCORRECT: u8 = 4;
    /// The span is an entry point (SERVER or CONSUMER); it counts towards coverage.
    pub const ENTRY: u8 = 8;
    /// The span names a user; [`super::Record::user`] holds the hash of the id.
    pub const USER: u8 = 16;
    /// Failed, slow or incorrect: what makes the user an affected one.
    pub const BAD: u8 = ERROR | SLOW | INCORRECT;
    /// The request has a value; [`super::Record::value`] holds it.
    pub const VALUE: u8 = 32;
    /// Failed or incorrect: what puts the request's value at risk (slow does not).
    pub const LOST: u8 = ERROR | INCORRECT;
    /// A log event, not a request: [`super::Record::event`] says what it counts for.
    pub const EVENT: u8 = 64;
    /// A frustration event: its user is an affected one.
    pub const FRUSTRATED: u8 = 128;
}

/// What an event record counts for, in [`Record::event`]: a kind in the high bits and
/// an index (the vital, or the journey's frustration event) in the low ones.
pub mod event {
    pub const VITAL: u16 = 0x1000;
    /// With [`VITAL`]: the measurement is at or under its threshold.
    pub const GOOD: u16 = 0x0800;
    pub const FRUSTRATION: u16 = 0x2000;
    pub const INDEX: u16 = 0x00ff;
}

/// One classified span, 88 bytes; its cohort values and version live in the batch's text.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub hash: u64,
    pub journey: JourneyId,
    /// Index of the first cohort value in `Batch::values`.
    pub first_value: u32,
    pub n_values: u16,
    pub flags: u8,
    /// The span has a version (`deployments.version_key`): it is the value right after
    /// the cohort values ([`Record::version_index`]). A flag, not an index, so the record
    /// grows by no more than a byte for it.
    pub has_version: bool,
    pub end_ns: u64,
    /// The span's duration; for a web vital event, the hash of its
    /// `browser.web_vital.id` (0 without one), so a later report of the same
    /// measurement replaces it.
    pub duration_ns: u64,
    /// The hash of the user id when `flags` has [`flag::USER`], else 0.
    pub user: u64,
    /// The request's value when `flags` has [`flag::VALUE`]; a vital's value for a vital
    /// event; else 0.
    pub value: f64,
    /// The span's ids, for exemplars; zero when the span has none of the W3C length.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// For [`flag::EVENT`] records, what the event counts for ([`event`]); else 0.
    pub event: u16,
    /// How many requests the span stands for, in [`crate::sampling::UNIT`]s: its
    /// sampling threshold's adjusted count, one unit-request without one.
    pub weight: u64,
}

impl Record {
    /// Where the span's version is in `Batch::values`, when it has one.
    pub fn version_index(&self) -> Option<usize> {
        self.has_version
            .then_some(self.first_value as usize + self.n_values as usize)
    }
}

// The record is copied per span through the worker queues; a field that grows it is a cost.
// 56 bytes plus the 24 of the trace and span ids that exemplars need, plus the 8 of the
// sampling weight (BENCHMARKS.md: "Record size").
const _: () = assert!(std::mem::size_of::<Record>() == 88);
