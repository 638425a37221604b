//! Making a constrained JSON answer end.
//!
//! A grammar guarantees the output's shape, not that it finishes: wherever
//! the schema allows repetition (an open array, a free string, a number's
//! digits, several tool calls) a small greedy model can repeat itself until
//! `max_tokens`, and the reply is then not JSON at all. llama.cpp and
//! xgrammar leave this to the model; llguidance offers per-rule token caps.
//! Caps would cut legitimate long strings, so infer watches the output
//! instead and, only when it goes wrong, steers it towards the end *within
//! what the grammar allows* (every output stays valid):
//!
//! - **Loops.** After each token the text written under the constraint is
//!   checked for a periodic tail: one block repeated back to back at least
//!   three times over 16 or more bytes (`"a", "a", "a", …`, `000000…`), or a
//!   block of 16 or more bytes twice (a sentence, an array item or a tool
//!   call written again), or a block of 16 or more bytes that nests one
//!   level deeper each time it is written, digits aside (a recursive schema
//!   unrolled: `{"name": "n1", "children": [{"name": "n2", …`). The
//!   shallowest place within the repeated bytes is the structure that loops
//!   (the array, the string, the number, the whole answer); the answer is
//!   closed until that structure is.
//! - **The budget.** When the tokens left fall to about what closing the
//!   open structures takes, the answer is closed to the end, and the
//!   generation reports that the budget ended it ([`JsonEnding::cut_short`]:
//!   `finish_reason: "length"` with content that still parses).
//!
//! Closing means: among the tokens the grammar allows, keep only those that
//! leave the fewest open structures (an end-of-generation token counts as
//! fewest of all, a number still being written as half a structure). The
//! model still picks among those, so a required key is still written and a
//! string is still closed by the model's own choice of ending token. Where
//! nothing allowed closes anything (a string whose format needs more, such
//! as an e-mail address without its `@`), the tokens that would go on
//! repeating the loop's block are left out instead.

/// The lexical position in JSON text, tracked byte by byte (markup around
/// the JSON, such as `<tool_call>`, has no brackets or quotes and counts as
/// top level).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lex {
    /// Open arrays and objects.
    depth: u16,
    in_string: bool,
    escape: bool,
    /// In a number or literal (which any structural byte ends).
    in_scalar: bool,
    /// Bytes of that scalar so far, and digits of its exponent.
    scalar_len: u16,
    in_exp: bool,
    exp_digits: u8,
}

impl Lex {
    fn push(&mut self, b: u8) {
        if self.in_string {
            match (self.escape, b) {
                (true, _) => self.escape = false,
                (false, b'\\') => self.escape = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        let was_scalar = self.in_scalar;
        self.in_scalar = false;
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth = self.depth.saturating_add(1),
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b'0'..=b'9' | b'-' | b'+' | b'.' => self.in_scalar = true,
            b if b.is_ascii_alphabetic() => self.in_scalar = true,
            _ => {}
        }
        if !self.in_scalar {
            return;
        }
        if !was_scalar {
            (self.scalar_len, self.in_exp, self.exp_digits) = (0, false, 0);
        }
        self.scalar_len = self.scalar_len.saturating_add(1);
        if matches!(b, b'e' | b'E') {
            (self.in_exp, self.exp_digits) = (true, 0);
        } else if b.is_ascii_digit() && self.in_exp {
            self.exp_digits = self.exp_digits.saturating_add(1);
        }
    }

    /// A number past what any reader keeps (an f64 has 17 digits, and a
    /// third exponent digit can leave its range, `1e511`): only its end is
    /// worth writing now.
    fn runaway_scalar(&self) -> bool {
        self.in_scalar && (self.scalar_len > 24 || self.exp_digits >= 2)
    }

    /// Open structures, a string counting as one.
    fn level(&self) -> u16 {
        self.depth + u16::from(self.in_string)
    }

    /// What is left to close, in half structures.
    fn cost(&self) -> i32 {
        2 * i32::from(self.level()) + i32::from(self.in_scalar)
    }
}

/// What a token does to the structure around the value being written
/// ([`JsonEnding::next_move`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Writes another item or key (or, at the top level, more text).
    More,
    /// Closes the array or object, or ends the answer.
    Close,
    /// Stays within the value (its digits, its string, a nested value).
    Within,
}

