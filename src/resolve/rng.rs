//! Query ids an off-path attacker cannot guess: SipHash-2-4 keyed with the
//! configured 128-bit seed, over a counter.
//!
//! A plain xorshift would be smaller still, but its state can be rebuilt
//! from a handful of outputs, and outputs are easy to see: anyone who can
//! make the program look up a name in a zone they serve reads the ids it
//! sends, and could then predict the ids of lookups sent elsewhere. A keyed
//! PRF does not leak its key through its outputs, so ids stay unpredictable
//! as long as the seed is secret. For one 8-byte block SipHash-2-4 is eight
//! rounds of additions, rotations and xors, and needs no dependency.
//!
//! The seed must come from the operating system's random source (the driver
//! reads `getrandom(2)` or `/dev/urandom` once, at construction). Tests pass
//! fixed seeds and get fixed ids.

/// Unpredictable 16-bit values for DNS query ids. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct IdSource {
    k0: u64,
    k1: u64,
    counter: u64,
}

impl IdSource {
    /// A source keyed with `seed`.
    pub(crate) fn new(seed: u128) -> IdSource {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = seed.to_le_bytes();
        IdSource {
            k0: u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            k1: u64::from_le_bytes([i, j, k, l, m, n, o, p]),
            counter: 0,
        }
    }

    /// The next 64 pseudo-random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let v = siphash24(self.k0, self.k1, self.counter);
        self.counter = self.counter.wrapping_add(1);
        v
    }

    /// The next DNS query id.
    pub(crate) fn next_id(&mut self) -> u16 {
        let [a, b, ..] = self.next_u64().to_le_bytes();
        u16::from_le_bytes([a, b])
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of the 8-byte message
/// `m.to_le_bytes()` under the key `(k0, k1)`.
pub(crate) fn siphash24(k0: u64, k1: u64, m: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // The one full block.
    v[3] ^= m;
    sip_rounds(&mut v, 2);
    v[0] ^= m;
    // The last block: no bytes left, the length (8) in the top byte.
    let last = 8u64 << 56;
    v[3] ^= last;
    sip_rounds(&mut v, 2);
    v[0] ^= last;
    v[2] ^= 0xff;
    sip_rounds(&mut v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_rounds(v: &mut [u64; 4], rounds: usize) {
    for _ in 0..rounds {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
}
