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
}

/// One classified span, 80 bytes; its cohort values live in the batch's text.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub hash: u64,
    pub journey: JourneyId,
    /// Index of the first cohort value in `Batch::values`.
    pub first_value: u32,
    pub n_values: u16,
    pub flags: u8,
    pub end_ns: u64,
    pub duration_ns: u64,
    /// The hash of the user id when `flags` has [`flag::USER`], else 0.
    pub user: u64,
    /// The request's value when `flags` has [`flag::VALUE`], else 0.
    pub value: f64,
    /// The span's ids, for exemplars; zero when the span has none of the W3C length.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}
