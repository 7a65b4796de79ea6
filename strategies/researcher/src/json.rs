//! A small, lenient JSON reader for language-model answers.
//!
//! Models wrap JSON in prose or Markdown fences, leave trailing commas and
//! write `NaN`; [`find_hypotheses`] looks for the list of suggestions in the
//! plain text, then in fenced blocks, then in the first balanced `{…}`, and
//! the parser accepts those slips so that one bad value rejects one
//! suggestion, not the whole answer. Nesting is capped: the input is
//! untrusted.

/// A parsed JSON value. Objects keep their keys in order, duplicates
/// included, so a suggestion that assigns a knob twice can be named.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Deeper nesting than this is refused (a suggestion needs 4 levels).
pub const MAX_DEPTH: usize = 32;

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

/// Parses `text` as exactly one JSON value (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Json, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    parser.skip_space();
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(format!(
            "unexpected text after the value at byte {}",
            parser.at
        ));
    }
    Ok(value)
}

/// The suggestions in a model's answer: the `hypotheses` list of the first
/// JSON object that has one (or a bare list), looked for in the whole
/// text, then in each fenced block, then in each balanced `{…}` (the first
/// few). `None` when there is none.
pub fn find_hypotheses(text: &str) -> Option<Vec<Json>> {
    let from = |candidate: &str| match parse(candidate.trim()) {
        Ok(Json::Object(fields)) => fields
            .into_iter()
            .find(|(k, _)| k == "hypotheses")
            .and_then(|(_, v)| match v {
                Json::List(items) => Some(items),
                _ => None,
            }),
        Ok(Json::List(items)) => Some(items),
        _ => None,
    };
    if let Some(items) = from(text) {
        return Some(items);
    }
    for block in fenced_blocks(text) {
        if let Some(items) = from(block) {
            return Some(items);
        }
    }
    balanced_objects(text).find_map(from)
}

/// The contents of Markdown code fences (after the info string, if any).
fn fenced_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let open = rest.find("```")?;
        let after = &rest[open + 3..];
        // The info string (`json`) runs to the end of the line.
        let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
        let body = &after[body_start..];
        let close = body.find("```").unwrap_or(body.len());
        rest = body.get(close + 3..).unwrap_or("");
        Some(&body[..close])
    })
}

/// Balanced `{…}` spans (strings respected), from each of the first eight
/// `{` that start one.
fn balanced_objects(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut tries = 0;
    std::iter::from_fn(move || {
        while tries < 8 {
            let open = start + text.get(start..)?.find('{')?;
            start = open + 1;
            tries += 1;
            if let Some(end) = matching_brace(bytes, open) {
                return Some(&text[open..=end]);
            }
        }
        None
    })
}

