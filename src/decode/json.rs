//! Lazy OTLP/JSON trace decoding: one hand-written pass over the request bytes that
//! fills the same [`TraceRequest`] the lazy protobuf decoder fills, reading only what
//! the pipeline needs (resource attributes and service name; span name, kind, status
//! code, timestamps, trace and span ids, attributes; event names). The scanner knows
//! the OTLP shape, so it matches keys against the fields of the message it is in and
//! never builds a value nobody reads. Strings are borrowed from the request; only
//! strings with escapes (rare) and decoded ids go to a per-request arena, so nothing is
//! allocated per span beyond a few bytes of bump memory.
//!
//! It accepts and refuses what the full decoder ([`super::traces`]: serde_json and
//! serde's derive into prost structs) accepts and refuses, and reads the same values;
//! `tests/json_decoder.rs`, `tests/decoder_props.rs` and the fuzz oracle check that
//! property. So the scanner follows serde_json's rules where they are stricter or
//! looser than a generic JSON parser: strings are checked for control characters and
//! escapes everywhere, and for lone surrogates only where the full decoder reads the
//! string (skipped values are not); numbers are checked for syntax everywhere and for
//! range and type only where they are read (`-0` is a float, integers past 64 bits are
//! floats, floats that overflow are refused); values inside unknown fields are skipped
//! without a depth limit, read values (an `AnyValue`'s nested lists) up to serde_json's
//! 128 levels; a known field given twice is refused; a `null` member is the field's
//! default; `null` in an array is refused; a `KeyValue` needs its `key`, an array or
//! kvlist value its `values`. It takes the Collector's forms: enum fields as numbers or
//! names (`"SPAN_KIND_SERVER"`, `"STATUS_CODE_ERROR"`), 64-bit integers as numbers or
//! strings, ids as hex (anything else is refused).
//!
//! Known differences, outside OTLP/JSON as any SDK writes it: messages written as JSON
//! arrays (serde's positional form for structs) are refused here; an `AnyValue` that
//! sets two value fields keeps the last in the text (the full decoder's slow path, taken
//! for bodies with `null`s or enum names, keeps the alphabetically last); and that slow
//! path also refuses a key repeated inside an `AnyValue` or an unknown field, and,
//! inside unknown fields only, numbers out of range, lone surrogates and nesting past
//! the limit, which its fast path and this scanner skip (the serde seeds before this
//! scanner did the same; `tests/json_decoder.rs::slow_path_strictness`).

use super::lazy::{
    key_bit, Attr, Lists, ResourceRec, SpanRec, TraceRequest, TOO_MANY_SPANS, UNKNOWN_SERVICE,
};
use crate::span::AttrValue;
/// The arena callers lend the decoder (re-exported so they need not name bumpalo).
pub use bumpalo::Bump;
use std::fmt;

