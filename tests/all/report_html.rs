//! `reagent report --format html` (issue 20): one self-contained page with
//! its plots, where nothing a strategy or a job wrote is markup.

use crate::campaign::{Project, text};

#[test]
fn the_html_report_is_self_contained_has_its_plots_and_escapes_what_others_wrote() {
    // A choice whose value is markup (it reaches titles, the config diff
    // and the hypotheses table) and a job whose error is markup (it
    // reaches the debugger's diagnosis and the log tail).
    let p = Project::new(|t| {
        t.replace(
            r#"choices = ["sgd", "adam"]"#,
            r#"choices = ["sgd", "<script>alert('choice')</script>"]"#,
        )
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { FAIL_T5 = \"html\" }",
        )
        .replace("max_trials = 24", "max_trials = 16")
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = p.path("report.html");
    let o = p.reagent(&[
        "report",
        "1",
        "--format",
        "html",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    let lower = html.to_lowercase();

    // Nothing runs and nothing is fetched: no script, no element that
    // loads anything; the only URL is the SVG namespace.
    assert!(!lower.contains("<script"), "a script element in the page");
    assert!(!lower.contains("<img"), "an img element in the page");
    assert!(
        !lower.contains("<iframe") && !lower.contains("<link"),
        "{html}"
    );
    for (i, _) in lower.match_indices("http") {
        assert!(
            lower[i..].starts_with("http://www.w3.org/2000/svg")
                || lower[i..].starts_with("http-equiv"),
            "a URL in the page: {}",
            &html[i..(i + 60).min(html.len())]
        );
    }
    // What the job and the choice said is there, as text.
    assert!(
        html.contains("&lt;script&gt;alert(&quot;job&quot;)&lt;/script&gt;"),
        "the job's words are shown escaped"
    );
    assert!(
        html.contains("&lt;script&gt;alert(&#39;choice&#39;)&lt;/script&gt;"),
        "the choice is shown escaped"
    );

    // The plots: progress, effects, confirmation, knobs, timeline, budget.
    let svgs: Vec<&str> = html.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 6, "six plots");
    // The progress plot has one point per succeeded trial.
    let trials = p.json(&["trials", "1", "--json"]);
    let succeeded = trials
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .count();
    let progress = svgs[0].split("</svg>").next().unwrap();
    assert_eq!(
        progress.matches("<circle").count(),
        succeeded,
        "one point per succeeded trial"
    );
    // The numbers are the report's.
    let r = p.json(&["report", "1", "--format", "json"]);
    let baseline = format!("{:.6}", r["baseline"]["mean"].as_f64().unwrap());
    assert!(html.contains(&baseline), "baseline {baseline}");
    let effect = format!("{:.6}", r["effect"]["estimate"].as_f64().unwrap());
    assert!(html.contains(&effect), "effect {effect}");
    assert!(
        html.contains("Failures") && html.contains("t5"),
        "the failed trial is listed"
    );
}
