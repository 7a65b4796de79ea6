//! Tests of the metrics readers, the caps and the early-stop detector.

use super::*;

fn points(reader: &mut JsonlReader, s: &str) -> Vec<(String, u32, f64)> {
    reader
        .feed(s.as_bytes())
        .into_iter()
        .map(|p| (p.metric, p.step, p.value))
        .collect()
}

#[test]
fn names_metrics_and_points_are_capped_with_notes() {
    let mut text = String::new();
    text.push_str(&format!(
        "{{\"{}\": 1}}\n",
        "n".repeat(MAX_METRIC_NAME_BYTES + 1)
    ));
    for i in 0..MAX_METRICS + 5 {
        text.push_str(&format!("{{\"m{i}\": 1}}\n"));
    }
    for i in 0..MAX_POINTS_PER_CURVE + 10 {
        text.push_str(&format!("{{\"step\": {i}, \"m0\": {i}}}\n"));
    }
    let m = parse_jsonl(text.as_bytes());
    assert_eq!(m.finals.len(), MAX_METRICS);
    assert!(m.finals.keys().all(|k| k.len() <= MAX_METRIC_NAME_BYTES));
    assert_eq!(m.curves["m0"].len(), MAX_POINTS_PER_CURVE);
    let last = (MAX_POINTS_PER_CURVE + 9) as u32;
    assert_eq!(
        m.curves["m0"].last(),
        Some(&(last, f64::from(last))),
        "ends at the final value"
    );
    assert_eq!(m.finals["m0"], f64::from(last));
    let notes = m.cap_notes();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes.iter().all(|n| n.starts_with("metrics capped: ")),
        "{notes:?}"
    );
}

#[test]
fn a_symlink_or_fifo_is_not_read_as_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("secret");
    std::fs::write(&target, "{\"valid_loss\": 0.1}\n").unwrap();
    let link = tmp.path().join("metrics.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let m = read_jsonl_file(&link);
    assert!(m.finals.is_empty());
    assert_eq!(m.errors.len(), 1, "{:?}", m.errors);
    assert!(
        !m.errors[0].contains(tmp.path().to_str().unwrap()),
        "no path: {:?}",
        m.errors
    );
    let fifo = tmp.path().join("fifo.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    #[allow(unsafe_code)]
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(r, 0);
    let m = read_jsonl_file(&fifo);
    assert!(m.finals.is_empty() && m.errors.len() == 1, "{:?}", m.errors);
}

#[test]
fn jsonl_numbers_steps_and_python_tokens() {
    let text = "{\"step\": 0, \"loss\": 2.5, \"phase\": \"train\", \"ok\": true}\n\
                \n\
                {\"step\": 10, \"loss\": NaN, \"valid_ndcg\": 0.41, \"valid_ndcg_stderr\": 0.01}\n\
                {\"step\": 20, \"up\": Infinity, \"down\": -Infinity, \"nested\": {\"x\": [1, NaN]}}\n";
    let m = parse_jsonl(text.as_bytes());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.curves["loss"][0], (0, 2.5));
    assert_eq!(m.curves["loss"][1].0, 10);
    assert!(m.finals["loss"].is_nan());
    assert_eq!(m.finals["valid_ndcg"], 0.41);
    assert_eq!(m.finals["valid_ndcg_stderr"], 0.01);
    assert_eq!(m.finals["up"], f64::INFINITY);
    assert_eq!(m.finals["down"], f64::NEG_INFINITY);
    assert_eq!(m.curves["up"], vec![(20, f64::INFINITY)]);
    // step, non-numeric and nested fields are not metrics
    let names: Vec<&str> = m.finals.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["down", "loss", "up", "valid_ndcg", "valid_ndcg_stderr"]
    );
}

#[test]
fn jsonl_default_step_is_index_among_metric_lines() {
    let text = "{\"event\": \"start\"}\n{\"loss\": 3}\n\n{\"loss\": 2}\n{\"epoch\": 7, \"loss\": 1}\n{\"loss\": 0.5}";
    let m = parse_jsonl(text.as_bytes());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    // the last line has no newline and is still read
    assert_eq!(
        m.curves["loss"],
        vec![(0, 3.0), (1, 2.0), (7, 1.0), (3, 0.5)]
    );
    assert_eq!(m.finals["loss"], 0.5);
    assert!(!m.finals.contains_key("epoch"));
}

