//! llama.cpp's GBNF grammars, rewritten in llguidance's Lark syntax.
//!
//! GBNF: `name ::= alternatives`, rule `root` spanning the text; items are string literals
//! (`"..."`, with `\n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH` escapes), character classes
//! (`[a-z]`, `[^"\\]`), `.` (any character), rule names, parenthesised groups, and the postfix
//! operators `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`; `#` starts a comment.
//!
//! Each rule becomes a Lark rule `g_<name>` (dashes become underscores), `start: g_root`;
//! literals become JSON-escaped Lark strings, classes and `.` become regexes with every
//! non-alphanumeric character written as `\x{…}`; repetitions keep their Lark spelling.

use std::fmt::Write;

/// The largest bound of a repetition `{m,n}`.
const MAX_REPEAT: u32 = 256;

/// Why a GBNF grammar cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GBNF, at byte {at}: {what}")]
pub struct GbnfError {
    /// Byte offset into the grammar.
    pub at: usize,
    /// What is wrong there.
    pub what: String,
}

/// The Lark grammar equal to `gbnf`.
pub fn to_lark(gbnf: &str) -> Result<String, GbnfError> {
    let mut p = Parser {
        src: gbnf.as_bytes(),
        text: gbnf,
        pos: 0,
    };
    let mut out = String::from("start: g_root\n");
    let mut names = Vec::new();
    let mut used = Vec::new();
    p.skip_space(true);
    while p.pos < p.src.len() {
        let at = p.pos;
        let name = p.name().ok_or_else(|| p.error("expected a rule name"))?;
        p.skip_space(false);
        if !p.eat("::=") {
            return Err(p.error(format!("expected `::=` after `{name}`")));
        }
        let body = p.alternatives(0, &mut used)?;
        if names.contains(&name) {
            return Err(GbnfError {
                at,
                what: format!("rule `{name}` is defined twice"),
            });
        }
        let _ = writeln!(out, "{}: {body}", rule(&name));
        names.push(name);
        p.skip_space(true);
    }
    if !names.iter().any(|n| n == "root") {
        return Err(GbnfError {
            at: 0,
            what: "no rule `root`".into(),
        });
    }
    if let Some((name, at)) = used.into_iter().find(|(u, _)| !names.contains(u)) {
        return Err(GbnfError {
            at,
            what: format!("rule `{name}` is used but not defined"),
        });
    }
    Ok(out)
}

