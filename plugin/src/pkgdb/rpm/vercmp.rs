//! rpm's version ordering (`rpmvercmp`, `rpmverCmp` of `lib/rpmvercmp.c` read as facts):
//! segments of digits or letters compared in turn, separators ignored, digits newer than
//! letters, numbers by value, `~` older than anything (even the end) and `^` newer than
//! the end but older than anything else. EVR: epoch (missing = 0), version, release.

use std::cmp::Ordering;

/// Compares two version (or release) strings.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let ea = i + a[i..].iter().take_while(|c| class(c)).count();
        let eb = j + b[j..].iter().take_while(|c| class(c)).count();
        if ea == i {
            return Ordering::Less; // cannot happen: a[i] is alphanumeric
        }
        if eb == j {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[i..ea], &b[j..eb]);
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ea;
        j = eb;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Splits `[epoch:]version[-release]`.
pub fn split_evr(evr: &str) -> (u64, &str, Option<&str>) {
    let (epoch, rest) = match evr.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, evr),
    };
    match rest.rsplit_once('-') {
        Some((v, r)) => (epoch, v, Some(r)),
        None => (epoch, rest, None),
    }
}

/// Compares two EVRs as rpm does for dependencies: a missing release on either side
/// matches any release.
pub fn compare_evr(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(x), Some(y)) => rpmvercmp(x, y),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkgdb::testgen::Rng;

    #[test]
    fn known_orderings() {
        let lt = |a: &str, b: &str| {
            assert_eq!(rpmvercmp(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(rpmvercmp(b, a), Ordering::Greater, "{b} > {a}");
        };
        lt("1.0", "1.1");
        lt("1.0~rc1", "1.0");
        lt("1.0", "1.0^git1");
        lt("1.0^git1", "1.0.1");
        lt("a", "1");
        lt("1.9", "1.10");
        assert_eq!(rpmvercmp("1.01", "1.1"), Ordering::Equal);
        assert_eq!(rpmvercmp("1..0", "1.0"), Ordering::Equal);
        assert_eq!(compare_evr("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(compare_evr("1.0", "1.0-5"), Ordering::Equal);
    }

    /// Generated pairs checked against the real rpm (`rpm.vercmp` in rpm's Lua).
    #[test]
    fn agrees_with_rpm_on_generated_pairs() {
        let mut rng = Rng::new(4181);
        let mut pairs = Vec::new();
        for _ in 0..400 {
            let mut gen = || {
                let mut v = rng.word("0123456789", 2);
                for _ in 0..rng.below(4) {
                    v.push_str(rng.pick(&[".", "~", "^", "_", "+", "", "a", "rc", "."]));
                    v.push_str(&rng.word("0123456789abz", 3));
                }
                v
            };
            let (a, b) = (gen(), gen());
            pairs.push((a, b));
        }
        let lua: String = pairs
            .iter()
            .map(|(a, b)| format!("print(rpm.vercmp('{a}', '{b}') .. ' ')\n"))
            .collect();
        let out = std::process::Command::new("rpm")
            .arg("--eval")
            .arg(format!("%{{lua:\n{lua}}}"))
            .output()
            .expect("running rpm --eval (scripts/setup.sh installs rpm)");
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(answers.len(), pairs.len(), "rpm printed {text:?}");
        for ((a, b), answer) in pairs.iter().zip(answers) {
            let ours = match rpmvercmp(a, b) {
                Ordering::Less => "-1",
                Ordering::Equal => "0",
                Ordering::Greater => "1",
            };
            assert_eq!(ours, answer.trim(), "{a} vs {b}");
        }
    }
}
