//! Inflating a gzip request body within a limit, into a reused buffer: what both OTLP
//! receivers do with a compressed body (HTTP's `Content-Encoding: gzip`, gRPC's
//! `grpc-encoding: gzip` message).

/// Why a body could not be inflated.
pub enum Inflate {
    TooLarge,
    Corrupt(std::io::Error),
}

/// Inflates at most `max` bytes into `out` (empty, reused): a zip bomb stops at the
/// limit instead of filling memory. The output is written straight into `out`'s spare
/// capacity: `Read::read_to_end` zero-filled that capacity first (flate2's reader takes
/// an initialised slice), a memset of the whole inflated body per request (~1,500
/// instructions a span for the 1 MB loadgen request). Like `read::GzDecoder` before it,
/// this reads one gzip member, checks its CRC-32 and length trailer and ignores what
/// follows it.
pub fn inflate(gz: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), Inflate> {
    use flate2::{Decompress, FlushDecompress, Status};
    let corrupt = |e: &dyn std::fmt::Display| {
        Inflate::Corrupt(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    };
    // One byte past the limit is room enough to tell a body over it.
    let cap = max.saturating_add(1);
    out.reserve_exact((gz.len() * 4).clamp(1, cap));
    // 15: the largest window, the one gzip writes; new_gzip expects the gzip header.
    let mut z = Decompress::new_gzip(15);
    // Each round either consumes input, fills output or ends, so the rounds are bounded
    // by the input and output sizes; the limit is a guard, not a rule.
    for _ in 0..gz.len().saturating_add(cap).saturating_add(2) {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                return Err(Inflate::TooLarge);
            }
            // Doubling, up to the limit: amortised like Vec's own growth.
            let room = out.capacity().max(64 << 10).min(cap - out.len());
            out.reserve_exact(room);
        }
        let (used, made) = (z.total_in(), z.total_out());
        let input = gz.get(used as usize..).unwrap_or_default();
        let status = z
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|e| corrupt(&e))?;
        if out.len() > max {
            return Err(Inflate::TooLarge);
        }
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => {
                let stuck = z.total_in() == used && z.total_out() == made;
                if stuck && out.len() < out.capacity() {
                    // Room to write and nothing left to read: the body stops mid-stream.
                    return Err(corrupt(&"gzip body ends before its end marker"));
                }
            }
        }
    }
    Err(corrupt(&"gzip body does not end"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("in memory");
        e.finish().expect("in memory")
    }

    /// What the receiver did before: flate2's reader, one member, `max + 1` bytes read.
    fn oracle(gz: &[u8], max: usize) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(gz).take(max as u64 + 1);
        match dec.read_to_end(&mut out) {
            Err(_) => Err("corrupt"),
            Ok(_) if out.len() > max => Err("too large"),
            Ok(_) => Ok(out),
        }
    }

    fn ours(gz: &[u8], max: usize) -> Result<Vec<u8>, &'static str> {
        // A reused buffer: a pooled one keeps an earlier body's capacity.
        let mut out = Vec::with_capacity(7);
        match inflate(gz, max, &mut out) {
            Err(Inflate::Corrupt(_)) => Err("corrupt"),
            Err(Inflate::TooLarge) => Err("too large"),
            Ok(()) => Ok(out),
        }
    }

    #[test]
    fn inflate_reads_and_refuses_what_the_stream_reader_did() {
        // 300,000 bytes of a repeating 17-byte pattern, so the output crosses several
        // growth steps (64 KiB, 128 KiB, 256 KiB, then the rest).
        let body: Vec<u8> = (0..300_000u32)
            .map(|i| b"0123456789abcdefg"[(i % 17) as usize])
            .collect();
        let gz = gzip(&body);
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1; // the CRC-32 trailer's first byte
        let mut bad_len = gz.clone();
        bad_len[n - 1] ^= 1; // ISIZE's last byte
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"garbage after the member");
        let mut two = gz.clone();
        two.extend_from_slice(&gzip(b"second member"));
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            ("whole", gz.clone(), 1 << 20),
            ("exactly at the limit", gz.clone(), 300_000),
            ("one byte over the limit", gz.clone(), 299_999),
            ("far over the limit", gz.clone(), 1_000),
            ("empty body inflated", gzip(b""), 10),
            ("no bytes at all", Vec::new(), 10),
            ("header only", gz[..10].to_vec(), 1 << 20),
            ("cut in the middle", gz[..gz.len() / 2].to_vec(), 1 << 20),
            ("cut before the trailer", gz[..n - 8].to_vec(), 1 << 20),
            ("cut inside the trailer", gz[..n - 3].to_vec(), 1 << 20),
            ("bad CRC", bad_crc, 1 << 20),
            ("bad length", bad_len, 1 << 20),
            ("trailing bytes", trailing, 1 << 20),
            ("two members", two, 1 << 20),
            ("not gzip", b"{\"resourceSpans\":[]}".to_vec(), 1 << 20),
        ];
        for (what, gz, max) in cases {
            assert_eq!(ours(&gz, max), oracle(&gz, max), "{what}");
        }
        assert_eq!(ours(&gzip(&body), 1 << 20).map(|b| b.len()), Ok(300_000));
    }
}
