//! GBNF, llama.cpp's grammar syntax, parsed and written out in llguidance's
//! Lark dialect.
//!
//! ```text
//! root   ::= answer ws
//! answer ::= "yes" | "no" | [0-9]+ ("." [0-9]{1,3})?
//! ws     ::= [ \t\n]*   # comments run to the end of the line
//! ```
//!
//! Supported: rules (`name ::= …`, `root` is the start), literals with
//! `\n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH` escapes, character classes
//! (`[a-z]`, `[^"\\]`), `.` (any character), groups, alternatives, and the
//! repetitions `* + ? {m} {m,} {m,n}`. A rule body ends at a newline unless
//! it is inside parentheses (as in llama.cpp).
//!
//! One difference: a literal or a repeated character class is matched as
//! one lexeme, longest first, so a grammar such as `[a-z]* "z"` that needs a
//! class repetition to hand characters back to what follows never matches.
//! Write such grammars so the class excludes what follows (`[a-y]* "z"`).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::{EngineError, Result};

/// One item of a sequence.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Literal(String),
    /// Character ranges (inclusive); `negated` for `[^…]`.
    Class { negated: bool, ranges: Vec<(char, char)> },
    Any,
    Rule(String),
    Group(Vec<Vec<Repeated>>),
}

#[derive(Debug, Clone, PartialEq)]
struct Repeated {
    item: Item,
    min: u32,
    /// `None`: unbounded.
    max: Option<u32>,
}

/// Translates GBNF text to llguidance Lark. Errors give the line and column.
pub fn to_lark(text: &str) -> Result<String> {
    let rules = Parser::new(text).parse()?;
    if !rules.contains_key("root") {
        return Err(EngineError::Grammar("the grammar has no `root` rule".into()));
    }
    let mut out = String::new();
    for (name, (alts, line)) in &rules {
        check_refs(alts, &rules, name, *line)?;
        let _ = writeln!(out, "{}: {}", lark_name(name), alternatives(alts));
    }
    Ok(out)
}

fn check_refs(alts: &[Vec<Repeated>], rules: &Rules, rule: &str, line: usize) -> Result<()> {
    for r in alts.iter().flatten() {
        match &r.item {
            Item::Rule(n) if !rules.contains_key(n) => {
                return Err(EngineError::Grammar(format!("line {line}: rule `{rule}` refers to undefined rule `{n}`")))
            }
            Item::Group(g) => check_refs(g, rules, rule, line)?,
            _ => {}
        }
    }
    Ok(())
}

/// GBNF names are `[A-Za-z0-9-]+`; Lark rule names are lowercase
/// identifiers. `_` never occurs in GBNF names, so `_` escapes are unambiguous.
fn lark_name(name: &str) -> String {
    if name == "root" {
        return "start".into();
    }
    let mut s = String::from("g_");
    for c in name.chars() {
        match c {
            '-' => s.push_str("_h"),
            'A'..='Z' => {
                s.push('_');
                s.push(c.to_ascii_lowercase());
            }
            _ => s.push(c),
        }
    }
    s
}

fn alternatives(alts: &[Vec<Repeated>]) -> String {
    let (empty, non_empty): (Vec<_>, Vec<_>) = alts.iter().partition(|seq| seq.is_empty());
    let body: Vec<String> = non_empty.iter().map(|seq| sequence(seq)).collect();
    match (empty.is_empty(), body.is_empty()) {
        (true, _) => body.join(" | "),
        // An empty alternative makes the rest optional.
        (false, false) => format!("({})?", body.join(" | ")),
        (false, true) => "\"\"".into(),
    }
}

fn sequence(seq: &[Repeated]) -> String {
    seq.iter().map(repeated).collect::<Vec<_>>().join(" ")
}

fn repeated(r: &Repeated) -> String {
    let one = match &r.item {
        Item::Class { .. } | Item::Any => {
            // A repeated class is one regex lexeme, never an empty one.
            let class = class_regex(&r.item);
            return match (r.min, r.max) {
                (1, Some(1)) => format!("/{class}/"),
                (0, Some(1)) => format!("/{class}/?"),
                (0, None) => format!("/{class}+/?"),
                (m, None) => format!("/{class}{{{m},}}/"),
                (0, Some(n)) => format!("/{class}{{1,{n}}}/?"),
                (m, Some(n)) => format!("/{class}{{{m},{n}}}/"),
            };
        }
        Item::Literal(s) => serde_json::to_string(s).unwrap_or_default(),
        Item::Rule(n) => lark_name(n),
        Item::Group(g) => format!("({})", alternatives(g)),
    };
    match (r.min, r.max) {
        (1, Some(1)) => one,
        (0, Some(1)) => format!("{one}?"),
        (0, None) => format!("{one}*"),
        (1, None) => format!("{one}+"),
        (m, None) => format!("{one}{{{m},}}"),
        (m, Some(n)) => format!("{one}{{{m},{n}}}"),
    }
}

