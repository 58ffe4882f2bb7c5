//! Multiplicative mixing for the integer-keyed hash tables of the record stage: keys
//! that are already hashes or small ids need one multiply, not SipHash.

/// 2^64 divided by the golden ratio: a multiply by it spreads consecutive integers
/// over the high bits (Fibonacci hashing).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `state` with every byte of `bytes` mixed in: the fallback of hashers built for one
/// integer key, so a key of another shape still hashes by all of its bytes.
pub fn mix_bytes(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| {
        (h.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_byte_is_mixed_in_order() {
        assert_eq!(mix_bytes(7, &[]), 7);
        // One byte by hand: (0 rotated ^ 1) * GOLDEN.
        assert_eq!(mix_bytes(0, &[1]), GOLDEN);
        assert_ne!(mix_bytes(0, &[1, 2]), mix_bytes(0, &[2, 1]));
    }
}