/// Why a JSON request could not be decoded.
#[derive(Debug)]
pub enum JsonError {
    /// More spans than the decoder was allowed to read.
    TooManySpans,
    /// Not OTLP/JSON; the message says what and where (line and column).
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooManySpans => f.write_str(TOO_MANY_SPANS),
            JsonError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for JsonError {}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`; `arena` holds unescaped strings
/// and decoded ids for as long as the request is read.
pub fn decode_traces<'a>(body: &'a [u8], arena: &'a Bump) -> Result<TraceRequest<'a>, JsonError> {
    decode_traces_limited(body, arena, usize::MAX, usize::MAX)
}

/// As [`decode_traces`], keeping at most `max_attrs` attributes per span (the first
/// ones), and refusing a request of more than `max_spans` spans.
pub fn decode_traces_limited<'a>(
    body: &'a [u8],
    arena: &'a Bump,
    max_attrs: usize,
    max_spans: usize,
) -> Result<TraceRequest<'a>, JsonError> {
    decode_traces_in(body, arena, Lists::default(), max_attrs, max_spans)
}

/// As [`decode_traces_limited`], filling `lists` (from a [`super::arena::ListPool`]).
pub fn decode_traces_in<'a>(
    body: &'a [u8],
    arena: &'a Bump,
    lists: Lists,
    max_attrs: usize,
    max_spans: usize,
) -> Result<TraceRequest<'a>, JsonError> {
    // One check of the whole text (JSON text is UTF-8, RFC 8259) lets every string be
    // sliced out of it without another check.
    let text = super::json_text(body).map_err(JsonError::Invalid)?;
    let mut p = P {
        s: text,
        b: body,
        i: 0,
        depth: 0,
        arena,
        // A realistic span is ~1 KB of JSON, so one per 640 bytes leaves room (one per
        // 1,024 left the loadgen's 1,000-span request 7 short: the vector was copied
        // once per request); an attribute ~100 bytes.
        out: TraceRequest::with_lists(lists, max_attrs, max_spans, body.len(), 640, 100),
        why: None,
        too_many: false,
        frames: Vec::new(),
        scratch: String::new(),
        span_keys: 0,
        span_dups: 0,
        key_cache: [""; KEY_CACHE],
        value_cache: [""; KEY_CACHE],
        last_name: "",
    };
    match p.request() {
        Ok(()) => {
            // The spans' key filters were built as their attributes were kept.
            p.out.index_resource_keys();
            Ok(p.out)
        }
        Err(Fail) if p.too_many => Err(JsonError::TooManySpans),
        Err(Fail) => {
            let (at, what) = p.why.take().unwrap_or((p.i, "invalid JSON".into()));
            let (line, column) = line_column(body, at);
            Err(JsonError::Invalid(format!(
                "invalid OTLP JSON: {what} at line {line} column {column}"
            )))
        }
    }
}

/// The 1-based line and column of byte `at`, for messages.
#[cold]
fn line_column(body: &[u8], at: usize) -> (usize, usize) {
    let before = body.get(..at).unwrap_or(body);
    let line = 1 + before.iter().filter(|c| **c == b'\n').count();
    let column = at
        - before
            .iter()
            .rposition(|c| *c == b'\n')
            .map_or(0, |n| n + 1)
        + 1;
    (line, column)
}

/// The walk's error: zero-sized so results stay small on the hot path; the message
/// waits in [`P::why`].
#[derive(Debug, Clone, Copy)]
struct Fail;

type R<T> = Result<T, Fail>;

/// serde_json's recursion limit: it refuses the 128th nested array or object it reads
/// (values it skips do not count), and so does this scanner.
const DEPTH_LIMIT: u32 = 128;

/// The scanner: the body, the position, and what it fills.
struct P<'a> {
    /// The body as text (checked UTF-8) and as bytes: the same memory.
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Arrays and objects being read (skipped values not counted).
    depth: u32,
    arena: &'a Bump,
    out: TraceRequest<'a>,
    why: Option<(usize, String)>,
    too_many: bool,
    /// The open brackets of a value being skipped: skipping has no depth limit, so it
    /// keeps its stack here rather than on the call stack.
    frames: Vec<u8>,
    /// Where escaped strings are unescaped before they go to the arena.
    scratch: String,
    /// The key filter ([`key_bit`]) of the span being read's kept attributes, built
    /// as they are kept: the key's length and end bytes are at hand then, where a
    /// second pass over all the attributes would load them again.
    span_keys: u64,
    /// The bits of `span_keys` that more than one kept attribute set (`SpanRec::dups`).
    span_dups: u64,
    /// The last key read plainly at each position of a span's attribute list:
    /// services send the same keys in the same order span after span, so a key is
    /// first compared with the one before it at its position, a word at a time
    /// ([`same_plain`]), before it is scanned.
    key_cache: [&'a str; KEY_CACHE],
    /// The same for string values (a route, a host, a user agent repeat as often).
    value_cache: [&'a str; KEY_CACHE],
    /// The same for span names.
    last_name: &'a str,
}

/// Positions of a span's attribute list whose last key and string value are remembered
/// ([`P::key_cache`], [`P::value_cache`]); later positions are scanned.
const KEY_CACHE: usize = 32;

/// What a string literal was: its text between the quotes, raw, and whether it has
/// escapes (then the raw text is not the value).
#[derive(Clone, Copy)]
struct Lit<'a> {
    raw: &'a str,
    escaped: bool,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte from `i` that ends a run of plain string text (`"`,
/// `\` or a control character), or `b.len()`. Eight bytes at a time, with two tests
/// of the "byte minus k has its high bit set and the byte had it clear" kind: `w ^ 2`
/// maps exactly `"` and the control characters below 0x21 (xor 2 keeps 0x00-0x1F among
/// themselves and makes 0x22 0x20), and `w ^ \` maps `\` to 0. Both keep the bytes'
/// high bits, so one `& !w` serves both. In each test the lowest flagged byte is a true
/// match (false positives only sit above a true one, from its borrow), so the lowest
/// bit of the union is the first match. The words come from `as_chunks`, so the loop
/// has one bound check; most of the decoder's string scanning is this loop.
#[inline(always)]
fn plain_run(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    let (words, tail) = rest.as_chunks::<8>();
    let mut at = i;
    for word in words {
        let w = u64::from_le_bytes(*word);
        let quote_or_control = (w ^ (LO * 0x02)).wrapping_sub(LO * 0x21);
        let slash = (w ^ (LO * u64::from(b'\\'))).wrapping_sub(LO);
        let found = (quote_or_control | slash) & !w & HI;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    for &c in tail {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

/// Whether the string literal whose text starts at `at` is `last`, a string read
/// plainly (no escape, quote or control character) before, of 8 bytes or more: its
/// bytes and then the closing quote. Then the literal is plain too, and a scan would
/// stop at that quote. Shorter strings are one word of scan anyway.
#[inline(always)]
fn same_plain(b: &[u8], at: usize, last: &str) -> bool {
    last.len() >= 8 && b.get(at + last.len()) == Some(&b'"') && same_words(b, at, last.as_bytes())
}

/// Whether `b` holds `k` (at least 8 bytes long) at `at`: a word at a time, the last
/// word overlapping the one before it, so there is no byte loop and no call to
/// `memcmp` (whose call costs more than the compare for a key).
#[inline(always)]
fn same_words(b: &[u8], at: usize, k: &[u8]) -> bool {
    let Some(t) = b.get(at..at + k.len()) else {
        return false;
    };
    let word = |x: &[u8], j: usize| {
        x.get(j..)
            .and_then(|x| x.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
    };
    let mut j = 0;
    while j + 8 < k.len() {
        if word(t, j) != word(k, j) {
            return false;
        }
        j += 8;
    }
    let last = k.len().wrapping_sub(8);
    k.len() >= 8 && word(t, last) == word(k, last)
}

/// The run of 1 to 18 ASCII digits at `i` (so it cannot overflow) and the index after
/// it; `None` if there is none or it is longer.
#[inline(always)]
fn short_digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    let mut j = i;
    while let Some(&c @ b'0'..=b'9') = b.get(j) {
        if j - i == 18 {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
        j += 1;
    }
    (j > i).then_some((v, j))
}

/// Eight ASCII digits (the first in the lowest byte) as a number, or `None` if one is
/// not a digit: three multiply-and-shift steps combine 1, 2 and 4 digits at a time.
#[inline(always)]
fn eight_digits(chunk: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(chunk.try_into().ok()?);
    // Every byte 0x30..=0x39: high nibble 3, and adding 6 does not carry out of it.
    if v & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
        || v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
    {
        return None;
    }
    let v = ((v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
    let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
    Some(((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32)
}

/// Nineteen ASCII digits (every timestamp from 2001 to 2286) as a number.
#[inline(always)]
fn nineteen_digits(d: &[u8]) -> Option<u64> {
    let head = match d.get(..3)? {
        [a @ b'0'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            u64::from(a - b'0') * 100 + u64::from(b - b'0') * 10 + u64::from(c - b'0')
        }
        _ => return None,
    };
    let mid = eight_digits(d.get(3..11)?)?;
    let low = eight_digits(d.get(11..19)?)?;
    // At most 999 * 10^16 + 10^16 - 1 < 2^64: no overflow.
    Some(head * 10_000_000_000_000_000 + mid * 100_000_000 + low)
}

/// Eight hex digits of either case (the first in the lowest byte) into four bytes, or
/// `None` if one is not a hex digit: per-byte range checks (each byte below 0x80, so
/// adding to it never carries into the next), then nibbles packed in pairs.
#[inline(always)]
fn eight_hex(chunk: [u8; 8]) -> Option<[u8; 4]> {
    let x = u64::from_le_bytes(chunk);
    if x & HI != 0 {
        return None;
    }
    // 0x30..=0x39: at least 0x30 sets the high bit of x + 0x50, above 0x39 that of
    // x + 0x46.
    let digit = x.wrapping_add(LO * 0x50) & !x.wrapping_add(LO * 0x46) & HI;
    // Letters, lowercased (0x41..=0x46 and 0x61..=0x66 are the only bytes that map to
    // 0x61..=0x66).
    let l = x | (LO * 0x20);
    let letter = l.wrapping_add(LO * 0x1F) & !l.wrapping_add(LO * 0x19) & HI;
    if digit | letter != HI {
        return None;
    }
    let nibbles = (x & (LO * 0x0F)) + (letter >> 7) * 9;
    let t = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF_00FF_00FF;
    let t = (t | (t >> 8)) & 0x0000_FFFF_0000_FFFF;
    Some(((t | (t >> 16)) as u32).to_le_bytes())
}

/// `N` hex digits into `N / 2` bytes (`M`), eight digits at a time, or `None` if one is
/// not a hex digit. Fixed lengths (a trace id's 32 digits, a span id's 16) so the
/// loop unrolls into straight loads and stores: the iterator chain it replaces was
/// not inlined and cost ~180 instructions per id (BENCHMARKS.md, issue 17).
#[inline(always)]
fn fixed_hex<const N: usize, const M: usize>(d: &[u8; N]) -> Option<[u8; M]> {
    let mut out = [0u8; M];
    let mut k = 0;
    while k + 8 <= N && k / 2 + 4 <= M {
        let chunk = [
            d[k],
            d[k + 1],
            d[k + 2],
            d[k + 3],
            d[k + 4],
            d[k + 5],
            d[k + 6],
            d[k + 7],
        ];
        let four = eight_hex(chunk)?;
        out[k / 2..k / 2 + 4].copy_from_slice(&four);
        k += 8;
    }
    Some(out)
}

/// The value of each hex digit; 16 for every other byte.
const HEX: [u8; 256] = {
    let mut t = [16u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[inline(always)]
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// What a value starting with this byte is, for messages.
fn kind_of(c: Option<u8>) -> &'static str {
    match c {
        Some(b'{') => "map",
        Some(b'[') => "sequence",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "number",
        None => "end of input",
        Some(_) => "character",
    }
}

impl<'a> P<'a> {
    // ------------------------------------------------------------- failures

    #[cold]
    #[inline(never)]
    fn fail<T>(&mut self, what: impl Into<String>) -> R<T> {
        if self.why.is_none() {
            self.why = Some((self.i, what.into()));
        }
        Err(Fail)
    }

    /// "invalid type: X, expected Y", as serde words it; for a message given as an
    /// array it reads "invalid type: sequence, expected a ...", which the fuzz oracle
    /// knows as the one form the full decoder takes and this one refuses.
    #[cold]
    #[inline(never)]
    fn wrong<T>(&mut self, expected: &str) -> R<T> {
        let found = kind_of(self.b.get(self.i).copied());
        self.fail(format!("invalid type: {found}, expected {expected}"))
    }

    // ------------------------------------------------------------- structure

    /// The next byte that is not whitespace (as JSON defines it), not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    #[inline(always)]
    fn eat(&mut self, c: u8, what: &str) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.expected(what)
        }
    }

    #[cold]
    #[inline(never)]
    fn expected<T>(&mut self, what: &str) -> R<T> {
        if self.i >= self.b.len() {
            self.fail(format!("EOF while expecting {what}"))
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    /// Whether the text at the position is `pat` exactly (consumed if so): the fast
    /// path for the members SDKs write, in the order they write them. Taking it is
    /// the same as reading the general way (no whitespace, no escapes in the key).
    #[inline(always)]
    fn starts(&mut self, pat: &'static [u8]) -> bool {
        if self.b.get(self.i..self.i + pat.len()) == Some(pat) {
            self.i += pat.len();
            true
        } else {
            false
        }
    }

    /// A literal word (`null`, `true`, `false`) whose first byte is at the position.
    #[inline(always)]
    fn word(&mut self, w: &'static [u8]) -> R<()> {
        if self.b.get(self.i..self.i + w.len()) == Some(w) {
            self.i += w.len();
            Ok(())
        } else {
            self.fail("expected ident")
        }
    }

    /// `null` (consumed: `true`) or the start of another value (`false`): how serde
    /// reads an optional field, so a `null` member is the field's default.
    #[inline(always)]
    fn null(&mut self) -> R<bool> {
        if self.peek() == Some(b'n') {
            self.word(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth >= DEPTH_LIMIT {
            return self.fail("recursion limit exceeded");
        }
        Ok(())
    }

    /// The `{` of a message (`what` names it for messages).
    #[inline(always)]
    fn object(&mut self, what: &str) -> R<()> {
        if self.peek() == Some(b'{') {
            self.i += 1;
            self.enter()
        } else {
            self.wrong(what)
        }
    }

    /// The `[` of a repeated field.
    #[inline(always)]
    fn array(&mut self, what: &str) -> R<()> {
        if self.peek() == Some(b'[') {
            self.i += 1;
            self.enter()
        } else {
            self.wrong(what)
        }
    }

    /// The next key of an object (its raw text: see [`Self::known`]), or `None` at
    /// its end, with the `:` after it consumed. `first`: no member read yet.
    #[inline(always)]
    fn key(&mut self, first: &mut bool) -> R<Option<Lit<'a>>> {
        match self.peek() {
            Some(b'}') => {
                self.i += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.i += 1;
                if self.peek() == Some(b'}') {
                    return self.fail("trailing comma");
                }
            }
            Some(_) if *first => *first = false,
            Some(_) => return self.fail("expected `,` or `}`"),
            None => return self.expected("`}`"),
        }
        if self.peek() != Some(b'"') {
            return self.fail("key must be a string");
        }
        self.i += 1;
        let k = self.lit()?;
        if k.escaped {
            // A key is read as a string, so it is checked as one.
            self.unescape(k.raw)?;
        }
        self.eat(b':', "`:`")?;
        Ok(Some(k))
    }

    /// The text of a key to match against field names: escapes decoded (rare).
    #[inline(always)]
    fn known(&mut self, k: Lit<'a>) -> R<&'a [u8]> {
        if k.escaped {
            Ok(self.unescape(k.raw)?.as_bytes())
        } else {
            Ok(k.raw.as_bytes())
        }
    }

    /// Whether a repeated field has another element; `first`: none read yet.
    #[inline(always)]
    fn more(&mut self, first: &mut bool) -> R<bool> {
        match self.peek() {
            Some(b']') => {
                self.i += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.i += 1;
                if self.peek() == Some(b']') {
                    return self.fail("trailing comma");
                }
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            Some(_) => self.fail("expected `,` or `]`"),
            None => self.expected("`]`"),
        }
    }

    // ------------------------------------------------------------- strings

    /// The rest of a string literal whose opening quote is consumed: checked as
    /// serde_json checks a string it skips (escapes well formed, no control
    /// characters), the closing quote consumed.
    #[inline(always)]
    fn lit(&mut self) -> R<Lit<'a>> {
        let start = self.i;
        let mut escaped = false;
        let mut i = start;
        loop {
            i = plain_run(self.b, i);
            match self.b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape_end(i)?;
                }
                Some(_) => {
                    self.i = i;
                    return self
                        .fail("control character (\\u0000-\\u001F) found while parsing a string");
                }
                None => {
                    self.i = i;
                    return self.fail("EOF while parsing a string");
                }
            }
        }
        self.i = i + 1;
        // Both ends are next to an ASCII quote, so they are character boundaries.
        match self.s.get(start..i) {
            Some(raw) => Ok(Lit { raw, escaped }),
            None => self.fail("a string that is not UTF-8"),
        }
    }

    /// The index after the escape starting at `i` (a backslash), checked.
    #[cold]
    fn escape_end(&mut self, i: usize) -> R<usize> {
        match self.b.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let four = self.b.get(i + 2..i + 6).unwrap_or_default();
                if four.len() == 4 && four.iter().all(|c| hex_digit(*c).is_some()) {
                    Ok(i + 6)
                } else {
                    self.i = i + 2;
                    if four.len() < 4 && four.iter().all(|c| hex_digit(*c).is_some()) {
                        return self.fail("EOF while parsing a string");
                    }
                    self.fail("invalid escape")
                }
            }
            Some(_) => {
                self.i = i + 1;
                self.fail("invalid escape")
            }
            None => {
                self.i = i + 1;
                self.fail("EOF while parsing a string")
            }
        }
    }

    /// The value of an escaped literal, decoded into the arena and checked as
    /// serde_json checks a string it reads: surrogates must pair.
    #[cold]
    #[inline(never)]
    fn unescape(&mut self, raw: &'a str) -> R<&'a str> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let r = decode_escapes(raw, &mut out);
        let v = match r {
            Ok(()) => Ok(&*self.arena.alloc_str(&out)),
            Err(what) => self.fail(what),
        };
        self.scratch = out;
        v
    }

    /// A string value the pipeline reads.
    #[inline(always)]
    fn text(&mut self, what: &str) -> R<&'a str> {
        if self.peek() != Some(b'"') {
            return self.wrong(what);
        }
        self.i += 1;
        let l = self.lit()?;
        if l.escaped {
            self.unescape(l.raw)
        } else {
            Ok(l.raw)
        }
    }

    /// A string value nobody reads, checked as the full decoder reads it.
    #[inline(always)]
    fn any_str(&mut self) -> R<()> {
        self.text("a string").map(|_| ())
    }

    /// `text`, or `null` as `None`.
    #[inline(always)]
    fn opt_text(&mut self) -> R<Option<&'a str>> {
        if self.null()? {
            return Ok(None);
        }
        self.text("a string").map(Some)
    }

    // ------------------------------------------------------------- numbers

    /// A number token at the position, its syntax checked as serde_json checks it;
    /// returns its text and whether it is a plain integer (no fraction, no exponent).
    #[inline(always)]
    fn number(&mut self) -> R<(&'a str, bool)> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if matches!(b.get(i), Some(b'0'..=b'9')) {
                    self.i = i;
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                i += 1;
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => {
                self.i = i;
                return self.fail("invalid number");
            }
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                self.i = i;
                return self.fail("invalid number");
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                self.i = i;
                return self.fail("invalid number");
            }
        }
        self.i = i;
        match self.s.get(start..i) {
            Some(t) => Ok((t, integer)),
            None => self.fail("invalid number"),
        }
    }

    /// A number read as serde_json reads it: an integer that fits `u64`, a negative one
    /// that fits `i64` (not `-0`), or else a float, refused if it overflows.
    fn read_number(&mut self) -> R<Num> {
        let at = self.i;
        // Counts, flags and enum numbers: a few digits, summed on the way.
        let (b, mut i, mut v) = (self.b, at, 0u64);
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            v = v * 10 + u64::from(c - b'0');
            i += 1;
            if i - at == 18 {
                break;
            }
        }
        let plain = !matches!(b.get(i), Some(b'.' | b'e' | b'E' | b'0'..=b'9'));
        if i > at && plain && (b.get(at) != Some(&b'0') || i - at == 1) {
            self.i = i;
            return Ok(Num::U(v));
        }
        let (t, integer) = self.number()?;
        if integer {
            if let Some(digits) = t.strip_prefix('-') {
                if let Ok(m) = digits.parse::<u64>() {
                    if m != 0 && m <= 1 << 63 {
                        return Ok(Num::I(m.wrapping_neg() as i64));
                    }
                }
            } else if let Ok(u) = t.parse::<u64>() {
                return Ok(Num::U(u));
            }
        }
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Num::F(f)),
            _ => {
                self.i = at;
                self.fail("number out of range")
            }
        }
    }

    /// A number for an integer field of the given range, refused as serde refuses it.
    fn int_in(&mut self, lo: i64, hi: u64, what: &str) -> R<Num> {
        let at = self.i;
        let n = self.read_number()?;
        let ok = match n {
            Num::U(u) => u <= hi,
            Num::I(i) => i >= lo,
            Num::F(_) => {
                self.i = at;
                return self.fail(format!("invalid type: floating point, expected {what}"));
            }
        };
        if ok {
            Ok(n)
        } else {
            self.i = at;
            self.fail(format!(
                "invalid value: integer out of range, expected {what}"
            ))
        }
    }

    /// A 64-bit unsigned integer (timestamps): a number or a decimal string.
    #[inline(always)]
    fn u64(&mut self) -> R<u64> {
        match self.peek() {
            Some(b'"') => {
                // A timestamp as SDKs write it: 19 digits and the quote; any 19 digits
                // fit u64, and they read as `parse` reads them.
                let (b, at) = (self.b, self.i + 1);
                if b.get(at + 19) == Some(&b'"') {
                    if let Some(v) = b.get(at..at + 19).and_then(nineteen_digits) {
                        self.i = at + 20;
                        return Ok(v);
                    }
                }
                let mut v = 0u64;
                let mut j = at;
                while let Some(&c @ b'0'..=b'9') = b.get(j) {
                    if j - at == 19 {
                        break;
                    }
                    v = v * 10 + u64::from(c - b'0');
                    j += 1;
                }
                if j > at && b.get(j) == Some(&b'"') {
                    self.i = j + 1;
                    return Ok(v);
                }
                let at = self.i;
                let s = self.text("a string")?;
                match s.parse::<u64>() {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        self.i = at;
                        self.fail(e.to_string())
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => match self.int_in(0, u64::MAX, "u64")? {
                Num::U(u) => Ok(u),
                _ => self.fail("invalid value: integer out of range, expected u64"),
            },
            _ => self.wrong("a u64 integer or a string containing a u64 integer"),
        }
    }

    /// A 64-bit signed integer (`intValue`): a number or a decimal string.
    fn i64(&mut self) -> R<i64> {
        match self.peek() {
            Some(b'"') => {
                let at = self.i;
                let s = self.text("a string")?;
                match s.parse::<i64>() {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        self.i = at;
                        self.fail(e.to_string())
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => match self.int_in(i64::MIN, i64::MAX as u64, "i64")? {
                Num::U(u) => Ok(u as i64),
                Num::I(i) => Ok(i),
                Num::F(_) => self.fail("invalid type: floating point, expected i64"),
            },
            _ => self.wrong("an i64 integer or a string containing an i64 integer"),
        }
    }

    /// An optional `u32` or `i32` field nobody reads (counts, flags, string indexes):
    /// a number in range, or `null`; a string is refused.
    #[inline(always)]
    fn opt_int(&mut self, lo: i64, hi: u64, what: &str) -> R<()> {
        if self.small_int(hi).is_some() {
            return Ok(());
        }
        if self.null()? {
            return Ok(());
        }
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.int_in(lo, hi, what).map(|_| ()),
            _ => self.wrong(what),
        }
    }

    #[inline(always)]
    fn opt_u32(&mut self) -> R<()> {
        self.opt_int(0, u64::from(u32::MAX), "u32")
    }

    /// A non-negative integer of at most 18 digits and at most `hi` right at the
    /// position (consumed), as `int_in` reads it; `None` (nothing consumed) for
    /// anything else, which the general path then reads or refuses. Counts, flags and
    /// enum numbers are written this way, a few per span.
    #[inline(always)]
    fn small_int(&mut self, hi: u64) -> Option<u64> {
        let b = self.b;
        let (v, end) = short_digits(b, self.i)?;
        if (b.get(self.i) == Some(&b'0') && end - self.i > 1)
            || matches!(b.get(end), Some(b'.' | b'e' | b'E'))
            || v > hi
        {
            return None;
        }
        self.i = end;
        Some(v)
    }

    /// An OTLP enum: its number (an `i32`), or its name in `names` (index = number).
    #[inline(always)]
    fn enumeration(&mut self, names: &'static [&'static str]) -> R<i32> {
        if let Some(v) = self.small_int(i32::MAX as u64) {
            return Ok(v as i32);
        }
        match self.peek() {
            Some(b'"') => {
                let at = self.i;
                let s = self.text("a string")?;
                match names.iter().position(|n| *n == s) {
                    Some(i) => Ok(i as i32),
                    None => {
                        self.i = at;
                        let s = crate::span::clip(s, 64).to_string();
                        self.fail(format!(
                            "invalid value: string {s:?}, expected an i32 or one of {}",
                            names.join(", ")
                        ))
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                match self.int_in(i64::from(i32::MIN), i32::MAX as u64, "i32")? {
                    Num::U(u) => Ok(u as i32),
                    Num::I(i) => Ok(i as i32),
                    Num::F(_) => self.fail("invalid type: floating point, expected i32"),
                }
            }
            _ => self.wrong("an i32 or an enum name"),
        }
    }

    /// A hex id, decoded into the arena as the full decoder decodes it (`const_hex`:
    /// even length, either case, an optional `0x`).
    #[inline(always)]
    fn hex(&mut self) -> R<&'a [u8]> {
        // As SDKs write ids: hex digits and the closing quote, nothing to unescape.
        if self.peek() == Some(b'"') {
            let b = self.b;
            let start = self.i + 1;
            // A span id (16 digits) or a trace id (32), eight digits at a time. The
            // span id's closing quote is tested first: a quote 32 bytes on does not
            // prove a trace id (`"spanId":"…","traceState":""`, as the loadgen and
            // SDKs write it, has one there, which sent such span ids down the byte
            // loop below: ~220 instructions a span), but a quote after 16 bytes rules
            // one out.
            if b.get(start + 16) == Some(&b'"') {
                if let Some(id) = b
                    .get(start..start + 16)
                    .and_then(|d| <&[u8; 16]>::try_from(d).ok())
                    .and_then(fixed_hex::<16, 8>)
                {
                    self.i = start + 17;
                    return Ok(&self.arena.alloc(id)[..]);
                }
            } else if b.get(start + 32) == Some(&b'"') {
                if let Some(id) = b
                    .get(start..start + 32)
                    .and_then(|d| <&[u8; 32]>::try_from(d).ok())
                    .and_then(fixed_hex::<32, 16>)
                {
                    self.i = start + 33;
                    return Ok(&self.arena.alloc(id)[..]);
                }
            }
            let mut end = start;
            while let Some(&c) = b.get(end) {
                if HEX[usize::from(c)] > 15 {
                    break;
                }
                end += 1;
            }
            if b.get(end) == Some(&b'"') && (end - start).is_multiple_of(2) {
                let digits = b.get(start..end).unwrap_or_default();
                let out = self.arena.alloc_slice_fill_copy(digits.len() / 2, 0u8);
                for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
                    *o = (HEX[usize::from(pair[0])] << 4) | HEX[usize::from(pair[1])];
                }
                self.i = end + 1;
                return Ok(out);
            }
        }
        let at = self.i;
        let s = self.text("an id as a string of hex digits")?;
        let b = s.as_bytes();
        if !b.len().is_multiple_of(2) {
            self.i = at;
            return self.fail(format!(
                "an id must be hex digits (got \"{}\", an odd number of characters)",
                crate::span::clip(s, 64)
            ));
        }
        let digits = match b {
            [b'0', b'x' | b'X', rest @ ..] => rest,
            _ => b,
        };
        let out = self.arena.alloc_slice_fill_copy(digits.len() / 2, 0u8);
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(h), Some(l)) => *o = (h << 4) | l,
                _ => {
                    self.i = at;
                    return self.fail(format!(
                        "an id must be hex digits (got \"{}\")",
                        crate::span::clip(s, 64)
                    ));
                }
            }
        }
        Ok(out)
    }