/// Bytes of tail looked at for a loop.
const WINDOW: usize = 1024;
/// Longest repeated block looked for (an array item holding a sentence).
const MAX_PERIOD: usize = 256;

/// The guard's state for one sequence.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonEnding {
    text: Vec<u8>,
    /// [`Lex::cost`] after each byte of `text` (its last `WINDOW` bytes matter).
    costs: Vec<i32>,
    lex: Lex,
    /// Closing: until the cost falls below this one (0: to the end).
    closing: Option<i32>,
    /// The repeated block's length, when a loop started the closing.
    period: Option<usize>,
    /// Tokens the generation may still take, if it said.
    budget: Option<usize>,
    cut_short: bool,
    /// Half the budget is spent: structures close where the grammar lets them.
    winding_down: bool,
}

impl JsonEnding {
    pub fn set_budget(&mut self, max_tokens: usize) {
        self.budget = Some(max_tokens);
    }

    /// The budget, not the grammar or the model, ended the answer.
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Whether only closing tokens are allowed now.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Takes the bytes of an accepted token (empty for a control token,
    /// `None` for an end token); `n_accepted` counts tokens so far.
    pub fn accepted(&mut self, bytes: Option<&[u8]>, n_accepted: usize) {
        if let Some(bytes) = bytes {
            for &b in bytes {
                self.lex.push(b);
                self.text.push(b);
                self.costs.push(self.lex.cost());
            }
            // Only the tail is ever looked at.
            if self.text.len() > 4 * WINDOW {
                self.text.drain(..self.text.len() - WINDOW);
                self.costs.drain(..self.costs.len() - WINDOW);
            }
        }
        if let Some(cost) = self.closing {
            if cost > 0 && self.lex.cost() < cost {
                self.closing = None;
                self.period = None;
            }
        }
        if let Some(budget) = self.budget {
            self.winding_down |= 2 * n_accepted >= budget;
            let left = budget.saturating_sub(n_accepted);
            if left as i64 <= i64::from(self.lex.cost()) + 3 && self.closing != Some(0) {
                self.closing = Some(0);
                self.cut_short = true;
            }
        }
        if self.closing.is_none() && self.lex.runaway_scalar() {
            self.closing = Some(self.lex.cost());
        }
        if self.closing.is_none() {
            if let Some((cost, period)) = self.loop_level() {
                self.closing = Some(cost);
                self.period = Some(period);
            }
        }
    }

    /// The byte that would write the loop's block once more, if a loop is being closed.
    pub fn loop_next_byte(&self) -> Option<u8> {
        let p = self.period?;
        self.text.len().checked_sub(p).map(|i| self.text[i])
    }

    /// The bytes of the loop being closed (its last two blocks).
    pub fn loop_block(&self) -> &[u8] {
        let p = self.period.unwrap_or(0);
        &self.text[self.text.len().saturating_sub(2 * p)..]
    }

    /// Past half the budget: where the grammar allows closing the array or
    /// object being written (or ending), the answer should, rather than
    /// write another item.
    pub fn is_winding_down(&self) -> bool {
        self.winding_down
    }

    /// What a token does to the array or object the current value is in:
    /// the first `,`, `]` or `}` it writes at that depth decides, and after
    /// a close the same at the depth below (`"}, {` closes an item but
    /// writes another). An end token closes; after the whole answer,
    /// anything but white space is more.
    pub fn next_move(&self, bytes: Option<&[u8]>) -> Move {
        let Some(bytes) = bytes else { return Move::Close };
        let mut lex = self.lex;
        let mut depth = lex.depth;
        let mut closed = false;
        for &b in bytes {
            if !lex.in_string && lex.depth == depth {
                match b {
                    b',' => return Move::More,
                    b']' | b'}' => {
                        closed = true;
                        depth = depth.saturating_sub(1);
                    }
                    // Past a whole answer (not markup closing the one just ended).
                    b if self.lex.depth == 0 && !lex.in_scalar && !b.is_ascii_whitespace() => return Move::More,
                    _ => {}
                }
            }
            lex.push(b);
        }
        if closed {
            Move::Close
        } else {
            Move::Within
        }
    }

    /// Outside every array and object (before the answer, after it, or in
    /// markup around it).
    pub fn at_top_level(&self) -> bool {
        self.lex.depth == 0
    }

    /// What is left to close now.
    pub fn cost_now(&self) -> i32 {
        self.lex.cost()
    }

    /// The cost of the structure whose content repeats at the tail, if it
    /// does (the lowest cost within the repeated bytes), and the block's length.
    fn loop_level(&self) -> Option<(i32, usize)> {
        let (text, costs) = (tail(&self.text), tail(&self.costs));
        let n = text.len();
        let digitless = |b: u8| if b.is_ascii_digit() { b'0' } else { b };
        for p in 1..=MAX_PERIOD.min(n / 2) {
            // Bytes at the end equal to the byte one period earlier.
            let m = (0..n - p).take_while(|&i| text[n - 1 - i] == text[n - 1 - i - p]).count();
            let total = m + p;
            let repeats = total / p;
            let deepening = || {
                p >= 16
                    && costs[n - 1] > costs[n - 1 - p]
                    && (0..p).all(|i| digitless(text[n - 1 - i]) == digitless(text[n - 1 - i - p]))
            };
            if (repeats >= 3 && total >= 16) || (repeats >= 2 && p >= 16) {
                return Some((costs[n - total..].iter().copied().min().unwrap_or(0), p));
            }
            if deepening() {
                return Some((costs[n - 2 * p..].iter().copied().min().unwrap_or(0), p));
            }
        }
        None
    }

    /// How much a token leaves to close: `None` bytes for an end token.
    pub fn cost_after(&self, bytes: Option<&[u8]>) -> i32 {
        let Some(bytes) = bytes else { return -1 };
        let mut lex = self.lex;
        for &b in bytes {
            lex.push(b);
        }
        lex.cost()
    }
}

fn tail<T>(v: &[T]) -> &[T] {
    &v[v.len().saturating_sub(WINDOW)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(text: &str) -> JsonEnding {
        let mut e = JsonEnding::default();
        for (i, b) in text.bytes().enumerate() {
            e.accepted(Some(&[b]), i + 1);
        }
        e
    }

    #[test]
    fn the_lexer_follows_strings_escapes_and_nesting() {
        let e = fed(r#"{"a": ["x\"]", 1"#);
        assert_eq!((e.lex.depth, e.lex.in_string, e.lex.in_scalar), (2, false, true));
        assert_eq!(e.cost_after(Some(b"]}")), 0);
        assert_eq!(e.cost_after(Some(b", \"")), 6);
        assert_eq!(e.cost_after(None), -1);
    }

    #[test]
    fn ordinary_json_is_no_loop() {
        let e = fed(r#"{"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry", "engines"], "id": "0a1b2c3d"}"#);
        assert!(!e.is_closing());
        let e = fed(r#"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"#);
        assert!(!e.is_closing());
    }

    #[test]
    fn loops_close_the_structure_they_are_in() {
        // A string repeated in an array: the array (level 2 inside the object) closes.
        let e = fed(r#"{"c": ["red", "red", "red", "red", "#);
        assert_eq!(e.closing, Some(4));
        // A run inside a string: only the string.
        let e = fed(r#"{"c": "aaaaaaaaaaaaaaaaaaaa"#);
        assert_eq!(e.closing, Some(4));
        // Digits.
        let e = fed(r#"{"n": 1000000000000000000"#);
        assert_eq!(e.closing, Some(3));
        // A whole call written twice: the answer ends.
        let call = r#"<tool_call>{"name": "f", "arguments": {}}</tool_call>"#;
        let e = fed(&format!("{call}\n{call}\n"));
        assert_eq!(e.closing, Some(0));
        // A number no reader keeps: it ends.
        assert_eq!(fed(r#"{"a": -4.4e44"#).closing, Some(3));
        assert!(!fed(r#"{"a": -4.4e4"#).is_closing());
        // A recursive structure unrolled, numbers aside: closed from where it began.
        let e = fed(r#"{"name": "p1", "kids": [{"name": "p2", "kids": [{"name": "p3", "kids": [{"#);
        assert_eq!(e.closing, Some(2));
        assert!(!fed(r#"[{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}]"#).is_closing(), "siblings are no recursion");
        // Closing ends once the structure is closed.
        let mut e = fed(r#"{"c": "aaaaaaaaaaaaaaaaaaaa"#);
        e.accepted(Some(b"\""), 30);
        assert!(!e.is_closing());
    }

    #[test]
    fn a_low_budget_closes_to_the_end() {
        let mut e = JsonEnding::default();
        e.set_budget(12);
        for (i, b) in br#"{"a": ["#.iter().enumerate() {
            e.accepted(Some(&[*b]), i + 1);
        }
        assert!(e.is_closing() && e.cut_short());
    }

    #[test]
    fn an_array_item_holding_a_sentence_is_a_loop_when_written_twice() {
        let item = r#"{"task": "Make a list of all the tasks I have to do in the next week, then do them", "done": false}, "#;
        assert!(item.len() > 96);
        let e = fed(&format!(r#"{{"items": [{item}{item}"#));
        assert_eq!(e.closing, Some(4), "the array closes");
    }

    #[test]
    fn winding_down_starts_at_half_the_budget() {
        let mut e = JsonEnding::default();
        e.set_budget(20);
        for (i, b) in br#"{"a": [1,"#.iter().enumerate() {
            e.accepted(Some(&[*b]), i + 1);
        }
        assert!(!e.is_winding_down(), "9 of 20 tokens");
        e.accepted(Some(b" \"x"), 10);
        assert!(e.is_winding_down());
    }

    #[test]
    fn a_token_writes_more_closes_or_stays_within() {
        let e = fed(r#"{"a": ["x", "y"#);
        assert_eq!(e.next_move(Some(b"\", \"")), Move::More);
        assert_eq!(e.next_move(Some(b"\"]")), Move::Close);
        assert_eq!(e.next_move(Some(b"yy")), Move::Within);
        assert_eq!(e.next_move(Some(b"\"")), Move::Within);
        assert_eq!(e.next_move(None), Move::Close);
        let e = fed(r#"{"a": [12"#);
        assert_eq!(e.next_move(Some(b"3")), Move::Within);
        assert_eq!(e.next_move(Some(b",")), Move::More);
        assert_eq!(e.next_move(Some(b"]}")), Move::Close);
        let e = fed(r#"{"a": [{"b": 1}"#);
        assert_eq!(e.next_move(Some(b", {")), Move::More, "the array's next item, not the inner object's");
        let e = fed(r#"{"a": [{"b": "x"#);
        assert_eq!(e.next_move(Some(b"\"}, {\"")), Move::More, "an item closed and another begun");
        assert_eq!(e.next_move(Some(b"\"}]")), Move::Close);
        assert_eq!(e.next_move(Some(b"\"}")), Move::Close);
        let e = fed(r#"<tool_call>{"a": 1}</tool_call>"#);
        assert_eq!(e.next_move(Some(b"\n<tool_call>")), Move::More);
        assert_eq!(e.next_move(Some(b"\n")), Move::Within);
    }
}
