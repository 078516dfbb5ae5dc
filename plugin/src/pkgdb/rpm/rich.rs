//! The names a rich dependency (`(a if b else c)`) adds to rpm's dependency indexes, as
//! rpm's `updateRichDep` collects them: every simple dependency's name, prefixed `!`
//! where it sits in a negated position (the condition of `if`/`unless`, swapped by
//! `else`), `rpmlib(...)` names skipped, sorted and deduplicated.

/// The extra index keys of rich dependency `text`; `None` when it does not parse.
pub fn index_names(text: &str) -> Option<Vec<String>> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        names: Vec::new(),
        neg: false,
        level_start: Vec::new(),
    };
    p.skip_ws();
    p.group()?;
    p.skip_ws();
    if p.at != p.s.len() {
        return None;
    }
    let mut names = p.names;
    names.sort();
    names.dedup();
    Some(
        names
            .into_iter()
            .map(|n| n.strip_prefix(' ').map(str::to_string).unwrap_or(n))
            .collect(),
    )
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    names: Vec<String>,
    neg: bool,
    level_start: Vec<usize>,
}

const OPS: &[&str] = &["and", "or", "if", "else", "unless", "with", "without"];

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn word(&mut self) -> Option<String> {
        // A name may hold balanced parentheses (`perl(Foo::Bar)`).
        let start = self.at;
        let mut depth = 0i32;
        while let Some(&c) = self.s.get(self.at) {
            match c {
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                c if c.is_ascii_whitespace() && depth == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn group(&mut self) -> Option<()> {
        if self.s.get(self.at) != Some(&b'(') {
            return None;
        }
        self.at += 1;
        self.level_start.push(self.names.len());
        let mut last_op: Option<String> = None;
        loop {
            self.skip_ws();
            self.operand()?;
            self.skip_ws();
            match self.s.get(self.at) {
                Some(b')') => {
                    self.at += 1;
                    break;
                }
                None => return None,
                _ => {}
            }
            let op = self.word()?;
            if !OPS.contains(&op.as_str()) {
                return None;
            }
            match op.as_str() {
                "if" | "unless" => {
                    if let Some(s) = self.level_start.last_mut() {
                        *s = self.names.len();
                    }
                    self.neg = !self.neg;
                }
                "else" => {
                    let from = self.level_start.last().copied().unwrap_or(0);
                    let flipped: Vec<String> = self.names[from..]
                        .iter()
                        .map(|n| {
                            let (first, rest) = n.split_at(1);
                            format!("{}{rest}", if first == "!" { " " } else { "!" })
                        })
                        .collect();
                    self.names.extend(flipped);
                    self.neg = !self.neg;
                }
                _ => {}
            }
            last_op = Some(op);
        }
        self.level_start.pop();
        if matches!(last_op.as_deref(), Some("if" | "unless")) {
            self.neg = !self.neg;
        }
        Some(())
    }

    fn operand(&mut self) -> Option<()> {
        if self.s.get(self.at) == Some(&b'(') {
            return self.group();
        }
        let name = self.word()?;
        // An optional `op version` after the name.
        let save = self.at;
        self.skip_ws();
        let cmp = self.word();
        match cmp.as_deref() {
            Some("<" | "<=" | "=" | ">=" | ">" | "==") => {
                self.skip_ws();
                self.word()?;
            }
            _ => self.at = save,
        }
        if !name.starts_with("rpmlib(") {
            self.names
                .push(format!("{}{name}", if self.neg { "!" } else { " " }));
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_rich_deps() {
        assert_eq!(index_names("(a or b)").unwrap(), ["a", "b"]);
        assert_eq!(
            index_names("(a >= 1.0 and perl(X::Y))").unwrap(),
            ["a", "perl(X::Y)"]
        );
        // Sorted with their prefixes, as rpm does: ' ' before '!'.
        assert_eq!(index_names("(a if b)").unwrap(), ["a", "!b"]);
        assert_eq!(
            index_names("(a if b else c)").unwrap(),
            ["a", "b", "c", "!b"]
        );
        assert_eq!(
            index_names("((a or b) unless c)").unwrap(),
            ["a", "b", "!c"]
        );
        assert!(index_names("(a or").is_none());
        assert!(index_names("(a bogus b)").is_none());
    }
}