#[test]
fn jsonl_bad_step_falls_back_with_an_error() {
    let m = parse_jsonl(b"{\"step\": -1, \"loss\": 1}\n{\"step\": 1.5, \"loss\": 2}\n");
    assert_eq!(m.curves["loss"], vec![(0, 1.0), (1, 2.0)]);
    assert_eq!(m.errors.len(), 2);
    assert!(
        m.errors[0].starts_with("line 1: `step` is -1"),
        "{:?}",
        m.errors
    );
    assert!(
        m.errors[1].starts_with("line 2: `step` is 1.5"),
        "{:?}",
        m.errors
    );
}

#[test]
fn jsonl_garbage_lines_are_numbered_and_capped() {
    let mut text = String::from(
        "{\"loss\": 1}\nnot json at all\n[1, 2]\n{\"loss\": }\n{\"a\": 1} trailing\n\"str\"\n{\"loss\": 0.5}\n",
    );
    text.push_str("{\"deep\": ");
    text.push_str(&"[".repeat(200));
    text.push('\n');
    let m = parse_jsonl(text.as_bytes());
    assert_eq!(m.curves["loss"], vec![(0, 1.0), (1, 0.5)]);
    assert_eq!(m.errors.len(), 6, "{:?}", m.errors);
    assert!(
        m.errors[0].starts_with("line 2: not a JSON object"),
        "{:?}",
        m.errors
    );
    assert!(m.errors[1].starts_with("line 3: not a JSON object"));
    assert!(
        m.errors[2].starts_with("line 4: expected a value at column 10"),
        "{:?}",
        m.errors
    );
    assert!(
        m.errors[3].starts_with("line 5: expected the end of the line"),
        "{:?}",
        m.errors
    );
    assert!(m.errors[4].starts_with("line 6: "));
    assert!(
        m.errors[5].starts_with("line 8: nested deeper"),
        "{:?}",
        m.errors
    );

    let many = "garbage\n".repeat(50);
    let m = parse_jsonl(many.as_bytes());
    assert_eq!(m.errors.len(), MAX_METRICS_ERRORS);
    assert!(m.errors[18].starts_with("line 19: "));
    assert_eq!(m.errors[19], "… and 31 more errors");
}

#[test]
fn jsonl_strings_and_escapes() {
    let m = parse_jsonl(
        "{\"na\\u00efve \\\"q\\\"\": 1, \"\\ud83d\\ude00\": 2, \"x\": \"a\\\\b\\/}\", \"é\": 3}\n"
            .as_bytes(),
    );
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.finals["naïve \"q\""], 1.0);
    assert_eq!(m.finals["😀"], 2.0);
    assert_eq!(m.finals["é"], 3.0);
    let m = parse_jsonl(b"{\"a\": \"unterminated}\n{\"b\": \xff}\n");
    assert_eq!(m.errors.len(), 2, "{:?}", m.errors);
    assert!(m.errors[0].contains("never closes"));
    assert_eq!(m.errors[1], "line 2: not valid UTF-8");
}

#[test]
fn jsonl_reader_holds_partial_lines() {
    let mut r = JsonlReader::new();
    assert!(points(&mut r, "{\"loss\": 1").is_empty());
    assert!(points(&mut r, ".5, \"step\"").is_empty());
    assert_eq!(points(&mut r, ": 4}\n{\"lo"), vec![("loss".into(), 4, 1.5)]);
    assert_eq!(points(&mut r, "ss\": 1}\n"), vec![("loss".into(), 1, 1.0)]);
    assert!(r.finish().is_empty());
    assert!(r.errors().is_empty());
}

#[test]
fn jsonl_overlong_line_is_skipped() {
    let mut r = JsonlReader::new();
    let big = vec![b' '; MAX_LINE_BYTES + 10];
    assert!(r.feed(&big).is_empty());
    assert_eq!(r.feed(b"{\"x\": 1}\n{\"loss\": 2}\n").len(), 1);
    assert_eq!(r.errors().len(), 1);
    assert!(r.errors()[0].starts_with("line 1: longer than"));
}

