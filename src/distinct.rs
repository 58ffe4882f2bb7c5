//! A mergeable distinct count of users in three forms, each used while it is the
//! smallest: exact while it holds at most [`EXACT_MAX`] distinct 64-bit hashes, then a
//! sparse list of HyperLogLog registers (HLL++'s sparse form: one `(index, rank)` pair
//! per register that is not zero, 4 bytes each), then 2^[`PRECISION`] one-byte
//! registers once the list would be as large as they are. A leaf: it knows hashes, not
//! spans.
//!
//! The sparse form keeps the dense form's precision (unlike HLL++, whose sparse list
//! uses a finer index): it is the dense registers written differently, so converting
//! either way loses nothing, a merge gives the same registers whatever the forms of its
//! inputs, and a sketch's form follows from its content alone (at most 100 distinct
//! hashes: exact; else at most [`SPARSE_MAX`] registers set: sparse; else dense). Two
//! sketches of the same users are therefore equal, form and all, whatever the order of
//! inserts and merges that built them; the journey-level merge and partial merges from
//! other instances rely on that.
//!
//! Counts above [`EXACT_MAX`] use Ertl's improved estimator ("New cardinality
//! estimation algorithms for HyperLogLog sketches", 2017, also Redis's), which is
//! unbiased from a handful of users to billions without HLL++'s empirical bias tables.
//! It reads only how many registers hold each rank, which the sparse and dense forms
//! give identically. With m = 16384 registers the standard error is 1.04 / sqrt(m) =
//! 0.81%, so 2% is 2.5 standard errors.
//!
//! Heap per sketch (see the size test): exact 8 bytes a hash (capacity steps 4, 8, 16,
//! 32, 64, 100: at most 800 bytes); sparse 4 bytes a register with capacity growing by
//! half (at most 4095 registers, 16,380 bytes); dense 16,384 bytes.

use serde::{Deserialize, Serialize};