fn rule(name: &str) -> String {
    format!("g_{}", name.replace('-', "_").to_ascii_lowercase())
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: impl Into<String>) -> GbnfError {
        GbnfError {
            at: self.pos,
            what: what.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips blanks and comments; newlines too when `newlines` (between rules, or inside a
    /// rule where a line does not start a new one).
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Skips space inside a rule body: a line break continues the rule unless the next line
    /// starts a new rule (`name ::=`).
    fn skip_body_space(&mut self) {
        loop {
            self.skip_space(false);
            if !matches!(self.peek(), Some(b'\r' | b'\n')) {
                return;
            }
            let save = self.pos;
            self.skip_space(true);
            let line = self.pos;
            if self.name().is_some() && {
                self.skip_space(false);
                self.eat("::=")
            } {
                self.pos = save;
                return;
            }
            self.pos = line;
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.text[start..self.pos].to_string())
    }

    fn at_body_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    fn alternatives(
        &mut self,
        depth: usize,
        used: &mut Vec<(String, usize)>,
    ) -> Result<String, GbnfError> {
        if depth > 64 {
            return Err(self.error("groups nested too deep"));
        }
        let mut alts = vec![self.sequence(depth, used)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            alts.push(self.sequence(depth, used)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(
        &mut self,
        depth: usize,
        used: &mut Vec<(String, usize)>,
    ) -> Result<String, GbnfError> {
        let mut items = Vec::new();
        loop {
            self.skip_body_space();
            if self.at_body_end() || matches!(self.peek(), Some(b'|' | b')')) {
                break;
            }
            let item = self.item(depth, used)?;
            items.push(self.postfix(item)?);
        }
        // An empty alternative matches the empty text.
        Ok(if items.is_empty() {
            "\"\"".into()
        } else {
            items.join(" ")
        })
    }

    fn item(&mut self, depth: usize, used: &mut Vec<(String, usize)>) -> Result<String, GbnfError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated string")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        _ => text.push(self.char_or_escape()?),
                    }
                }
                Ok(serde_json::to_string(&text).unwrap_or_default())
            }
            Some(b'[') => self.class(),
            Some(b'.') => {
                self.pos += 1;
                Ok("/(?s:.)/".into())
            }
            Some(b'(') => {
                self.pos += 1;
                let inner = self.alternatives(depth + 1, used)?;
                self.skip_body_space();
                if self.peek() != Some(b')') {
                    return Err(self.error("expected `)`"));
                }
                self.pos += 1;
                Ok(format!("({inner})"))
            }
            _ => {
                let at = self.pos;
                let name = self.name().ok_or_else(|| {
                    self.error("expected a string, a class, a group or a rule name")
                })?;
                used.push((name.clone(), at));
                Ok(rule(&name))
            }
        }
    }

    fn postfix(&mut self, item: String) -> Result<String, GbnfError> {
        let (min, max) = match self.peek() {
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'?') => (0, Some(1)),
            Some(b'{') => {
                self.pos += 1;
                let min = self.number()?;
                let max = if self.eat(",") {
                    if self.peek() == Some(b'}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                if self.peek() != Some(b'}') {
                    return Err(self.error("expected `}`"));
                }
                if max.is_some_and(|m| m < min || m == 0) || min.max(max.unwrap_or(0)) > MAX_REPEAT
                {
                    return Err(self.error(format!(
                        "repetition bounds must satisfy m <= n, 0 < n <= {MAX_REPEAT}"
                    )));
                }
                (min, max)
            }
            _ => return Ok(item),
        };
        self.pos += 1;
        Ok(match (min, max) {
            (0, None) => format!("({item})*"),
            (1, None) => format!("({item})+"),
            (0, Some(1)) => format!("({item})?"),
            (m, None) => format!("({item}){{{m},}}"),
            (m, Some(n)) => format!("({item}){{{m},{n}}}"),
        })
    }

    fn number(&mut self) -> Result<u32, GbnfError> {
        self.skip_space(false);
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let n = self.text[start..self.pos]
            .parse()
            .map_err(|_| self.error("expected a number"))?;
        self.skip_space(false);
        Ok(n)
    }

    /// `[...]` or `[^...]` as a regex.
    fn class(&mut self) -> Result<String, GbnfError> {
        self.pos += 1;
        let mut out = String::from("/[");
        if self.peek() == Some(b'^') {
            self.pos += 1;
            out.push('^');
        }
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated character class")),
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    let c = self.char_or_escape()?;
                    push_class_char(&mut out, c);
                    if self.peek() == Some(b'-') && self.src.get(self.pos + 1) != Some(&b']') {
                        self.pos += 1;
                        let end = self.char_or_escape()?;
                        if end < c {
                            return Err(self.error(format!("range {c:?}-{end:?} is reversed")));
                        }
                        out.push('-');
                        push_class_char(&mut out, end);
                    }
                }
            }
        }
        out.push_str("]/");
        Ok(out)
    }

    /// One character of a literal or class, escapes decoded.
    fn char_or_escape(&mut self) -> Result<char, GbnfError> {
        let rest = &self.text[self.pos..];
        let mut chars = rest.chars();
        let c = chars.next().ok_or_else(|| self.error("unexpected end"))?;
        if c != '\\' {
            self.pos += c.len_utf8();
            return Ok(c);
        }
        let e = chars
            .next()
            .ok_or_else(|| self.error("unfinished escape"))?;
        self.pos += 1 + e.len_utf8();
        let hex = |p: &mut Self, digits: usize| -> Result<char, GbnfError> {
            let h = p
                .text
                .get(p.pos..p.pos + digits)
                .ok_or_else(|| p.error("unfinished escape"))?;
            let c = u32::from_str_radix(h, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| p.error(format!("bad escape `{h}`")))?;
            p.pos += digits;
            Ok(c)
        };
        Ok(match e {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            other => other,
        })
    }
}

/// A character inside a regex class: alphanumerics as they are, anything else as `\x{…}`.
fn push_class_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", u32::from(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_literals_classes_and_repetitions() {
        let g = to_lark(
            "# a comment\nroot ::= \"yes\" | \"no\" ws-item{2,3}\nws-item ::= [ \\t]\n  [^\"\\\\a-z]+ .?\n",
        )
        .unwrap();
        assert_eq!(
            g,
            "start: g_root\n\
             g_root: \"yes\" | \"no\" (g_ws_item){2,3}\n\
             g_ws_item: /[\\x{20}\\x{9}]/ (/[^\\x{22}\\x{5c}a-z]/)+ (/(?s:.)/)?\n"
        );
    }

    #[test]
    fn escapes_in_literals_become_json_escapes() {
        let g = to_lark(r#"root ::= "a\n\"\x41\u00e9""#).unwrap();
        assert!(g.contains(r#"g_root: "a\n\"Aé""#), "{g}");
    }

    #[test]
    fn bad_grammars_are_errors_with_a_place() {
        for (g, what) in [
            ("root ::= \"x", "unterminated string"),
            ("rot ::= \"x\"", "no rule `root`"),
            ("root ::= thing", "not defined"),
            ("root ::= [a-", "unexpected end"),
            ("root ::= \"a\"{3,1}", "repetition"),
            ("root \"a\"", "::="),
            ("root ::= (\"a\"", "`)`"),
            ("root ::= \"a\"\nroot ::= \"b\"", "twice"),
        ] {
            let e = to_lark(g).unwrap_err();
            assert!(e.what.contains(what), "{g}: {e}");
        }
    }
}