fn matching_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.list(depth),
            Some(b'"') => self.string().map(Json::Text),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I' | b'+') => self.number(),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ if self.eat("null") => Ok(Json::Null),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
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
                _ => return Err(self.error("expected a key or `}`")),
            }
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.at += 1;
            self.skip_space();
            let value = self.value(depth + 1)?;
            fields.push((key, value));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn list(&mut self, depth: usize) -> Result<Json, String> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(Json::List(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {}
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// A number, or the non-JSON `NaN`, `Infinity`, `-Infinity` (kept, so
    /// the suggestion that holds one is rejected for it, not the answer).
    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        for (word, value) in [
            ("NaN", f64::NAN),
            ("Infinity", f64::INFINITY),
            ("+Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            if self.eat(word) {
                return Ok(Json::Number(value));
            }
        }
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let lexeme = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
        lexeme.parse::<f64>().map(Json::Number).map_err(|_| {
            self.at = start;
            self.error("malformed number")
        })
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let start = self.at;
            while !matches!(self.peek(), Some(b'"' | b'\\') | None) {
                self.at += 1;
            }
            // The input is a &str and we stop only at ASCII bytes, so the
            // span is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("\u{FFFD}"));
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("unknown escape")),
                    }
                }
                _ => return Err(self.error("unterminated string")),
            }
        }
    }

    /// After `\u`: four hex digits, a surrogate pair joined; a lone
    /// surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) && self.bytes[self.at..].starts_with(b"\\u") {
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

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("malformed \\u escape"))?;
        self.at += 4;
        Ok(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Json {
        Json::Text(s.into())
    }

    #[test]
    fn parses_plain_json() {
        let v = parse(r#" {"a": [1, -2.5e3, true, null, "x\"y\u00e9\n"], "b": {}} "#).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Json::List(vec![
                Json::Number(1.0),
                Json::Number(-2500.0),
                Json::Bool(true),
                Json::Null,
                text("x\"yé\n"),
            ]))
        );
        assert_eq!(v.get("b"), Some(&Json::Object(vec![])));
        assert_eq!(parse(r#""\ud83d\ude00""#), Ok(text("😀")));
        assert_eq!(parse(r#""\ud83d""#), Ok(text("\u{FFFD}")));
    }

    #[test]
    fn quote_round_trips() {
        for s in ["plain", "a \"b\" \\ c\n\u{1}", "é😀"] {
            assert_eq!(parse(&quote(s)), Ok(text(s)));
        }
    }

    #[test]
    fn is_lenient_about_trailing_commas_and_non_finite_numbers() {
        let v = parse(r#"{"a": [1, 2,], "b": NaN, "c": -Infinity,}"#).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Json::List(vec![Json::Number(1.0), Json::Number(2.0)]))
        );
        assert!(matches!(v.get("b"), Some(Json::Number(x)) if x.is_nan()));
        assert_eq!(v.get("c"), Some(&Json::Number(f64::NEG_INFINITY)));
        assert_eq!(parse("1e999"), Ok(Json::Number(f64::INFINITY)));
    }

    #[test]
    fn keeps_duplicate_keys_in_order() {
        let v = parse(r#"{"k": 1, "k": 2}"#).unwrap();
        assert_eq!(
            v,
            Json::Object(vec![
                ("k".into(), Json::Number(1.0)),
                ("k".into(), Json::Number(2.0))
            ])
        );
        assert_eq!(v.get("k"), Some(&Json::Number(1.0)));
    }

    #[test]
    fn refuses_malformed_input_with_a_position() {
        for bad in [
            "",
            "{",
            "{\"a\" 1}",
            "[1 2]",
            "\"abc",
            "tru",
            "1.2.3",
            "{} {}",
            "\"\\x\"",
            "\"\\u12\"",
            "{'a': 1}",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("at byte"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).unwrap_err().contains("nested too deeply"));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn finds_the_hypotheses_in_prose_fences_or_a_bare_list() {
        let plain = r#"{"hypotheses": [{"title": "a"}]}"#;
        let want = Some(vec![Json::Object(vec![("title".into(), text("a"))])]);
        assert_eq!(find_hypotheses(plain), want);
        let fenced = format!("Here you go:\n```json\n{plain}\n```\nGood luck!");
        assert_eq!(find_hypotheses(&fenced), want);
        let prose = format!("Sure! {{not json}} and then {plain} -- done {{");
        assert_eq!(find_hypotheses(&prose), want);
        let braces_in_strings = r#"x {"hypotheses": [{"title": "}{"}]} y"#;
        assert_eq!(
            find_hypotheses(braces_in_strings),
            Some(vec![Json::Object(vec![("title".into(), text("}{"))])])
        );
        assert_eq!(
            find_hypotheses(r#"[{"title": "a"}]"#),
            Some(vec![Json::Object(vec![("title".into(), text("a"))])])
        );
        assert_eq!(find_hypotheses("I cannot help with that."), None);
        assert_eq!(find_hypotheses(r#"{"answer": 42}"#), None);
        assert_eq!(find_hypotheses(r#"{"hypotheses": "none"}"#), None);
        assert_eq!(find_hypotheses("```\n```"), None);
        assert_eq!(find_hypotheses("```json"), None);
    }
}
