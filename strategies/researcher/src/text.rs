//! Text from outside the strategy (a language model's answer, past
//! campaigns' names and tags) made safe to put in a prompt, a rationale or
//! a log line: no control or invisible formatting characters, one space
//! between words, a bounded length.

/// `s` with control and invisible formatting characters (bidirectional
/// overrides, zero-width characters) turned into spaces, runs of white
/// space collapsed to one space, trimmed, and cut to at most `max`
/// characters (an ellipsis marks the cut).
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() || is_invisible(c) {
            pending_space = chars > 0;
            continue;
        }
        let needed = 1 + usize::from(pending_space);
        if chars + needed > max {
            if max > 0 {
                // Make room for the ellipsis.
                if chars == max {
                    out.pop();
                }
                out.push('…');
            }
            return out;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Characters that change how text displays without showing themselves.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_controls_and_invisibles_and_collapses_space() {
        assert_eq!(clean("  a\tb\n\n c\u{1b}[31m d ", 100), "a b c [31m d");
        assert_eq!(clean("x\u{202E}y\u{200B}z", 100), "x y z");
        assert_eq!(clean("", 10), "");
        assert_eq!(clean(" \n\t ", 10), "");
    }

    #[test]
    fn clean_cuts_at_max_characters_with_an_ellipsis() {
        assert_eq!(clean("abcdef", 6), "abcdef");
        assert_eq!(clean("abcdefg", 6), "abcde…");
        assert_eq!(clean("ab cdefg", 3), "ab…");
        assert_eq!(clean("éééé", 3), "éé…");
        assert_eq!(clean("abc", 0), "");
        assert_eq!(clean("abcdef", 6).chars().count(), 6);
        assert_eq!(clean("abcdefg", 6).chars().count(), 6);
    }

    #[test]
    fn cut_keeps_character_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
