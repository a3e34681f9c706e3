//! A small seeded mutator for the stable smoke fuzzers (`node/tests/fuzz_smoke.rs`,
//! `chaos/tests/fuzz_smoke.rs` include this file by path). It is no match for
//! libFuzzer's coverage-guided search (`fuzz/`, nightly); it makes every CI run
//! feed the same tens of thousands of hostile inputs to each entry point.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Length prefixes that are too big, in the encodings our decoders read:
/// a frame's u32 BE, bincode's varints, and protobuf's varints.
const BIG_PREFIXES: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff],
    &[0x01, 0x00, 0x00, 0x01],
    &[0x7f, 0xff, 0xff, 0xff],
    &[251, 0xff, 0xff],
    &[252, 0xff, 0xff, 0xff, 0xff],
    &[252, 0x00, 0x00, 0x00, 0x0c],
    &[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[253, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
    &[
        254, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff,
    ],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    ],
];

/// Bytes that sit on boundaries: zero, sign bits, bincode's varint markers.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, 250, 251, 252, 253, 254];

pub struct Mutator {
    rng: StdRng,
    seeds: Vec<Vec<u8>>,
    /// Tokens worth inserting whole (keywords of a text format).
    tokens: Vec<Vec<u8>>,
}

impl Mutator {
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>, tokens: &[&str]) -> Self {
        assert!(!seeds.is_empty(), "a mutator needs at least one seed");
        Mutator {
            rng: StdRng::seed_from_u64(seed),
            seeds,
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        }
    }

    /// The next input: one in eight is random bytes, the rest are one to
    /// four stacked mutations of a seed.
    pub fn next_input(&mut self) -> Vec<u8> {
        if self.rng.random_ratio(1, 8) {
            let len = self.rng.random_range(0..64);
            return (0..len).map(|_| self.rng.random()).collect();
        }
        let mut input = self.seeds[self.rng.random_range(0..self.seeds.len())].clone();
        for _ in 0..self.rng.random_range(1..=4) {
            self.mutate(&mut input);
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let at = |rng: &mut StdRng, input: &Vec<u8>| rng.random_range(0..=input.len());
        match self.rng.random_range(0..9) {
            0 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let cut = at(&mut self.rng, input);
                input.truncate(cut);
            }
            3 => {
                let i = at(&mut self.rng, input);
                let len = self.rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
                input.splice(i..i, bytes);
            }
            4 => {
                let start = at(&mut self.rng, input);
                let end = self.rng.random_range(start..=input.len().min(start + 16));
                input.drain(start..end);
            }
            5 => {
                // Splice: the tail of another seed after a prefix of this one.
                let other = &self.seeds[self.rng.random_range(0..self.seeds.len())];
                let from = self.rng.random_range(0..=other.len());
                let cut = at(&mut self.rng, input);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            6 => {
                // A big length prefix, written over the input or inserted.
                let prefix = BIG_PREFIXES[self.rng.random_range(0..BIG_PREFIXES.len())];
                let i = at(&mut self.rng, input);
                if self.rng.random() {
                    input.splice(i..i, prefix.iter().copied());
                } else {
                    let end = (i + prefix.len()).min(input.len());
                    input.splice(i..end, prefix.iter().copied());
                }
            }
            7 if !input.is_empty() => {
                // Repeat a slice of the input, as nested or listed data would.
                let start = self.rng.random_range(0..input.len());
                let end = self.rng.random_range(start..=input.len().min(start + 32));
                let piece = input[start..end].to_vec();
                let i = at(&mut self.rng, input);
                input.splice(i..i, piece);
            }
            8 if !self.tokens.is_empty() => {
                let token = self.tokens[self.rng.random_range(0..self.tokens.len())].clone();
                let i = at(&mut self.rng, input);
                input.splice(i..i, token);
            }
            _ => {
                let i = at(&mut self.rng, input);
                input.insert(i, self.rng.random());
            }
        }
    }
}

/// Feeds `count` inputs to `target`; a panic names the seed and the input.
pub fn run(
    name: &str,
    seed: u64,
    count: usize,
    seeds: Vec<Vec<u8>>,
    tokens: &[&str],
    target: fn(&[u8]),
) {
    for input in &seeds {
        check(name, seed, input, target);
    }
    let mut mutator = Mutator::new(seed, seeds, tokens);
    for _ in 0..count {
        let input = mutator.next_input();
        check(name, seed, &input, target);
    }
}

fn check(name: &str, seed: u64, input: &[u8], target: fn(&[u8])) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        panic!("fuzz target {name} (seed {seed}) panicked on input {input:?}");
    }
}
