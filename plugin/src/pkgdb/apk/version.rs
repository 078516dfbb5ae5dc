//! apk version ordering (apk-tools `apk_version_compare`, read as facts), enough to
//! report upgrades and check `D:` constraints: dot-separated numbers compared
//! numerically, then an optional letter, then suffixes (`_alpha` < `_beta` < `_pre` <
//! `_rc` < none < `_cvs` < `_svn` < `_git` < `_hg` < `_p`), each with an optional number,
//! then the `-rN` revision.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Number(Vec<u64>),
    Letter(u8),
    Suffix(i32, u64),
    Revision(u64),
}

fn suffix_rank(s: &str) -> Option<i32> {
    Some(match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

fn tokens(v: &str) -> Vec<Token> {
    let (main, rev) = match v.rsplit_once("-r") {
        Some((m, r)) if r.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() => {
            (m, r.parse().ok())
        }
        _ => (v, None),
    };
    let mut out = Vec::new();
    let (numbers, rest) = main.split_at(
        main.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(main.len()),
    );
    out.push(Token::Number(
        numbers.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
    ));
    let mut rest = rest;
    if let Some(c) = rest.bytes().next().filter(u8::is_ascii_lowercase) {
        out.push(Token::Letter(c));
        rest = &rest[1..];
    }
    for part in rest.split('_').filter(|p| !p.is_empty()) {
        let split = part
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(part.len());
        let (name, num) = part.split_at(split);
        out.push(Token::Suffix(
            suffix_rank(name).unwrap_or(0),
            num.parse().unwrap_or(0),
        ));
    }
    out.push(Token::Revision(rev.unwrap_or(0)));
    out
}

/// Compares two apk versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ta, tb) = (tokens(a), tokens(b));
    for pair in ta.iter().zip(tb.iter()) {
        let ord = match pair {
            (Token::Number(x), Token::Number(y)) => {
                let n = x.len().max(y.len());
                (0..n)
                    .map(|i| x.get(i).map(|v| (1, *v)).cmp(&y.get(i).map(|v| (1, *v))))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
            // A release sorts after its pre-releases and before its post-releases:
            // a missing suffix is rank 0.
            (Token::Suffix(r, n), Token::Revision(_)) => (*r, *n).cmp(&(0, 0)),
            (Token::Revision(_), Token::Suffix(r, n)) => (0, 0).cmp(&(*r, *n)),
            (Token::Letter(x), Token::Letter(y)) => x.cmp(y),
            (Token::Letter(_), _) => Ordering::Greater,
            (_, Token::Letter(_)) => Ordering::Less,
            (x, y) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ta.len().cmp(&tb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderings() {
        let lt = |a: &str, b: &str| {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        };
        lt("1.36.1-r5", "1.36.1-r6");
        lt("1.2", "1.10");
        lt("1.2_rc1", "1.2");
        lt("1.2", "1.2_p1");
        lt("1.2_alpha", "1.2_beta");
        lt("1.2", "1.2a");
        lt("3.0.8-r0", "3.0.12-r0");
        lt("1.2", "1.2.1");
        assert_eq!(compare("1.2-r0", "1.2"), Ordering::Equal);
    }
}