#[test]
fn regex_every_match_is_a_point_and_the_last_wins() {
    let pat = r"(?:loss=(?P<loss>\S+))|(?:acc=(?P<acc>\S+))";
    let m = parse_regex(
        pat,
        &[
            "loss=3.0\nacc=0.1\nloss=2.0\n",
            "loss=nan acc=inf\nacc=bad\n",
        ],
    );
    let loss = &m.curves["loss"];
    assert_eq!(loss[..2], [(0, 3.0), (1, 2.0)]);
    assert_eq!(loss.len(), 3);
    assert_eq!(loss[2].0, 2);
    assert!(m.finals["loss"].is_nan());
    assert_eq!(m.curves["acc"], vec![(0, 0.1), (1, f64::INFINITY)]);
    assert_eq!(m.finals["acc"], f64::INFINITY);
    assert_eq!(m.errors.len(), 1, "{:?}", m.errors);
    assert!(m.errors[0].contains("`acc` matched \"bad\""));

    let m = parse_regex(
        r"val_ndcg: (?P<valid_ndcg>[0-9.]+)",
        &["val_ndcg: 0.5\nval_ndcg: 0.52\n"],
    );
    assert_eq!(m.finals["valid_ndcg"], 0.52);
    assert!(parse_regex("([0-9]+)", &["1"]).errors[0].contains("no named groups"));
    assert!(parse_regex("(?P<x>", &["1"]).errors[0].starts_with("metrics regex"));
}

fn feed_stop(points: &[(&str, u32, f64)]) -> Option<String> {
    let mut s = EarlyStop::new();
    points.iter().find_map(|&(m, step, value)| {
        s.check(&Point {
            metric: m.into(),
            step,
            value,
        })
    })
}

#[test]
fn early_stop_on_nan_and_inf() {
    assert_eq!(
        feed_stop(&[("loss", 0, 1.0), ("acc", 5, f64::NAN)]).as_deref(),
        Some("metric `acc` is NaN at step 5")
    );
    assert_eq!(
        feed_stop(&[("train_loss", 3, f64::NEG_INFINITY)]).as_deref(),
        Some("metric `train_loss` is -inf at step 3")
    );
    assert_eq!(feed_stop(&[("valid_ndcg_stderr", 1, f64::NAN)]), None);
}

#[test]
fn early_stop_on_loss_explosion() {
    assert_eq!(
        feed_stop(&[("loss", 0, 0.7), ("loss", 1, 5.0), ("loss", 2, 80.0)]).as_deref(),
        Some("metric `loss` exploded: 0.7 → 80 at step 2")
    );
    // above 100x but not above 10: not an explosion
    assert_eq!(feed_stop(&[("loss", 0, 0.01), ("loss", 1, 9.0)]), None);
    // above 10 but not above 100x
    assert_eq!(feed_stop(&[("loss", 0, 2.0), ("loss", 1, 150.0)]), None);
    // only loss metrics explode
    assert_eq!(feed_stop(&[("tokens", 0, 1.0), ("tokens", 1, 1e9)]), None);
}

#[test]
fn early_stop_no_false_positive_for_decreasing_loss() {
    let mut pts = Vec::new();
    for step in 0..1000u32 {
        let loss = 8.0 * (-(step as f64) / 200.0).exp() + 0.1 + 0.05 * ((step % 7) as f64);
        pts.push(("loss", step, loss));
        pts.push(("valid_loss", step, loss * 1.1));
        pts.push(("valid_ndcg", step, 0.3 + step as f64 / 5000.0));
    }
    assert_eq!(feed_stop(&pts), None);
}

#[test]
fn tail_reads_only_appended_bytes() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut tail = MetricsTail::new(path.clone());
    assert_eq!(tail.poll(), None);
    let mut f = File::create(&path).unwrap();
    writeln!(f, "{{\"step\": 0, \"loss\": 1.0}}").unwrap();
    write!(f, "{{\"step\": 1, \"loss\": ").unwrap();
    assert_eq!(tail.poll(), None);
    writeln!(f, "NaN}}").unwrap();
    assert_eq!(
        tail.poll().as_deref(),
        Some("metric `loss` is NaN at step 1")
    );
    assert_eq!(tail.poll(), None);
}

#[test]
fn jsonl_errors_name_the_column_and_what_was_found() {
    let text = "{\"loss\": }\n{\"a\": 1} x\n{\"a\": \"b\n{\"a\": tru}\n  [1]\n{\"a\": 1,}\n";
    let m = parse_jsonl(text.as_bytes());
    assert_eq!(
        m.errors,
        [
            "line 1: expected a value at column 10, found '}'",
            "line 2: expected the end of the line at column 10, found 'x'",
            "line 3: string opened at column 7 never closes",
            "line 4: expected `true` at column 7, found 't'",
            "line 5: not a JSON object (starts with '[')",
        ]
    );
    // A trailing comma is one of the slips the reader takes.
    assert_eq!(m.finals["a"], 1.0);
}
