//! Deterministic generators for the package-database property tests (test builds only).

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    pub fn word(&mut self, alphabet: &str, max_len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let len = 1 + self.below(max_len);
        (0..len).map(|_| chars[self.below(chars.len())]).collect()
    }
}

/// A random but well-formed deb822 text: field order, continuation lines, comments,
/// varying separators and a sometimes-missing final newline.
pub fn deb822_text(rng: &mut Rng) -> String {
    let mut out = String::new();
    let stanzas = rng.below(5);
    for i in 0..stanzas {
        if i > 0 || rng.below(4) == 0 {
            for _ in 0..1 + rng.below(2) {
                out.push_str(rng.pick(&["\n", " \n", "\t\n"]));
            }
        }
        for _ in 0..1 + rng.below(6) {
            match rng.below(8) {
                0 => out.push_str(&format!("# {}\n", rng.word("abc xyz", 10))),
                _ => {
                    let name = rng.word("ABCDEFabcdef-", 8);
                    let sep = rng.pick(&[": ", ":", ":  ", ":\t"]);
                    out.push_str(&format!("{name}{sep}{}\n", rng.word("abc 0.9:~+-()|,", 20)));
                    for _ in 0..rng.below(3) {
                        out.push_str(&format!(
                            "{}x{}\n",
                            rng.pick(&[" ", "\t", "  "]),
                            rng.word("abc .0123", 12)
                        ));
                    }
                }
            }
        }
    }
    if stanzas > 0 && rng.below(3) == 0 {
        out.push('\n');
    }
    if rng.below(5) == 0 {
        out.pop();
    }
    out
}