    /// `hex`, or `null` as no id.
    #[inline(always)]
    fn opt_hex(&mut self) -> R<&'a [u8]> {
        if self.null()? {
            return Ok(&[]);
        }
        self.hex()
    }

    // ------------------------------------------------------------- skipping

    /// Skips a value of an unknown field as serde's derive does (serde_json's
    /// `ignore_value`): syntax checked, strings not unescaped (so a lone surrogate
    /// passes), numbers not range-checked, and no depth limit, so the open brackets
    /// are kept in `frames`, not on the call stack.
    fn skip(&mut self) -> R<()> {
        self.frames.clear();
        loop {
            // A value.
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    self.lit()?;
                }
                Some(b'n') => self.word(b"null")?,
                Some(b't') => self.word(b"true")?,
                Some(b'f') => self.word(b"false")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(c @ (b'[' | b'{')) => {
                    self.i += 1;
                    self.frames.push(c);
                    let close = if c == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                        self.frames.pop();
                    } else {
                        if c == b'{' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                Some(_) => return self.fail("expected value"),
                None => return self.expected("a value"),
            }
            // After a value: the end of its containers, or the next member.
            loop {
                let Some(&open) = self.frames.last() else {
                    return Ok(());
                };
                let close = if open == b'[' { b']' } else { b'}' };
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if open == b'{' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        self.i += 1;
                        self.frames.pop();
                    }
                    Some(_) if open == b'[' => return self.fail("expected `,` or `]`"),
                    Some(_) => return self.fail("expected `,` or `}`"),
                    None => return self.expected("the end of an array or object"),
                }
            }
        }
    }

    /// A key inside a skipped object, and its colon.
    fn skip_key(&mut self) -> R<()> {
        if self.peek() != Some(b'"') {
            return self.fail("key must be a string");
        }
        self.i += 1;
        self.lit()?;
        self.eat(b':', "`:`")
    }

    /// Any value read in full and dropped (strings unescaped and checked, numbers in
    /// range, depth counted): what the full decoder does with unknown fields inside an
    /// `AnyValue`, which serde buffers.
    fn checked(&mut self) -> R<()> {
        match self.peek() {
            Some(b'"') => self.any_str(),
            Some(b'n') => self.word(b"null"),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'-' | b'0'..=b'9') => self.read_number().map(|_| ()),
            Some(b'[') => {
                self.array("any value")?;
                let mut first = true;
                while self.more(&mut first)? {
                    self.checked()?;
                }
                Ok(())
            }
            Some(b'{') => {
                self.object("any value")?;
                let mut first = true;
                while self.key(&mut first)?.is_some() {
                    self.checked()?;
                }
                Ok(())
            }
            Some(_) => self.fail("expected value"),
            None => self.expected("a value"),
        }
    }

    /// A known field given twice is refused, as serde's derive refuses it.
    #[inline(always)]
    fn first_time(&mut self, seen: &mut u32, bit: u32, name: &str) -> R<()> {
        if *seen & bit != 0 {
            return self.fail(format!("duplicate field `{name}`"));
        }
        *seen |= bit;
        Ok(())
    }

    // ------------------------------------------------------------- messages

    fn request(&mut self) -> R<()> {
        self.object("an ExportTraceServiceRequest object")?;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"resourceSpans" => {
                    self.first_time(&mut seen, 1, "resourceSpans")?;
                    if !self.null()? {
                        self.array("an array of ResourceSpans")?;
                        let mut first = true;
                        while self.more(&mut first)? {
                            self.resource_spans()?;
                        }
                    }
                }
                _ => self.skip()?,
            }
        }
        if self.peek().is_some() {
            return self.fail("trailing characters");
        }
        Ok(())
    }

    fn resource_spans(&mut self) -> R<()> {
        self.object("a ResourceSpans object")?;
        let index = self.out.resources.len() as u32;
        let first_attr = self.out.resource_attrs.len() as u32;
        self.out.resources.push(ResourceRec {
            service: UNKNOWN_SERVICE,
            attrs: (first_attr, first_attr),
            keys: 0,
        });
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"resource" => {
                    self.first_time(&mut seen, 1, "resource")?;
                    if !self.null()? {
                        self.resource()?;
                    }
                }
                b"scopeSpans" => {
                    self.first_time(&mut seen, 2, "scopeSpans")?;
                    if !self.null()? {
                        self.array("an array of ScopeSpans")?;
                        let mut first = true;
                        while self.more(&mut first)? {
                            self.scope_spans(index)?;
                        }
                    }
                }
                b"schemaUrl" => {
                    self.first_time(&mut seen, 4, "schemaUrl")?;
                    self.opt_text()?;
                }
                _ => self.skip()?,
            }
        }
        self.out.finish_resource(index, first_attr);
        Ok(())
    }

    fn resource(&mut self) -> R<()> {
        self.object("a Resource object")?;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"attributes" => {
                    self.first_time(&mut seen, 1, "attributes")?;
                    self.attrs(Dest::Resource)?;
                }
                b"droppedAttributesCount" => {
                    self.first_time(&mut seen, 2, "droppedAttributesCount")?;
                    self.opt_u32()?;
                }
                b"entityRefs" => {
                    self.first_time(&mut seen, 4, "entityRefs")?;
                    if !self.null()? {
                        self.array("an array of EntityRef")?;
                        let mut first = true;
                        while self.more(&mut first)? {
                            self.entity_ref()?;
                        }
                    }
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    fn entity_ref(&mut self) -> R<()> {
        self.object("an EntityRef object")?;
        // The full decoder's EntityRef has no defaults: every field is required.
        const NAMES: [&str; 4] = ["schemaUrl", "type", "idKeys", "descriptionKeys"];
        let (mut first, mut seen, mut present) = (true, 0u32, 0u32);
        while let Some(k) = self.key(&mut first)? {
            let name = self.known(k)?;
            let Some(n) = NAMES.iter().position(|n| n.as_bytes() == name) else {
                self.skip()?;
                continue;
            };
            self.first_time(&mut seen, 1 << n, NAMES[n])?;
            if self.null()? {
                continue;
            }
            if n < 2 {
                self.any_str()?;
            } else {
                self.array("an array of strings")?;
                let mut first = true;
                while self.more(&mut first)? {
                    self.any_str()?;
                }
            }
            present |= 1 << n;
        }
        if let Some(n) = (0..4).find(|n| present & (1 << n) == 0) {
            return self.fail(format!("missing field `{}`", NAMES[n]));
        }
        Ok(())
    }

    fn scope_spans(&mut self, resource: u32) -> R<()> {
        self.object("a ScopeSpans object")?;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"spans" => {
                    self.first_time(&mut seen, 2, "spans")?;
                    if !self.null()? {
                        self.array("an array of Span")?;
                        let mut first = true;
                        while self.more(&mut first)? {
                            self.span(resource)?;
                        }
                    }
                }
                b"scope" => {
                    self.first_time(&mut seen, 1, "scope")?;
                    if !self.null()? {
                        self.scope()?;
                    }
                }
                b"schemaUrl" => {
                    self.first_time(&mut seen, 4, "schemaUrl")?;
                    self.opt_text()?;
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    fn scope(&mut self) -> R<()> {
        self.object("an InstrumentationScope object")?;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"name" => {
                    self.first_time(&mut seen, 1, "name")?;
                    self.opt_text()?;
                }
                b"version" => {
                    self.first_time(&mut seen, 2, "version")?;
                    self.opt_text()?;
                }
                b"attributes" => {
                    self.first_time(&mut seen, 4, "attributes")?;
                    self.attrs(Dest::Nowhere)?;
                }
                b"droppedAttributesCount" => {
                    self.first_time(&mut seen, 8, "droppedAttributesCount")?;
                    self.opt_u32()?;
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    fn span(&mut self, resource: u32) -> R<()> {
        self.object("a Span object")?;
        if self.out.spans.len() >= self.out.max_spans {
            self.too_many = true;
            return Err(Fail);
        }
        let first_attr = self.out.span_attrs.len() as u32;
        let first_event = self.out.events.len() as u32;
        self.span_keys = 0;
        self.span_dups = 0;
        let mut s = SpanRec::empty(resource, first_attr, first_event);
        let (mut first, mut seen, mut next) = (true, 0u32, 0usize);
        // The fields in the order SDKs write them, in straight-line code: each member
        // is a literal compare and its read, without the general loop's two dispatches
        // and duplicate check per member (~1,300 instructions a span went to them and
        // the loop). Nothing was seen before the field read in each step, so no check
        // is needed; at the first member in any other form the general loop below
        // takes over where this stopped, with the same `first`, `seen` and `next`.
        'fast: {
            macro_rules! step {
                ($f:literal, $pat:literal) => {
                    if !self.starts($pat) {
                        break 'fast;
                    }
                    self.span_field($f, &mut s, first_attr)?;
                    (first, seen, next) = (false, seen | (1 << $f), $f + 1);
                };
            }
            step!(0, b"\"traceId\":");
            step!(1, b",\"spanId\":");
            step!(2, b",\"traceState\":");
            step!(3, b",\"parentSpanId\":");
            step!(4, b",\"flags\":");
            step!(5, b",\"name\":");
            step!(6, b",\"kind\":");
            step!(7, b",\"startTimeUnixNano\":");
            step!(8, b",\"endTimeUnixNano\":");
            step!(9, b",\"attributes\":");
            step!(10, b",\"droppedAttributesCount\":");
            step!(11, b",\"events\":");
            step!(12, b",\"droppedEventsCount\":");
            step!(13, b",\"links\":");
            step!(14, b",\"droppedLinksCount\":");
            step!(15, b",\"status\":");
        }
        loop {
            // The key SDKs write next, tried first; any other order reads the same.
            let f = match self.span_key(next, first) {
                true => {
                    first = false;
                    next
                }
                false => {
                    let Some(k) = self.key(&mut first)? else {
                        break;
                    };
                    let name = self.known(k)?;
                    match SPAN_FIELDS.iter().position(|n| n.as_bytes() == name) {
                        Some(f) => f,
                        None => {
                            self.skip()?;
                            continue;
                        }
                    }
                }
            };
            next = f + 1;
            self.first_time(&mut seen, 1 << f, SPAN_FIELDS[f])?;
            self.span_field(f, &mut s, first_attr)?;
        }
        s.attrs.1 = self.out.span_attrs.len() as u32;
        s.events.1 = self.out.events.len() as u32;
        s.keys = self.span_keys;
        s.dups = self.span_dups;
        self.out.spans.push(s);
        Ok(())
    }

    /// The value of span field `f` (of [`SPAN_FIELDS`]), its key read, into `s`.
    /// Inlined into both callers, so the fast path's constant `f` needs no dispatch.
    #[inline(always)]
    fn span_field(&mut self, f: usize, s: &mut SpanRec<'a>, first_attr: u32) -> R<()> {
        match f {
            0 => {
                s.trace_id = self.opt_hex()?;
            }
            1 => {
                s.span_id = self.opt_hex()?;
            }
            2 => {
                s.trace_state = self.opt_text()?.unwrap_or("");
            }
            3 => {
                s.parent_span_id = self.opt_hex()?;
            }
            4 => {
                self.opt_u32()?;
            }
            5 => {
                let (b, at, last) = (self.b, self.i, self.last_name);
                if b.get(at) == Some(&b'"') && same_plain(b, at + 1, last) {
                    self.i = at + 2 + last.len();
                    s.name = last;
                } else {
                    s.name = self.opt_text()?.unwrap_or("");
                    // Read plainly (an escape makes the text shorter than the literal).
                    if b.get(at) == Some(&b'"') && self.i == at + 2 + s.name.len() {
                        self.last_name = s.name;
                    }
                }
            }
            6 => {
                s.kind = if self.null()? {
                    0
                } else {
                    self.enumeration(SPAN_KINDS)?
                };
            }
            7 => {
                s.start_ns = if self.null()? { 0 } else { self.u64()? };
            }
            8 => {
                s.end_ns = if self.null()? { 0 } else { self.u64()? };
            }
            9 => {
                self.attrs(Dest::Span(first_attr))?;
            }
            10 => {
                self.opt_u32()?;
            }
            11 => {
                if !self.empty_array() && !self.null()? {
                    self.array("an array of Event")?;
                    let mut first = true;
                    while self.more(&mut first)? {
                        let name = self.event()?;
                        self.out.events.push(name);
                    }
                }
            }
            12 => {
                self.opt_u32()?;
            }
            13 => {
                if !self.empty_array() && !self.null()? {
                    self.array("an array of Link")?;
                    let mut first = true;
                    while self.more(&mut first)? {
                        self.link()?;
                    }
                }
            }
            14 => {
                self.opt_u32()?;
            }
            15 => {
                if !self.null()? {
                    s.status = self.status()?;
                }
            }
            _ => self.skip()?,
        }
        Ok(())
    }

    /// `[]` right at the position (consumed): what the general walk reads as an empty
    /// array, entering and leaving one level (so it too stops at the depth limit), as
    /// SDKs write a span's empty `events` and `links`.
    #[inline(always)]
    fn empty_array(&mut self) -> bool {
        self.depth + 1 < DEPTH_LIMIT && self.starts(b"[]")
    }

    /// Whether the text at the position is span field `next` (of [`SPAN_FIELDS`]) as the
    /// member after the previous one (`,"name":`; `"traceId":` first), consumed if so:
    /// the order SDKs write. Each pattern is a literal, so each compare is a few
    /// fixed-length loads rather than a call to `memcmp`.
    #[inline(always)]
    fn span_key(&mut self, next: usize, first: bool) -> bool {
        match next {
            0 if first => self.starts(b"\"traceId\":"),
            0 => self.starts(b",\"traceId\":"),
            1 => self.starts(b",\"spanId\":"),
            2 => self.starts(b",\"traceState\":"),
            3 => self.starts(b",\"parentSpanId\":"),
            4 => self.starts(b",\"flags\":"),
            5 => self.starts(b",\"name\":"),
            6 => self.starts(b",\"kind\":"),
            7 => self.starts(b",\"startTimeUnixNano\":"),
            8 => self.starts(b",\"endTimeUnixNano\":"),
            9 => self.starts(b",\"attributes\":"),
            10 => self.starts(b",\"droppedAttributesCount\":"),
            11 => self.starts(b",\"events\":"),
            12 => self.starts(b",\"droppedEventsCount\":"),
            13 => self.starts(b",\"links\":"),
            14 => self.starts(b",\"droppedLinksCount\":"),
            15 => self.starts(b",\"status\":"),
            _ => false,
        }
    }

    /// An `Event`: its name, the rest checked.
    fn event(&mut self) -> R<&'a str> {
        self.object("an Event object")?;
        let mut name = "";
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"timeUnixNano" => {
                    self.first_time(&mut seen, 1, "timeUnixNano")?;
                    if !self.null()? {
                        self.u64()?;
                    }
                }
                b"name" => {
                    self.first_time(&mut seen, 2, "name")?;
                    name = self.opt_text()?.unwrap_or("");
                }
                b"attributes" => {
                    self.first_time(&mut seen, 4, "attributes")?;
                    self.attrs(Dest::Nowhere)?;
                }
                b"droppedAttributesCount" => {
                    self.first_time(&mut seen, 8, "droppedAttributesCount")?;
                    self.opt_u32()?;
                }
                _ => self.skip()?,
            }
        }
        Ok(name)
    }

    fn link(&mut self) -> R<()> {
        self.object("a Link object")?;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"traceId" => {
                    self.first_time(&mut seen, 1, "traceId")?;
                    self.opt_hex()?;
                }
                b"spanId" => {
                    self.first_time(&mut seen, 2, "spanId")?;
                    self.opt_hex()?;
                }
                b"traceState" => {
                    self.first_time(&mut seen, 4, "traceState")?;
                    self.opt_text()?;
                }
                b"attributes" => {
                    self.first_time(&mut seen, 8, "attributes")?;
                    self.attrs(Dest::Nowhere)?;
                }
                b"droppedAttributesCount" => {
                    self.first_time(&mut seen, 16, "droppedAttributesCount")?;
                    self.opt_u32()?;
                }
                b"flags" => {
                    self.first_time(&mut seen, 32, "flags")?;
                    self.opt_u32()?;
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    /// A `Status`: its code, the message checked.
    fn status(&mut self) -> R<i32> {
        self.object("a Status object")?;
        let mut code = 0;
        let (mut first, mut seen) = (true, 0);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"message" => {
                    self.first_time(&mut seen, 1, "message")?;
                    self.opt_text()?;
                }
                b"code" => {
                    self.first_time(&mut seen, 2, "code")?;
                    if !self.null()? {
                        code = self.enumeration(STATUS_CODES)?;
                    }
                }
                _ => self.skip()?,
            }
        }
        Ok(code)
    }

    /// An optional list of attributes, kept where `into` says.
    fn attrs(&mut self, into: Dest) -> R<()> {
        if self.null()? {
            return Ok(());
        }
        self.array("an array of KeyValue")?;
        // The general walk would enter two objects per element; near the depth limit
        // it decides. Reading an element leaves the depth as it was, so once is enough.
        let plain = self.depth + 2 < DEPTH_LIMIT;
        let mut first = true;
        if plain {
            // The list as SDKs write it, `[{…},{…}]` with plain elements and no
            // whitespace, in a loop of its own: an element, then `,` or `]`. At the
            // first element in another form the general loop below goes on from the
            // comma before it (or from `[`), so it reads and refuses as if it had read
            // the whole list.
            let mut resume = self.i;
            // Only spans' keys are remembered: resources and events, read between
            // them, would put their own keys in the cache each time.
            let mut n = if matches!(into, Dest::Span(_)) {
                0
            } else {
                KEY_CACHE
            };
            loop {
                let Some(kv) = self.plain_key_value(n) else {
                    self.i = resume;
                    break;
                };
                first = false;
                n += 1;
                self.keep(into, kv);
                match self.b.get(self.i) {
                    Some(b',') => {
                        resume = self.i;
                        self.i += 1;
                    }
                    Some(b']') => {
                        self.i += 1;
                        self.depth -= 1;
                        return Ok(());
                    }
                    _ => break,
                }
            }
        }
        while self.more(&mut first)? {
            let kv = match plain.then(|| self.plain_key_value(KEY_CACHE)).flatten() {
                Some(kv) => kv,
                None => self.key_value(false)?,
            };
            self.keep(into, kv);
        }
        Ok(())
    }

    /// Keeps an attribute where `into` says.
    #[inline(always)]
    fn keep(&mut self, into: Dest, kv: Attr<'a>) {
        let out = &mut self.out;
        match into {
            Dest::Resource => out.resource_attrs.push(kv),
            Dest::Span(first) => {
                if out.span_attrs.len() - (first as usize) < out.max_attrs {
                    let bit = key_bit(kv.key);
                    self.span_dups |= self.span_keys & bit;
                    self.span_keys |= bit;
                    out.span_attrs.push(kv);
                }
            }
            Dest::Nowhere => {}
        }
    }

    /// A `KeyValue` exactly as SDKs write one (`{"key":"k","value":{"stringValue":"v"}}`,
    /// or an `intValue` of up to 18 digits, or a `boolValue`), read in one pass over a
    /// local cursor; `None`, with nothing consumed, for anything else, which
    /// [`Self::key_value`] then reads (and refuses) the general way. Most of a span's
    /// bytes are its attributes, and the general walk spends more on its calls, depth
    /// counting and per-member checks than on the bytes: this path reads the same
    /// values, since plain text has no escapes, whitespace or repeated members to
    /// handle. The literal text between the key and a string value (26 bytes) and
    /// after it (3) is one compare each: a few word loads, one branch.
    /// The caller checks the depth: the general walk would enter two objects, and near
    /// the depth limit it decides.
    /// `n`: the element's position in the list, for [`Self::key_cache`] (past its end:
    /// not looked up).
    #[inline(always)]
    fn plain_key_value(&mut self, n: usize) -> Option<Attr<'a>> {
        const TO_STRING: &[u8; 26] = b"\",\"value\":{\"stringValue\":\"";
        let (b, s) = (self.b, self.s);
        let mut i = self.i;
        if b.get(i..i + 8)? != b"{\"key\":\"" {
            return None;
        }
        i += 8;
        let start = i;
        // The key read at this position last time, if these bytes are it.
        let cached = self.key_cache.get(n).copied().unwrap_or("");
        let hit = same_plain(b, start, cached);
        i = if hit {
            start + cached.len()
        } else {
            plain_run(b, i)
        };
        let key_end = i;
        let value = if matches!(b.get(i..i + 26), Some(t) if t == TO_STRING) {
            i += 26;
            let last = self.value_cache.get(n).copied().unwrap_or("");
            let v = if same_plain(b, i, last) {
                i += last.len();
                if b.get(i..i + 3)? != b"\"}}" {
                    return None;
                }
                last
            } else {
                let start = i;
                i = plain_run(b, i);
                if b.get(i..i + 3)? != b"\"}}" {
                    return None;
                }
                let v = s.get(start..i)?;
                if let Some(c) = self.value_cache.get_mut(n) {
                    *c = v;
                }
                v
            };
            i += 3;
            AttrValue::Str(v)
        } else {
            if b.get(i..i + 12)? != b"\",\"value\":{\"" {
                return None;
            }
            i += 12;
            let v = match *b.get(i)? {
                b'i' => {
                    if b.get(i..i + 10)? != b"intValue\":" {
                        return None;
                    }
                    i += 10;
                    // A decimal string (the specification's form) or a number; what
                    // `i64()` reads from either when it has at most 18 digits and no
                    // sign.
                    let quoted = *b.get(i)? == b'"';
                    i += usize::from(quoted);
                    let (v, end) = short_digits(b, i)?;
                    if quoted {
                        if *b.get(end)? != b'"' {
                            return None;
                        }
                        i = end + 1;
                    } else {
                        // JSON's number rules: no leading zero, no fraction or exponent.
                        if (b.get(i) == Some(&b'0') && end - i > 1)
                            || matches!(b.get(end), Some(b'.' | b'e' | b'E'))
                        {
                            return None;
                        }
                        i = end;
                    }
                    AttrValue::Int(v as i64)
                }
                b'b' => {
                    if b.get(i..i + 11)? != b"boolValue\":" {
                        return None;
                    }
                    i += 11;
                    if b.get(i..i + 4)? == b"true" {
                        i += 4;
                        AttrValue::Bool(true)
                    } else if b.get(i..i + 5)? == b"false" {
                        i += 5;
                        AttrValue::Bool(false)
                    } else {
                        return None;
                    }
                }
                _ => return None,
            };
            if b.get(i..i + 2)? != b"}}" {
                return None;
            }
            i += 2;
            v
        };
        let key = if hit {
            cached
        } else {
            let key = s.get(start..key_end)?;
            if let Some(c) = self.key_cache.get_mut(n) {
                *c = key;
            }
            key
        };
        self.i = i;
        Some(Attr { key, value })
    }

    /// A `KeyValue`. `deep`: inside an `AnyValue`, where unknown fields are read in
    /// full.
    fn key_value(&mut self, deep: bool) -> R<Attr<'a>> {
        self.object("a KeyValue object")?;
        let mut key = None;
        let mut value = AttrValue::Other;
        let (mut first, mut seen) = (true, 0);
        // `{"key":"...","value":{...}}`, as every SDK writes it.
        if self.starts(b"\"key\":\"") {
            let l = self.lit()?;
            key = Some(if l.escaped {
                self.unescape(l.raw)?
            } else {
                l.raw
            });
            (first, seen) = (false, 1);
            if self.starts(b",\"value\":") {
                seen |= 2;
                if !self.null()? {
                    value = self.any_value()?;
                }
            }
        }
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"key" => {
                    self.first_time(&mut seen, 1, "key")?;
                    key = self.opt_text()?;
                }
                b"value" => {
                    self.first_time(&mut seen, 2, "value")?;
                    if !self.null()? {
                        value = self.any_value()?;
                    }
                }
                b"keyStrindex" => {
                    self.first_time(&mut seen, 4, "keyStrindex")?;
                    self.opt_int(i64::from(i32::MIN), i32::MAX as u64, "i32")?;
                }
                _ if deep => self.checked()?,
                _ => self.skip()?,
            }
        }
        match key {
            Some(key) => Ok(Attr { key, value }),
            None => self.fail("missing field `key`"),
        }
    }

    /// An `AnyValue`, read as [`AttrValue`]: arrays, kvlists, bytes and the empty value
    /// are checked and read as [`AttrValue::Other`]. A repeated member is not refused
    /// (the full decoder's fast path keeps the last), and a `null` member leaves the
    /// value as it was.
    fn any_value(&mut self) -> R<AttrValue<'a>> {
        self.object("an AnyValue object")?;
        let mut v = AttrValue::Other;
        let mut first = true;
        if self.starts(b"\"stringValue\":\"") {
            let l = self.lit()?;
            v = AttrValue::Str(if l.escaped {
                self.unescape(l.raw)?
            } else {
                l.raw
            });
            first = false;
        }
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"stringValue" => {
                    if let Some(s) = self.opt_text()? {
                        v = AttrValue::Str(s);
                    }
                }
                b"intValue" => {
                    if !self.null()? {
                        v = AttrValue::Int(self.i64()?);
                    }
                }
                b"boolValue" => {
                    if !self.null()? {
                        v = match self.peek() {
                            Some(b't') => self.word(b"true").map(|()| AttrValue::Bool(true))?,
                            Some(b'f') => self.word(b"false").map(|()| AttrValue::Bool(false))?,
                            _ => return self.wrong("a boolean"),
                        };
                    }
                }
                b"doubleValue" => {
                    if !self.null()? {
                        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
                            return self.wrong("f64");
                        }
                        v = AttrValue::Double(match self.read_number()? {
                            Num::U(u) => u as f64,
                            Num::I(i) => i as f64,
                            Num::F(f) => f,
                        });
                    }
                }
                b"arrayValue" => {
                    if !self.null()? {
                        self.list(false)?;
                        v = AttrValue::Other;
                    }
                }
                b"kvlistValue" => {
                    if !self.null()? {
                        self.list(true)?;
                        v = AttrValue::Other;
                    }
                }
                b"bytesValue" => {
                    if !self.null()? {
                        self.base64()?;
                        v = AttrValue::Other;
                    }
                }
                _ => self.checked()?,
            }
        }
        Ok(v)
    }

    /// `ArrayValue` or `KeyValueList`: `{"values": [...]}`, `values` required; checked.
    fn list(&mut self, kv: bool) -> R<()> {
        self.object("an ArrayValue or KeyValueList object")?;
        let (mut first, mut seen, mut values) = (true, 0, false);
        while let Some(k) = self.key(&mut first)? {
            match self.known(k)? {
                b"values" => {
                    self.first_time(&mut seen, 1, "values")?;
                    if !self.null()? {
                        self.array("an array of values")?;
                        let mut first = true;
                        while self.more(&mut first)? {
                            if kv {
                                self.key_value(true)?;
                            } else {
                                self.any_value()?;
                            }
                        }
                        values = true;
                    }
                }
                _ => self.checked()?,
            }
        }
        if values {
            Ok(())
        } else {
            self.fail("missing field `values`")
        }
    }

    /// `bytesValue`: standard base64 with padding, as the full decoder reads it.
    #[cold]
    fn base64(&mut self) -> R<()> {
        use base64::Engine as _;
        let at = self.i;
        let s = self.text("a base64 string")?;
        match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.i = at;
                self.fail(e.to_string())
            }
        }
    }
}

