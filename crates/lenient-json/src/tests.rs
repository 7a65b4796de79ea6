use super::*;

const DEPTH: usize = 32;

fn text(s: &str) -> Json {
    Json::Text(s.into())
}

fn num(x: f64) -> Json {
    Json::Number(x)
}

fn err(input: &str) -> Error {
    parse(input, DEPTH).unwrap_err()
}

#[test]
fn parses_plain_json() {
    let v = parse(
        r#" {"a": [1, -2.5e3, 0.5E+2, true, false, null, "x\"y\u00e9\n\/\t"], "b": {}} "#,
        DEPTH,
    )
    .unwrap();
    assert_eq!(
        v.get("a"),
        Some(&Json::List(vec![
            num(1.0),
            num(-2500.0),
            num(50.0),
            Json::Bool(true),
            Json::Bool(false),
            Json::Null,
            text("x\"yé\n/\t"),
        ]))
    );
    assert_eq!(v.get("b"), Some(&Json::Object(vec![])));
    assert_eq!(v.get("c"), None);
    assert_eq!(num(1.0).get("a"), None);
    assert_eq!(parse("[]", DEPTH), Ok(Json::List(vec![])));
    assert_eq!(parse("\"é😀\"", DEPTH), Ok(text("é😀")));
}

#[test]
fn joins_surrogate_pairs_and_replaces_lone_ones() {
    assert_eq!(parse(r#""\ud83d\ude00""#, DEPTH), Ok(text("😀")));
    assert_eq!(parse(r#""\ud83d""#, DEPTH), Ok(text("\u{FFFD}")));
    assert_eq!(parse(r#""\ud83d\u0041""#, DEPTH), Ok(text("\u{FFFD}A")));
    assert_eq!(parse(r#""\uDE00x""#, DEPTH), Ok(text("\u{FFFD}x")));
}

#[test]
fn quote_round_trips() {
    for s in ["plain", "a \"b\" \\ c\n\u{1}\t", "é😀", ""] {
        assert_eq!(parse(&quote(s), DEPTH), Ok(text(s)));
    }
    assert_eq!(quote("a\"\n"), r#""a\"\n""#);
}

#[test]
fn is_lenient_about_trailing_commas_and_non_finite_numbers() {
    let v = parse(
        r#"{"a": [1, 2,], "b": NaN, "c": -Infinity, "d": Infinity, "e": +Infinity,}"#,
        DEPTH,
    )
    .unwrap();
    assert_eq!(v.get("a"), Some(&Json::List(vec![num(1.0), num(2.0)])));
    assert!(matches!(v.get("b"), Some(Json::Number(x)) if x.is_nan()));
    assert_eq!(v.get("c"), Some(&num(f64::NEG_INFINITY)));
    assert_eq!(v.get("d"), Some(&num(f64::INFINITY)));
    assert_eq!(v.get("e"), Some(&num(f64::INFINITY)));
    assert_eq!(parse("1e999", DEPTH), Ok(num(f64::INFINITY)));
    assert_eq!(parse("-1e999", DEPTH), Ok(num(f64::NEG_INFINITY)));
    // What Rust's float parser takes: a leading `+` or zero, a bare `.`.
    for (lenient, want) in [("+1", 1.0), ("01", 1.0), ("1.", 1.0), ("-.5", -0.5)] {
        assert_eq!(parse(lenient, DEPTH), Ok(num(want)), "{lenient}");
    }
    // Raw control characters in a string are kept.
    assert_eq!(parse("\"a\nb\"", DEPTH), Ok(text("a\nb")));
}

#[test]
fn keeps_duplicate_keys_in_order() {
    let v = parse(r#"{"k": 1, "j": null, "k": 2}"#, DEPTH).unwrap();
    assert_eq!(
        v,
        Json::Object(vec![
            ("k".into(), num(1.0)),
            ("j".into(), Json::Null),
            ("k".into(), num(2.0))
        ])
    );
    assert_eq!(v.get("k"), Some(&num(1.0)));
}

#[test]
fn names_what_was_expected_and_where() {
    let expected = |what| ErrorKind::Expected(what);
    for (bad, at, kind) in [
        ("", 0, expected("a value")),
        ("  ", 2, expected("a value")),
        ("{", 1, expected("a field name")),
        ("{'a': 1}", 1, expected("a field name")),
        ("{\"a\" 1}", 5, expected("`:`")),
        ("{\"a\": }", 6, expected("a value")),
        ("{\"a\": 1 \"b\"}", 8, expected("`,` or `}`")),
        ("[1 2]", 3, expected("`,` or `]`")),
        ("[1,,2]", 3, expected("a value")),
        ("tru", 0, expected("`true`")),
        ("nul", 0, expected("`null`")),
        ("Nan", 0, expected("`NaN`")),
        ("-Inf", 1, expected("`Infinity`")),
        ("-", 1, expected("a digit")),
        ("-x", 1, expected("a digit")),
        ("1e", 2, expected("a digit")),
        ("1e+", 3, expected("a digit")),
        (
            "\"\\x\"",
            2,
            expected("an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)"),
        ),
        ("\"\\u12\"", 5, expected("a hex digit")),
        ("\"\\ud800\\u12\"", 11, expected("a hex digit")),
        ("1.2.3", 3, ErrorKind::TrailingText),
        ("{} {}", 3, ErrorKind::TrailingText),
        ("[\"abc", 1, ErrorKind::UnterminatedString),
        ("\"abc\\", 0, ErrorKind::UnterminatedString),
    ] {
        assert_eq!(err(bad), Error { at, kind }, "{bad:?}");
        assert!(
            err(bad).to_string().contains(&format!("at byte {at}")),
            "{bad:?}"
        );
    }
    assert_eq!(err("[1 2]").to_string(), "expected `,` or `]` at byte 3");
    assert_eq!(
        err("{} x").to_string(),
        "unexpected text after the value at byte 3"
    );
    assert_eq!(
        err("\"a").to_string(),
        "unterminated string (opened at byte 0)"
    );
}

#[test]
fn refuses_deep_nesting_without_overflowing_the_stack() {
    let deep = "[".repeat(100_000);
    let e = parse(&deep, DEPTH).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep { max_depth: DEPTH });
    assert_eq!(e.at, DEPTH + 1);
    assert!(e.to_string().contains("nested too deeply"));
    let ok = format!("{}{}", "[".repeat(DEPTH + 1), "]".repeat(DEPTH + 1));
    assert!(parse(&ok, DEPTH).is_ok());
    let over = format!("{}{}", "[".repeat(DEPTH + 2), "]".repeat(DEPTH + 2));
    assert!(parse(&over, DEPTH).is_err());
    assert!(parse(&over, DEPTH + 1).is_ok());
    assert!(parse("{\"a\": 1}", 0).is_err());
    assert_eq!(parse("1", 0), Ok(num(1.0)));
}

#[test]
fn kinds_name_the_value() {
    for (v, kind) in [
        ("null", "null"),
        ("true", "a boolean"),
        ("1", "a number"),
        ("\"\"", "a string"),
        ("[]", "a list"),
        ("{}", "an object"),
    ] {
        assert_eq!(parse(v, DEPTH).unwrap().kind(), kind);
    }
}
