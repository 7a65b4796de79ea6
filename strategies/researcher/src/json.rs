//! Reading language-model answers.
//!
//! Models wrap JSON in prose or Markdown fences, leave trailing commas and
//! write `NaN`; [`find_hypotheses`] looks for the list of suggestions in the
//! plain text, then in fenced blocks, then in the first balanced `{…}`. The
//! parsing is [`lenient_json`]'s, which accepts those slips so that one bad
//! value rejects one suggestion, not the whole answer. Nesting is capped:
//! the input is untrusted.

pub use lenient_json::{Json, quote};

/// Deeper nesting than this is refused (a suggestion needs 4 levels).
pub const MAX_DEPTH: usize = 32;

/// Parses `text` as exactly one JSON value (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Json, String> {
    lenient_json::parse(text, MAX_DEPTH).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Json {
        Json::Text(s.into())
    }

    #[test]
    fn parses_leniently_with_the_depth_cap() {
        let v = parse(r#"{"a": [1, 2,], "b": NaN, "k": 1, "k": 2,}"#).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Json::List(vec![Json::Number(1.0), Json::Number(2.0)]))
        );
        assert!(matches!(v.get("b"), Some(Json::Number(x)) if x.is_nan()));
        assert_eq!(v.get("k"), Some(&Json::Number(1.0)));
        assert!(parse("[1 2]").unwrap_err().contains("at byte 3"));
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