/// A JSON number as serde_json classifies it.
#[derive(Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

/// Where a list of attributes goes.
#[derive(Clone, Copy, PartialEq)]
enum Dest {
    Resource,
    /// The span's: the first `max_attrs` are kept, counted from this index.
    Span(u32),
    /// Checked, not kept (scope, event and link attributes).
    Nowhere,
}

/// A span's fields in the order SDKs (and serde's derive) write them.
const SPAN_FIELDS: [&str; 16] = [
    "traceId",
    "spanId",
    "traceState",
    "parentSpanId",
    "flags",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "attributes",
    "droppedAttributesCount",
    "events",
    "droppedEventsCount",
    "links",
    "droppedLinksCount",
    "status",
];

pub(super) const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

pub(super) const STATUS_CODES: &[&str] =
    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// Decodes the escapes of a checked literal's raw text into `out`, refusing what
/// serde_json refuses in a string it reads: a surrogate escape that is not half of a
/// pair.
fn decode_escapes(raw: &str, out: &mut String) -> Result<(), &'static str> {
    let b = raw.as_bytes();
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(raw.get(run..i).ok_or("invalid escape")?);
        let c = *b.get(i + 1).ok_or("invalid escape")?;
        i += 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let n = hex4(b, i).ok_or("invalid escape")?;
                i += 4;
                match n {
                    0xDC00..=0xDFFF => return Err("lone leading surrogate in hex escape"),
                    0xD800..=0xDBFF => {
                        if b.get(i..i + 2) != Some(b"\\u") {
                            return Err("unexpected end of hex escape");
                        }
                        let n2 = hex4(b, i + 2).ok_or("invalid escape")?;
                        if !(0xDC00..=0xDFFF).contains(&n2) {
                            return Err("lone leading surrogate in hex escape");
                        }
                        i += 6;
                        let c = 0x1_0000 + ((u32::from(n - 0xD800) << 10) | u32::from(n2 - 0xDC00));
                        char::from_u32(c).ok_or("invalid escape")?
                    }
                    n => char::from_u32(u32::from(n)).ok_or("invalid escape")?,
                }
            }
            _ => return Err("invalid escape"),
        };
        out.push(ch);
        run = i;
    }
    out.push_str(raw.get(run..).ok_or("invalid escape")?);
    Ok(())
}

