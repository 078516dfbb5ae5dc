//! dpkg version ordering (deb-version(7), dpkg's `dpkg_version_compare`): epoch
//! numerically, then upstream version and revision by the `verrevcmp` rules: non-digit
//! runs compare character by character with letters before other characters and `~`
//! before everything (even the end of the string), digit runs compare as numbers.

use std::cmp::Ordering;

/// A parsed `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub epoch: u64,
    pub upstream: String,
    pub revision: String,
}

impl Version {
    /// Parses a version as dpkg does; `Err` carries a one-line reason.
    pub fn parse(text: &str) -> Result<Version, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty version".into());
        }
        if text.contains(char::is_whitespace) {
            return Err(format!("version {text:?} contains whitespace"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => {
                let epoch = e
                    .parse::<u64>()
                    .map_err(|_| format!("version {text:?}: epoch {e:?} is not a number"))?;
                (epoch, rest)
            }
            None => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(format!("version {text:?} has an empty upstream part"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

/// Compares two version strings; unparsable versions sort by plain byte order after
/// every parsable one (dpkg refuses them; a merge only needs a total order to report).
pub fn compare(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkgdb::testgen::Rng;

    #[test]
    fn known_orderings() {
        let lt = |a: &str, b: &str| {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        };
        lt("1.0~rc1", "1.0");
        lt("1.0", "1.0+b1");
        lt("2.6.1", "2.6.2");
        lt("5.4.1-1+deb12u1", "5.4.1-1+deb12u2");
        lt("10.42-1", "10.42-1+deb12u2");
        lt("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1");
        lt("9:1", "10:0");
        lt("1.2.3", "1:0");
        lt("1.0~~", "1.0~");
        lt("a", "b");
        lt("1.01", "1.2");
        assert_eq!(compare("1.01", "1.1"), Ordering::Equal);
        assert_eq!(compare("0:1.0", "1.0"), Ordering::Equal);
        assert!(Version::parse("x:1").is_err());
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1:-1").is_err());
    }

    fn generated_version(rng: &mut Rng) -> String {
        let mut v = String::new();
        if rng.below(4) == 0 {
            v.push_str(&format!("{}:", rng.below(3)));
        }
        v.push_str(&rng.below(20).to_string());
        for _ in 0..rng.below(4) {
            v.push_str(rng.pick(&[".", "+", "~", "", "a", "dfsg", "~rc", "."]));
            v.push_str(&rng.word("0123456789", 3));
        }
        if rng.below(2) == 0 {
            v.push('-');
            v.push_str(&rng.word("0123456789", 2));
            v.push_str(rng.pick(&["", "+deb12u", "~bpo", "ubuntu", "+b"]));
            if rng.below(2) == 0 {
                v.push_str(&rng.word("0123456789", 2));
            }
        }
        v
    }

    /// Hundreds of generated pairs, checked against the real `dpkg --compare-versions`.
    #[test]
    fn agrees_with_dpkg_on_generated_pairs() {
        let mut rng = Rng::new(20261202);
        let mut checked = 0;
        for _ in 0..300 {
            let (a, b) = (generated_version(&mut rng), generated_version(&mut rng));
            let expected = ["lt", "eq", "gt"]
                .into_iter()
                .find(|op| {
                    std::process::Command::new("dpkg")
                        .args(["--compare-versions", &a, op, &b])
                        .status()
                        .expect("running dpkg --compare-versions (dpkg is part of Debian)")
                        .success()
                })
                .expect("dpkg answers lt, eq or gt");
            let ours = match compare(&a, &b) {
                Ordering::Less => "lt",
                Ordering::Equal => "eq",
                Ordering::Greater => "gt",
            };
            assert_eq!(ours, expected, "{a} vs {b}");
            checked += 1;
        }
        assert_eq!(checked, 300);
    }
}
