//! A small deterministic mutator for the bounded test: the same seed gives
//! the same inputs on every machine, so a failure reproduces from its
//! iteration number alone.

/// xorshift64*: fast, and enough to pick positions and bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Fragments that reach the corners of JSON, Jinja, grammars and tokenizers.
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"\\", b"\\u0000", b"\\ud800", b"null", b"true", b"-0", b"1e999999",
    b"18446744073709551616", b"-9223372036854775809", b"0.0000000000000000000001", b"NaN", b"\xff", b"\xc3", b"\xed\xa0\x80",
    b"{{", b"}}", b"{%", b"%}", b"<|im_end|>", b"<|im_start|>", b"<end_of_turn>", b"[CLS]", b"$ref", b"#", b"(a+)+",
    b"{1000}", b"*", b"::=", b"|", b"\"type\"", b"\"object\"", b"\"string\"", b"\"pattern\"", b"\"enum\"", b"\"messages\"",
    b"\"role\"", b"\"content\"", b"\"tools\"", b"\"max_tokens\"", b"\"n\"", b"\x00", b"\n", b"\xf4\x8f\xbf\xbf",
];

/// `input` changed in one to four places: bit flips, byte changes, inserted
/// fragments, deleted or repeated ranges, or a splice of `other`.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 | 3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.iter().copied());
            }
            4 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at.min(end)..end);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let piece = out[start..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            6 if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            _ => {
                let b = rng.next() as u8;
                out.insert(at, b);
            }
        }
    }
    out
}
