//! Durations as campaign files write them.

use std::time::Duration;

/// Parses a duration such as `90s`, `10m`, `2h`, `1h30m`, `1d` or a bare
/// number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("duration {text:?} must be positive"))
        };
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            ' ' => continue,
            _ => {
                return Err(format!(
                    "cannot read duration {text:?}: unknown unit `{c}` (use s, m, h, d)"
                ));
            }
        };
        let n: f64 = number.parse().map_err(|_| {
            format!("cannot read duration {text:?}: expected a number before `{c}`")
        })?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "cannot read duration {text:?}: the last number has no unit"
        ));
    }
    if total <= 0.0 {
        return Err(format!("duration {text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(total))
}