fn class_regex(item: &Item) -> String {
    match item {
        Item::Class { negated, ranges } => {
            let mut s = String::from(if *negated { "[^" } else { "[" });
            for &(a, b) in ranges {
                let _ = write!(s, "\\x{{{:X}}}", a as u32);
                if a != b {
                    let _ = write!(s, "-\\x{{{:X}}}", b as u32);
                }
            }
            s.push(']');
            s
        }
        _ => "(?s:.)".into(),
    }
}

/// Rules by name, with the line each is defined on.
type Rules = BTreeMap<String, (Vec<Vec<Repeated>>, usize)>;

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

impl Parser {
    fn new(text: &str) -> Self {
        Parser { chars: text.chars().collect(), pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.chars.get(self.pos + i) == Some(&c))
    }

    fn line_col(&self) -> (usize, usize) {
        let before = &self.chars[..self.pos.min(self.chars.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let col = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        (line, col)
    }

    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        let (line, col) = self.line_col();
        Err(EngineError::Grammar(format!("line {line}, column {col}: {msg}")))
    }

    /// Skips spaces and comments; newlines too when `newlines`.
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r')) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn parse(mut self) -> Result<Rules> {
        let mut rules = Rules::new();
        loop {
            self.skip_space(true);
            if self.peek().is_none() {
                break;
            }
            let line = self.line_col().0;
            let name = self.name()?;
            self.skip_space(false);
            if !self.at("::=") {
                return self.err(format!("expected `::=` after rule name `{name}`"));
            }
            self.pos += 3;
            self.skip_space(true);
            let alts = self.alternates(false)?;
            if let Some((_, first)) = rules.get(&name) {
                return self.err(format!("rule `{name}` is defined twice (first on line {first})"));
            }
            rules.insert(name, (alts, line));
            match self.peek() {
                None | Some('\n') | Some('\r') => {}
                Some(c) => return self.err(format!("unexpected `{c}`")),
            }
        }
        Ok(rules)
    }