fn hex4(b: &[u8], i: usize) -> Option<u16> {
    let d = b.get(i..i + 4)?;
    d.iter()
        .try_fold(0u16, |n, c| Some((n << 4) | u16::from(hex_digit(*c)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanView;

    const BODY: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"shop"}},
        {"key":"cloud.region","value":{"stringValue":"eu-west-1"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
         "name":"POST /checkout","kind":"SPAN_KIND_SERVER",
         "startTimeUnixNano":"10","endTimeUnixNano":20,
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},
                       {"key":"app.plan.tier","value":{"stringValue":"pr\u006f"}}],
         "events":[{"name":"exception","timeUnixNano":"15"}],
         "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;

    #[test]
    fn reads_what_the_pipeline_needs() {
        let arena = Bump::new();
        let req = decode_traces(BODY.as_bytes(), &arena).expect("valid request");
        assert_eq!(req.span_count(), 1);
        let s = req.spans().next().expect("a span");
        assert_eq!(s.service_name(), "shop");
        assert_eq!(s.name(), "POST /checkout");
        assert_eq!((s.kind(), s.status_code()), (2, 2));
        assert_eq!((s.start_ns(), s.end_ns()), (10, 20));
        assert_eq!(s.trace_id(), (1..=16).collect::<Vec<u8>>());
        assert_eq!(s.span_id(), (1..=8).collect::<Vec<u8>>());
        assert_eq!(
            s.attr("http.response.status_code"),
            Some(AttrValue::Int(503))
        );
        assert_eq!(s.attr("app.plan.tier"), Some(AttrValue::Str("pro")));
        assert_eq!(s.attr("cloud.region"), Some(AttrValue::Str("eu-west-1")));
        assert!(s.any_event(&mut |n| n == "exception"));
        assert_eq!(s.invalid_reason(), None);
    }

    #[test]
    fn refuses_what_is_not_otlp_json() {
        let arena = Bump::new();
        for bad in [
            &BODY.replace(
                "0102030405060708090a0b0c0d0e0f10",
                "AQIDBAUGBwgJCgsMDQ4PEA==",
            )[..],
            &BODY.replace("SPAN_KIND_SERVER", "SERVER"),
            &BODY.replace(r#""endTimeUnixNano":20"#, r#""endTimeUnixNano":2.5"#),
            &BODY.replace(r#"{"key":"cloud.region","#, "{"),
            &BODY[..BODY.len() - 1],
            "[]",
        ] {
            match decode_traces(bad.as_bytes(), &arena) {
                Err(JsonError::Invalid(m)) => assert!(m.starts_with("invalid OTLP JSON: ")),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            decode_traces_limited(BODY.as_bytes(), &arena, 16, 0),
            Err(JsonError::TooManySpans)
        ));
    }

    #[test]
    fn keeps_the_first_attributes_up_to_the_limit() {
        let arena = Bump::new();
        let req = decode_traces_limited(BODY.as_bytes(), &arena, 1, 10).expect("valid");
        let s = req.spans().next().expect("a span");
        assert_eq!(s.span_attrs().len(), 1);
        assert_eq!(s.attr("app.plan.tier"), None);
    }

    #[test]
    fn reads_hex_eight_digits_at_a_time_as_the_table_does() {
        // Every byte value at every position of a 16- and a 32-digit id: accepted
        // exactly when it is a hex digit, and then decoded as the byte-at-a-time table
        // decodes it.
        let table = |d: &[u8]| {
            d.chunks_exact(2)
                .map(|p| Some((hex_digit(p[0])? << 4) | hex_digit(p[1])?))
                .collect::<Option<Vec<u8>>>()
        };
        let base = *b"0123456789abcdef";
        let long = *b"0123456789abcdefABCDEF0123456789";
        for c in 0..=255u8 {
            for at in 0..16 {
                let mut d = base;
                d[at] = c;
                let got = fixed_hex::<16, 8>(&d).map(|o| o.to_vec());
                assert_eq!(got, table(&d), "byte {c:#x} at {at}");
            }
            for at in 0..32 {
                let mut d = long;
                d[at] = c;
                let got = fixed_hex::<32, 16>(&d).map(|o| o.to_vec());
                assert_eq!(got, table(&d), "byte {c:#x} at {at} of 32");
            }
        }
        assert_eq!(
            fixed_hex::<16, 8>(b"FEDCBA9876543210"),
            Some([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10])
        );
        assert_eq!(
            fixed_hex::<32, 16>(b"000102030405060708090a0B0c0D0e0F"),
            Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        );
    }

    #[test]
    fn reads_nineteen_digits_as_parse_does() {
        let base = *b"1796268837431336198";
        assert_eq!(nineteen_digits(&base), Some(1_796_268_837_431_336_198));
        assert_eq!(nineteen_digits(b"0000000000000000001"), Some(1));
        assert_eq!(
            nineteen_digits(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for c in 0..=255u8 {
            for at in 0..19 {
                let mut d = base;
                d[at] = c;
                let want = std::str::from_utf8(&d)
                    .ok()
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok());
                assert_eq!(nineteen_digits(&d), want, "byte {c:#x} at {at}");
            }
        }
    }

    #[test]
    fn finds_the_first_byte_that_ends_plain_text() {
        // Each stop byte at each offset of a 20-byte run: the SWAR search and the
        // byte loop after it must both find it, and nothing before it.
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..20 {
                let mut b = vec![b'a'; 20];
                b[at] = stop;
                // Bytes just above the stop set, which the masks must not flag.
                b[..at].iter_mut().step_by(3).for_each(|c| *c = 0x20);
                assert_eq!(plain_run(&b, 0), at, "stop {stop:#x} at {at}");
            }
        }
        assert_eq!(plain_run(&[0xe4, 0xb8, 0xad, b'x'], 0), 4);
    }

    #[test]
    fn plain_run_stops_where_a_byte_loop_stops_for_every_byte() {
        // Every byte value at every offset of a 20-byte run, after plain ASCII and after
        // bytes with the high bit set (UTF-8 continuation bytes, which share one `& !w`
        // with the three tests): the word search must agree with the byte test.
        let stops = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
        for fill in [b'a', 0x80, 0xa2, 0xdc, 0xff, 0x21, 0x5d] {
            for c in 0..=255u8 {
                for at in 0..20 {
                    let mut b = vec![fill; 20];
                    b[at] = c;
                    let want = b.iter().position(|&x| stops(x)).unwrap_or(b.len());
                    assert_eq!(
                        plain_run(&b, 0),
                        want,
                        "byte {c:#x} at {at} after {fill:#x}"
                    );
                }
            }
        }
    }
}