/// Distinct hashes kept exactly before the sketch turns into registers.
pub const EXACT_MAX: usize = 100;
/// Register index bits: 2^14 registers, 16 KiB per dense sketch.
pub const PRECISION: u32 = 14;
const M: usize = 1 << PRECISION;
/// Bits left for the rank after the index; a register holds 1..=Q+1.
const Q: u32 = 64 - PRECISION;
/// The most registers the sparse form holds: at 4 bytes each, one more would take as
/// many bytes as the dense form's M.
pub const SPARSE_MAX: usize = M / 4 - 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub enum Distinct {
    /// Sorted, deduplicated hashes; no heap until the first insert.
    Exact(Vec<u64>),
    /// The registers that are not zero, as `index << 8 | rank`, sorted by index.
    Sparse(Vec<u32>),
    /// One rank per register.
    Dense(Box<[u8]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

/// A sketch as read from a file, before its form is checked: a register index out of
/// range or an unsorted list would make counts wrong or indexing fail later.
#[derive(Deserialize)]
enum Unchecked {
    Exact(Vec<u64>),
    Sparse(Vec<u32>),
    Dense(Box<[u8]>),
}

impl TryFrom<Unchecked> for Distinct {
    type Error = String;

    fn try_from(u: Unchecked) -> Result<Distinct, String> {
        let max_rank = Q + 1;
        match u {
            Unchecked::Exact(v) if v.len() <= EXACT_MAX && v.windows(2).all(|w| w[0] < w[1]) => {
                Ok(Distinct::Exact(v))
            }
            Unchecked::Sparse(v)
                if v.len() <= SPARSE_MAX
                    && v.windows(2).all(|w| w[0] >> 8 < w[1] >> 8)
                    && v.iter()
                        .all(|&e| (e >> 8) < M as u32 && (1..=max_rank).contains(&(e & 0xff))) =>
            {
                Ok(Distinct::Sparse(v))
            }
            Unchecked::Dense(r) if r.len() == M && r.iter().all(|&x| u32::from(x) <= max_rank) => {
                Ok(Distinct::Dense(r))
            }
            _ => Err("not a well-formed distinct-user sketch".into()),
        }
    }
}

fn register(hash: u64) -> (usize, u8) {
    let idx = (hash >> Q) as usize;
    // The low Q bits with a stop bit, so the rank is at most Q + 1.
    let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
    (idx, rest.leading_zeros() as u8 + 1)
}

fn entry(idx: usize, rank: u8) -> u32 {
    ((idx as u32) << 8) | u32::from(rank)
}

fn entry_index(e: u32) -> usize {
    // Entries are made by `entry` or checked on load, so the mask changes nothing; it
    // keeps every register write in bounds without a branch.
    (e >> 8) as usize & (M - 1)
}

fn entry_rank(e: u32) -> u8 {
    (e & 0xff) as u8
}

/// The sparse list's capacity when it must hold `need` registers: half again, so
/// growing costs amortised O(1) copies and at most a third of the list is spare.
fn sparse_capacity(need: usize) -> usize {
    (need + need / 2).min(SPARSE_MAX)
}

/// The exact list's capacity when it must hold `need` hashes: doubling from 4, capped
/// at [`EXACT_MAX`] so a full list takes 800 bytes, not 1 KiB.
fn exact_capacity(need: usize) -> usize {
    need.next_power_of_two().clamp(4, EXACT_MAX)
}

impl Distinct {
    /// A sketch from its parts as read off the wire, checked as a file's is.
    pub fn checked_exact(hashes: Vec<u64>) -> Result<Distinct, String> {
        Distinct::try_from(Unchecked::Exact(hashes))
    }

    /// See [`Distinct::checked_exact`]; entries are `index << 8 | rank`.
    pub fn checked_sparse(entries: Vec<u32>) -> Result<Distinct, String> {
        Distinct::try_from(Unchecked::Sparse(entries))
    }

    /// See [`Distinct::checked_exact`]; one rank per register.
    pub fn checked_dense(registers: Box<[u8]>) -> Result<Distinct, String> {
        Distinct::try_from(Unchecked::Dense(registers))
    }

    /// Adds one user by the 64-bit hash of its id; the hash must be well mixed.
    pub fn insert(&mut self, hash: u64) {
        match self {
            Distinct::Exact(v) => {
                let Err(at) = v.binary_search(&hash) else {
                    return;
                };
                if v.len() < EXACT_MAX {
                    if v.len() == v.capacity() {
                        v.reserve_exact(exact_capacity(v.len() + 1) - v.len());
                    }
                    v.insert(at, hash);
                } else {
                    self.make_sparse();
                    self.insert(hash);
                }
            }
            _ => {
                let (i, rank) = register(hash);
                self.raise(i, rank);
            }
        }
    }

    /// Raises register `i` to at least `rank`; only for the register forms.
    fn raise(&mut self, i: usize, rank: u8) {
        match self {
            Distinct::Sparse(v) => match v.binary_search_by(|&e| entry_index(e).cmp(&i)) {
                Ok(at) => {
                    if entry_rank(v[at]) < rank {
                        v[at] = entry(i, rank);
                    }
                }
                Err(_) if v.len() == SPARSE_MAX => {
                    self.make_dense();
                    self.raise(i, rank);
                }
                Err(at) => {
                    if v.len() == v.capacity() {
                        v.reserve_exact(sparse_capacity(v.len() + 1) - v.len());
                    }
                    v.insert(at, entry(i, rank));
                }
            },
            Distinct::Dense(r) => {
                let x = &mut r[i & (M - 1)];
                *x = (*x).max(rank);
            }
            Distinct::Exact(_) => {
                self.make_sparse();
                self.raise(i, rank);
            }
        }
    }

    /// Exact to sparse: the hashes' registers, highest rank per index.
    fn make_sparse(&mut self) {
        let Distinct::Exact(hashes) = self else {
            return;
        };
        let mut v = Vec::with_capacity(sparse_capacity(EXACT_MAX + 1));
        v.extend(hashes.iter().map(|&h| {
            let (i, rank) = register(h);
            entry(i, rank)
        }));
        v.sort_unstable();
        // Sorted by index then rank: keep the last, highest, entry of each index.
        v.dedup_by(|later, earlier| {
            let same = entry_index(*later) == entry_index(*earlier);
            if same {
                *earlier = *later;
            }
            same
        });
        *self = Distinct::Sparse(v);
    }

    fn make_dense(&mut self) {
        let mut r = vec![0u8; M].into_boxed_slice();
        match self {
            Distinct::Exact(hashes) => {
                for &h in hashes.iter() {
                    let (i, rank) = register(h);
                    r[i] = r[i].max(rank);
                }
            }
            Distinct::Sparse(v) => {
                for &e in v.iter() {
                    r[entry_index(e)] = entry_rank(e);
                }
            }
            Distinct::Dense(_) => return,
        }
        *self = Distinct::Dense(r);
    }

    /// Makes `self` the sketch of the union: a user in both counts once. The result is
    /// the sketch that inserting every user of both into one would give, form included.
    pub fn merge(&mut self, other: &Distinct) {
        // A window's merge starts from an empty sketch: take the first slot's as it is.
        if self.is_empty() {
            self.clone_from(other);
            return;
        }
        match other {
            Distinct::Exact(o) => {
                for &h in o {
                    self.insert(h);
                }
            }
            Distinct::Sparse(o) => {
                if let Distinct::Dense(r) = self {
                    for &e in o {
                        let x = &mut r[entry_index(e)];
                        *x = (*x).max(entry_rank(e));
                    }
                    return;
                }
                // `other` holds more than EXACT_MAX users, so the union does too.
                self.make_sparse();
                if let Distinct::Sparse(v) = self {
                    *v = merge_sorted(v, o);
                    if v.len() > SPARSE_MAX {
                        self.make_dense();
                    }
                }
            }
            Distinct::Dense(o) => {
                self.make_dense();
                if let Distinct::Dense(r) = self {
                    for (a, b) in r.iter_mut().zip(o.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// The number of distinct users: exact up to [`EXACT_MAX`], estimated above.
    pub fn count(&self) -> u64 {
        let mut hist = [0u32; Q as usize + 2];
        match self {
            Distinct::Exact(v) => return v.len() as u64,
            Distinct::Sparse(v) => {
                hist[0] = (M - v.len()) as u32;
                for &e in v {
                    hist[usize::from(entry_rank(e)).min(Q as usize + 1)] += 1;
                }
            }
            Distinct::Dense(r) => {
                for &x in r.iter() {
                    hist[usize::from(x).min(Q as usize + 1)] += 1;
                }
            }
        }
        estimate(&hist).round() as u64
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Distinct::Exact(v) if v.is_empty())
    }

    /// Forgets every user and gives the registers back, so an idle slot costs no
    /// more than an exact list's capacity (at most 800 bytes).
    pub fn clear(&mut self) {
        match self {
            Distinct::Exact(v) => v.clear(),
            _ => *self = Distinct::default(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Distinct::Exact(v) => v.capacity() * 8,
            Distinct::Sparse(v) => v.capacity() * 4,
            Distinct::Dense(r) => r.len(),
        }
    }

    /// Which form the sketch is in, for tests and diagnostics.
    pub fn form(&self) -> &'static str {
        match self {
            Distinct::Exact(_) => "exact",
            Distinct::Sparse(_) => "sparse",
            Distinct::Dense(_) => "dense",
        }
    }
}

/// The union of two sparse lists, highest rank per index, in one pass.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    // Sized for the worst case; the result is a scratch sketch or becomes dense.
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        match entry_index(x).cmp(&entry_index(y)) {
            std::cmp::Ordering::Less => {
                out.push(x);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(y);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(x.max(y));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Ertl's estimate from how many registers hold each rank (`hist[k]`, k = 0..=Q+1).
fn estimate(hist: &[u32; Q as usize + 2]) -> f64 {
    let m = M as f64;
    let mut z = m * tau((m - f64::from(hist[Q as usize + 1])) / m);
    for k in (1..=Q as usize).rev() {
        z += f64::from(hist[k]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(hist[0]) / m);
    m * m / (2.0 * std::f64::consts::LN_2 * z)
}
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn hash(i: u64) -> u64 {
        ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(i)
    }

    /// A hash landing in register `i` with rank 1: index in the top 14 bits, then a 1.
    fn in_register(i: u64) -> u64 {
        (i << Q) | (1 << (Q - 1))
    }

    fn built(users: impl Iterator<Item = u64>) -> Distinct {
        let mut d = Distinct::default();
        users.for_each(|u| d.insert(u));
        d
    }

    fn dense_copy(d: &Distinct) -> Distinct {
        let mut c = d.clone();
        c.make_dense();
        c
    }

    #[test]
    fn exact_up_to_one_hundred_and_repeats_count_once() {
        let mut d = Distinct::default();
        for round in 0..3 {
            for i in 0..100 {
                d.insert(hash(i));
            }
            assert_eq!(d.count(), 100, "round {round}");
        }
        assert_eq!(d.form(), "exact");
        d.insert(hash(100));
        assert_eq!(d.form(), "sparse");
        assert_eq!(d.count(), 101, "the estimate at 101 is still 101");
    }

    #[test]
    fn each_form_takes_the_bytes_worked_out() {
        let mut d = Distinct::default();
        assert_eq!(d.heap_bytes(), 0);
        // Exact capacities 4, 8, 16, 32, 64, then 100 (not 128): 100 x 8 = 800 bytes.
        (0..100).for_each(|i| d.insert(in_register(i)));
        assert_eq!((d.form(), d.heap_bytes()), ("exact", 800));
        // The 101st user: 101 registers (one per user here) in a list of capacity
        // 101 + 50 = 151, at 4 bytes each 604 bytes.
        d.insert(in_register(100));
        assert_eq!((d.form(), d.heap_bytes()), ("sparse", 604));
        // When full, room for the next register plus half: 151 -> 152 + 76 = 228 ->
        // 229 + 114 = 343 -> 516 -> 775 -> 1164 -> 1747 -> 2622 -> 3934 -> 4095
        // (5902 capped at SPARSE_MAX); at 4095 registers the list takes 16,380 bytes,
        // 4 less than the dense form.
        (101..229).for_each(|i| d.insert(in_register(i)));
        assert_eq!(d.heap_bytes(), 343 * 4, "229 registers outgrew 228");
        (229..4095).for_each(|i| d.insert(in_register(i)));
        assert_eq!((d.form(), d.heap_bytes()), ("sparse", 16_380));
        // The 4096th register would make the list 16,384 bytes: dense instead.
        d.insert(in_register(4095));
        assert_eq!((d.form(), d.heap_bytes()), ("dense", 16_384));
        // A repeat of a set register, or a lower rank, changes nothing in any form.
        let before = d.clone();
        d.insert(in_register(7));
        assert_eq!(d, before);
    }

    #[test]
    fn the_form_and_the_count_follow_from_the_users_alone() {
        // For each size, the sketch built by one stream of inserts must equal (form,
        // registers and all) the one built in reverse and the merge of three parts of
        // different forms; and the count must be the dense form's bit for bit.
        for n in [60u64, 100, 101, 150, 1_000, 4_000, 6_000, 30_000] {
            let direct = built((0..n).map(hash));
            let reverse = built((0..n).rev().map(hash));
            assert_eq!(direct, reverse, "n = {n}");
            // Parts of 50 (exact), n/3 and the rest, merged in both orders.
            let cut = (50 + n / 3).min(n);
            let parts = [
                built((0..50.min(n)).map(hash)),
                built((50.min(n)..cut).map(hash)),
                built((cut..n).map(hash)),
            ];
            let mut forward = Distinct::default();
            parts.iter().for_each(|p| forward.merge(p));
            let mut backward = Distinct::default();
            parts.iter().rev().for_each(|p| backward.merge(p));
            assert_eq!(forward, direct, "n = {n}, merged forward");
            assert_eq!(backward, direct, "n = {n}, merged backward");
            if direct.form() != "exact" {
                assert_eq!(direct.count(), dense_copy(&direct).count(), "n = {n}");
            }
        }
        // The forms the sizes above reach: 101 and 150 users are sparse, and 6,000
        // users set more than 4,095 of the 16,384 registers (about 16384 x (1 -
        // e^(-6000/16384)) = 5,030), so dense.
        assert_eq!(built((0..150).map(hash)).form(), "sparse");
        assert_eq!(built((0..4_000).map(hash)).form(), "sparse");
        assert_eq!(built((0..6_000).map(hash)).form(), "dense");
    }

    #[test]
    fn within_two_percent_from_the_sparse_sizes_to_one_hundred_thousand() {
        let mut rng = Rng::new(42);
        let mut d = Distinct::default();
        let mut n = 0u64;
        for target in [500u64, 2_000, 4_000, 100_000] {
            while n < target {
                d.insert(rng.next_u64());
                n += 1;
            }
            let err = (d.count() as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.02, "count {} of {n} is {err} off", d.count());
        }
        assert_eq!(d.form(), "dense");
    }

    #[test]
    fn merge_counts_a_user_in_two_sketches_once() {
        // Exact with exact: users 0..60 and 40..100 are 100 users, 20 of them in both.
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        (0..60).for_each(|i| a.insert(hash(i)));
        (40..100).for_each(|i| b.insert(hash(i)));
        a.merge(&b);
        assert_eq!((a.form(), a.count()), ("exact", 100));
        // Sparse with sparse whose union needs the dense form, and dense with dense:
        // each merge is the sketch of the union.
        for (x, y) in [(2_000u64, 5_000u64), (20_000, 50_000)] {
            let mut a = built((0..y - x).map(hash));
            let b = built((x..y).map(hash));
            let union = built((0..y).map(hash));
            a.merge(&b);
            assert_eq!(a, union, "{x}..{y}");
        }
        // Exact into dense and dense into exact.
        let b = built((20_000..50_000).map(hash));
        let mut small = built((0..10).map(hash));
        let mut big = b.clone();
        big.merge(&small);
        small.merge(&b);
        assert_eq!(big, small);
    }

    #[test]
    fn clear_frees_the_registers() {
        for n in [500, 10_000] {
            let mut d = built((0..n).map(hash));
            assert!(d.heap_bytes() > 800, "{n}: {}", d.heap_bytes());
            d.clear();
            assert_eq!((d.count(), d.heap_bytes(), d.form()), (0, 0, "exact"));
        }
    }

    #[test]
    fn a_checkpoint_round_trip_keeps_the_sketch_and_refuses_a_malformed_one() {
        for n in [50, 500, 10_000] {
            let d = built((0..n).map(hash));
            let back: Distinct = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
            assert_eq!(back, d);
        }
        for bad in [
            r#"{"Exact":[2,1]}"#,      // unsorted
            r#"{"Sparse":[513,257]}"#, // registers 2 then 1
            r#"{"Sparse":[256]}"#,     // rank 0
            r#"{"Sparse":[4194305]}"#, // register 16384 of 16384
            r#"{"Dense":[1,2,3]}"#,    // not 16384 registers
        ] {
            assert!(serde_json::from_str::<Distinct>(bad).is_err(), "{bad}");
        }
    }
}