    fn name(&mut self) -> Result<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        if start == self.pos {
            return match self.peek() {
                Some(c) => self.err(format!("expected a rule name, found `{c}`")),
                None => self.err("expected a rule name"),
            };
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn alternates(&mut self, nested: bool) -> Result<Vec<Vec<Repeated>>> {
        let mut alts = vec![self.sequence(nested)?];
        loop {
            // A `|` may also start the next line of a top-level rule.
            let save = self.pos;
            self.skip_space(true);
            if self.peek() == Some('|') {
                self.pos += 1;
                self.skip_space(true);
                alts.push(self.sequence(nested)?);
            } else {
                self.pos = save;
                return Ok(alts);
            }
        }
    }

    fn sequence(&mut self, nested: bool) -> Result<Vec<Repeated>> {
        let mut seq = Vec::new();
        loop {
            self.skip_space(nested);
            let item = match self.peek() {
                Some('"') => {
                    self.pos += 1;
                    Item::Literal(self.literal()?)
                }
                Some('[') => {
                    self.pos += 1;
                    self.class()?
                }
                Some('.') => {
                    self.pos += 1;
                    Item::Any
                }
                Some('(') => {
                    self.pos += 1;
                    self.skip_space(true);
                    let g = self.alternates(true)?;
                    self.skip_space(true);
                    if self.peek() != Some(')') {
                        return self.err("expected `)`");
                    }
                    self.pos += 1;
                    Item::Group(g)
                }
                Some(c) if is_name_char(c) => {
                    // The next rule's `name ::=` ends this one.
                    let save = self.pos;
                    let name = self.name()?;
                    self.skip_space(false);
                    if self.at("::=") {
                        self.pos = save;
                        return self.err(format!("rule `{name}` starts on the same line as the previous rule's body"));
                    }
                    self.pos = save + name.chars().count();
                    Item::Rule(name)
                }
                Some('<') => return self.err("token references (`<…>`) are not supported"),
                _ => return Ok(seq),
            };
            let (min, max) = self.repetition()?;
            // `"" ` and friends match nothing; drop them.
            if !matches!(&item, Item::Literal(s) if s.is_empty()) {
                seq.push(Repeated { item, min, max });
            }
        }
    }

    fn repetition(&mut self) -> Result<(u32, Option<u32>)> {
        let r = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.pos += 1;
                self.skip_space(false);
                let min = self.number()?.unwrap_or(0);
                self.skip_space(false);
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    self.skip_space(false);
                    self.number()?
                } else {
                    Some(min)
                };
                self.skip_space(false);
                if self.peek() != Some('}') {
                    return self.err("expected `}` to close the repetition");
                }
                if let Some(max) = max {
                    if max < min {
                        return self.err(format!("repetition {{{min},{max}}} has max below min"));
                    }
                }
                (min, max)
            }
            _ => return Ok((1, Some(1))),
        };
        self.pos += 1;
        Ok(r)
    }

    fn number(&mut self) -> Result<Option<u32>> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        match s.parse::<u32>() {
            Ok(n) if n <= 10_000 => Ok(Some(n)),
            _ => self.err(format!("repetition count {s} is too large (at most 10000)")),
        }
    }

    /// After the opening quote, up to and past the closing one.
    fn literal(&mut self) -> Result<String> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return self.err("unterminated string literal"),
                Some('"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some('\\') => s.push(self.escape()?),
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After the opening `[`, up to and past the closing `]`.
    fn class(&mut self) -> Result<Item> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        loop {
            let a = match self.peek() {
                None => return self.err("unterminated character class"),
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => self.escape()?,
                Some(c) => {
                    self.pos += 1;
                    c
                }
            };
            let b = if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                match self.peek() {
                    Some('\\') => self.escape()?,
                    Some(c) => {
                        self.pos += 1;
                        c
                    }
                    None => return self.err("unterminated character class"),
                }
            } else {
                a
            };
            if b < a {
                return self.err(format!("character range {a:?}-{b:?} is reversed"));
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() && !negated {
            return self.err("empty character class `[]` matches nothing");
        }
        Ok(Item::Class { negated, ranges })
    }

    /// At a backslash: the escaped character.
    fn escape(&mut self) -> Result<char> {
        self.pos += 1;
        let Some(c) = self.peek() else { return self.err("a backslash ends the grammar") };
        self.pos += 1;
        let hex_digits = match c {
            'n' => return Ok('\n'),
            'r' => return Ok('\r'),
            't' => return Ok('\t'),
            '\\' | '"' | '[' | ']' | '-' | '^' => return Ok(c),
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => return self.err(format!("unknown escape `\\{c}`")),
        };
        let digits: String = self.chars.iter().skip(self.pos).take(hex_digits).collect();
        let value = (digits.len() == hex_digits).then(|| u32::from_str_radix(&digits, 16).ok()).flatten();
        match value.and_then(char::from_u32) {
            Some(ch) => {
                self.pos += hex_digits;
                Ok(ch)
            }
            None => self.err(format!("`\\{c}` needs {hex_digits} hex digits naming a character")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_rules_classes_and_repetitions() {
        let g = "root ::= item (\",\" item){0,3}\nitem ::= [a-z]+ | \"x\\n\" | my-Rule?\nmy-Rule ::= [^\"\\\\] .";
        let lark = to_lark(g).unwrap();
        assert!(lark.contains("start: g_item (\",\" g_item){0,3}"), "{lark}");
        assert!(lark.contains("g_item: /[\\x{61}-\\x{7A}]{1,}/ | \"x\\n\" | g_my_h_rule?"), "{lark}");
        assert!(lark.contains("g_my_h_rule: /[^\\x{22}\\x{5C}]/ /(?s:.)/"), "{lark}");
    }

    #[test]
    fn multi_line_rules_and_comments() {
        let g = "# a comment\nroot ::=\n  \"{\" (\n    ws\n  )? \"}\"  # trailing\n  | \"[]\"\nws ::= [ \\t]*\n";
        let lark = to_lark(g).unwrap();
        assert!(lark.contains("start: \"{\" (g_ws)? \"}\" | \"[]\""), "{lark}");
        assert!(lark.contains("g_ws: /[\\x{20}\\x{9}]+/?"), "{lark}");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |g: &str| to_lark(g).unwrap_err().to_string();
        assert!(e("item ::= \"a\"").contains("no `root` rule"));
        assert!(e("root ::= missing").contains("undefined rule `missing`"));
        assert!(e("root ::= \"abc").contains("unterminated string"));
        assert!(e("root ::= [a-").contains("unterminated character class"));
        assert!(e("root = \"a\"").contains("expected `::=`"));
        assert!(e("root ::= \"a\"{3,1}").contains("max below min"));
        assert!(e("root ::= \"\\q\"").contains("unknown escape"));
        assert!(e("root ::= \"a\"\nroot ::= \"b\"").contains("defined twice"));
        assert!(e("root ::= (\"a\"").contains("expected `)`"));
        assert!(e("root ::= \"a\" )").contains("line 1, column 14"));
    }

    #[test]
    fn escapes_decode() {
        let lark = to_lark(r#"root ::= "\x41\u00e9\t" [\]\-]"#).unwrap();
        assert!(lark.contains(r#""Aé\t""#), "{lark}");
        assert!(lark.contains(r"/[\x{5D}\x{2D}]/"), "{lark}");
    }
}
