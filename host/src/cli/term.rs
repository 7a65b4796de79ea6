//! Text that strategies, jobs and imported files wrote, made safe to print
//! on a terminal.
//!
//! A hypothesis title, an approval summary, a log tail or an insight tag is
//! somebody else's text. Printed raw, a control character can move the
//! cursor, clear the screen or set the window title (`ESC ] 0 ; … BEL`), a
//! newline can fake a row of a table (a hostile title printed an "approved …
//! nothing pending" row), and a bidirectional override (U+202E) can make a
//! value read backwards. Every such character is shown as a visible escape
//! (`\u{202e}`, `\n`, `\x1b`) instead: the person sees that it is there and
//! what it is, and nothing is dropped silently.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must never reach a terminal as itself: C0 and C1 controls,
/// DEL, and the invisible formatting characters that reorder or hide text
/// (bidi embeddings, overrides and isolates, marks, zero-width characters,
/// the BOM, the interlinear annotation marks).
fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

fn escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn clean(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| dangerous(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if dangerous(c) && !keep(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of someone else's text: every control and invisible formatting
/// character (newlines and tabs included) shown as an escape.
pub fn line(s: &str) -> Cow<'_, str> {
    clean(s, |_| false)
}

/// A block of someone else's text (a log tail, a rationale, an error
/// message): newlines and tabs kept, everything else [`line`] escapes.
pub fn block(s: &str) -> Cow<'_, str> {
    clean(s, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        assert_eq!(line("adam"), "adam");
        assert!(matches!(line("adam"), Cow::Borrowed(_)));
        assert_eq!(
            line("a\nb\u{202e}c\x1b]0;pwned\x07"),
            "a\\nb\\u{202e}c\\x1b]0;pwned\\x07"
        );
        assert_eq!(block("one\ntwo\r\n\x1b[2J"), "one\ntwo\\r\n\\x1b[2J");
        assert_eq!(line("tab\there"), "tab\\there");
        assert_eq!(line("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(line("zero\u{200b}width"), "zero\\u{200b}width");
        assert_eq!(line("naïve — ok"), "naïve — ok");
    }
}
