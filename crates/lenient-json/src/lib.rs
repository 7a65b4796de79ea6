//! A small, lenient JSON reader for untrusted text.
//!
//! It reads standard JSON plus the slips that real producers make: Python's
//! bare `NaN`, `Infinity` and `-Infinity` (and `+Infinity`), numbers with a
//! leading `+` or zero or a bare trailing `.` (anything Rust's `f64` parser
//! takes), trailing commas in lists and objects, and raw control characters
//! in strings. Objects keep their keys in order, duplicates included. The
//! caller caps the nesting, so deep input cannot overflow the stack; nothing
//! here panics, and every error names the byte offset and what was expected
//! there.

use std::fmt;

#[cfg(test)]
mod tests;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Json>),
    /// The fields in order, duplicate keys included.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The first value under `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// What kind of JSON value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::Text(_) => "a string",
            Json::List(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

/// Why a text is not (lenient) JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset into the text: where the problem was found, or for
    /// [`ErrorKind::UnterminatedString`] the string's opening quote.
    pub at: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something else stands where this was expected, e.g. `"a value"` or
    /// ``"`,` or `]`"``.
    Expected(&'static str),
    /// More than white space follows the value.
    TrailingText,
    /// A value nested deeper than the caller's cap.
    TooDeep { max_depth: usize },
    /// A string that never closes.
    UnterminatedString,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at;
        match &self.kind {
            ErrorKind::Expected(what) => write!(f, "expected {what} at byte {at}"),
            ErrorKind::TrailingText => write!(f, "unexpected text after the value at byte {at}"),
            ErrorKind::TooDeep { max_depth } => {
                write!(
                    f,
                    "nested too deeply (over {max_depth} levels) at byte {at}"
                )
            }
            ErrorKind::UnterminatedString => {
                write!(f, "unterminated string (opened at byte {at})")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Parses `text` as exactly one JSON value (white space around it allowed).
/// The top-level value is at depth 0 and each list or object adds one; a
/// value deeper than `max_depth` is refused.
pub fn parse(text: &str, max_depth: usize) -> Result<Json, Error> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        max_depth,
    };
    p.skip_space();
    let value = p.value(0)?;
    p.skip_space();
    if p.at < p.s.len() {
        return Err(p.error(ErrorKind::TrailingText));
    }
    Ok(value)
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn error(&self, kind: ErrorKind) -> Error {
        Error { at: self.at, kind }
    }

    fn expected(&self, what: &'static str) -> Error {
        self.error(ErrorKind::Expected(what))
    }

    /// Consumes `word` if the text continues with it.
    fn eat(&mut self, word: &str) -> bool {
        let found = self.s[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn literal(
        &mut self,
        word: &'static str,
        expected: &'static str,
        value: Json,
    ) -> Result<Json, Error> {
        if self.eat(word) {
            Ok(value)
        } else {
            Err(self.expected(expected))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        if depth > self.max_depth {
            let max_depth = self.max_depth;
            return Err(self.error(ErrorKind::TooDeep { max_depth }));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.list(depth),
            Some(b'"') => self.string().map(Json::Text),
            Some(b't') => self.literal("true", "`true`", Json::Bool(true)),
            Some(b'f') => self.literal("false", "`false`", Json::Bool(false)),
            Some(b'n') => self.literal("null", "`null`", Json::Null),
            Some(b'N') => self.literal("NaN", "`NaN`", Json::Number(f64::NAN)),
            Some(b'I') => self.literal("Infinity", "`Infinity`", Json::Number(f64::INFINITY)),
            Some(b'+' | b'-') if self.s.get(self.at + 1) == Some(&b'I') => {
                let sign = if self.eat("-") {
                    -1.0
                } else {
                    self.at += 1;
                    1.0
                };
                self.literal("Infinity", "`Infinity`", Json::Number(sign * f64::INFINITY))
            }
            Some(b'+' | b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.expected("a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, Error> {
        self.at += 1;
        let mut fields = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                // Also closes after a trailing comma.
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                Some(b'"') => {}
                _ => return Err(self.expected("a field name")),
            }
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.expected("`:`"));
            }
            self.at += 1;
            self.skip_space();
            fields.push((key, self.value(depth + 1)?));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.expected("`,` or `}`")),
            }
        }
    }

    fn list(&mut self, depth: usize) -> Result<Json, Error> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            // Also closes after a trailing comma.
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(Json::List(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {}
                _ => return Err(self.expected("`,` or `]`")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// `[+-]? digits ('.' digits?)? ([eE] [+-]? digits)?`: JSON's numbers
    /// and the slips Rust's `f64` parser accepts (`+1`, `01`, `1.`). One out
    /// of range becomes ±infinity, as in Python.
    fn number(&mut self) -> Result<Json, Error> {
        let start = self.at;
        if matches!(self.peek(), Some(b'+' | b'-')) {
            self.at += 1;
        }
        let mut mantissa = self.digits();
        if self.peek() == Some(b'.') {
            self.at += 1;
            mantissa += self.digits();
        }
        if mantissa == 0 {
            return Err(self.expected("a digit"));
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.expected("a digit"));
            }
        }
        // The span is ASCII and matches the grammar above, so it parses.
        std::str::from_utf8(&self.s[start..self.at])
            .ok()
            .and_then(|n| n.parse::<f64>().ok())
            .map(Json::Number)
            .ok_or(Error {
                at: start,
                kind: ErrorKind::Expected("a number"),
            })
    }

    /// A string, starting at its opening quote.
    fn string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            let start = self.at;
            while !matches!(self.peek(), Some(b'"' | b'\\') | None) {
                self.at += 1;
            }
            // The input is a &str and the span ends at an ASCII byte, so it
            // is whole characters.
            out.push_str(std::str::from_utf8(&self.s[start..self.at]).unwrap_or("\u{FFFD}"));
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.escape()? {
                        Some(c) => out.push(c),
                        None => break,
                    }
                }
                _ => break,
            }
        }
        Err(Error {
            at: open,
            kind: ErrorKind::UnterminatedString,
        })
    }

    /// After a `\`: the escaped character, or `None` at the end of the text.
    fn escape(&mut self) -> Result<Option<char>, Error> {
        let Some(e) = self.peek() else {
            return Ok(None);
        };
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.at += 1;
                return self.unicode_escape().map(Some);
            }
            _ => return Err(self.expected("an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)")),
        };
        self.at += 1;
        Ok(Some(c))
    }

    /// After `\u`: one escape, or a surrogate pair joined; a lone surrogate
    /// (which Python writes for unpaired ones) becomes U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) && self.s[self.at..].starts_with(b"\\u") {
            let save = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            self.at = save;
        }
        Ok(char::from_u32(high).unwrap_or('\u{FFFD}'))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.expected("a hex digit")),
            };
            v = v * 16 + u32::from(d);
            self.at += 1;
        }
        Ok(v)
    }
}
