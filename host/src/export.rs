//! `reagent export mlflow`: a campaign into an MLflow tracking server,
//! through its REST API (`/api/2.0/mlflow/…`). One experiment per campaign,
//! one run per settled trial (params: the full configuration and the seed;
//! metrics: each reported curve by step and the final values; tags: phase,
//! hypothesis, status, seed, failure), and, once the campaign has ended,
//! a `proposal` run with the effect, its interval and the report (Markdown
//! and HTML) as artifacts.
//!
//! Idempotent: every run carries `reagent.key` (the trial's launch key, or
//! `proposal`) and gets `reagent.complete` last; an export skips the keys
//! it finds complete, and deletes and redoes one it finds half made.
//!
//! MLflow refuses `@` in metric names: `ndcg@10` is exported as
//! `ndcg_at_10` (the run's `reagent.metric_names` tag keeps the mapping).
//!
//! `[export] mlflow = "URI"` in `.reagent/config.toml` does it as trials
//! finish: after a pass that changed something the driver marks
//! `export.dirty` and starts `reagent __export` detached (one at a time);
//! that process exports every campaign until no pass marked it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value as Json, json};

use crate::campaign::engine::View;
use crate::campaign::{html, report};
use crate::records::campaign::TrialStatus;
use crate::store::Store;

/// What an export did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exported {
    pub experiment_id: String,
    pub experiment: String,
    pub created: usize,
    pub already: usize,
    pub redone: usize,
}

struct Mlflow {
    base: String,
    agent: ureq::Agent,
}

impl Mlflow {
    fn new(uri: &str) -> anyhow::Result<Mlflow> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--tracking-uri {uri:?}: expected the http:// or https:// address of an MLflow tracking server"
            );
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Mlflow { base, agent })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<(u16, Json)> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.to_string().as_bytes()),
            _ => self.agent.post(&url).send_empty(),
        }
        .with_context(|| format!("reaching the MLflow server at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        Ok((status, json))
    }

    fn ok(&self, path: &str, body: &Json) -> anyhow::Result<Json> {
        let (status, json) = self.call("POST", path, Some(body))?;
        if !(200..300).contains(&status) {
            bail!(
                "MLflow {path} answered HTTP {status}: {}",
                json.get("message").and_then(Json::as_str).unwrap_or("")
            );
        }
        Ok(json)
    }

    fn experiment(&self, name: &str, campaign: u64) -> anyhow::Result<String> {
        let q = format!(
            "experiments/get-by-name?experiment_name={}",
            url_encode(name)
        );
        let (status, json) = self.call("GET", &q, None)?;
        if status == 200
            && let Some(id) = json["experiment"]["experiment_id"].as_str()
        {
            return Ok(id.to_string());
        }
        let made = self.ok(
            "experiments/create",
            &json!({"name": name, "tags": [{"key": "reagent.campaign", "value": campaign.to_string()}]}),
        )?;
        made["experiment_id"]
            .as_str()
            .map(str::to_string)
            .context("MLflow created an experiment without an id")
    }

    /// The experiment's runs: `reagent.key` → (run id, complete).
    fn runs(&self, experiment: &str) -> anyhow::Result<BTreeMap<String, (String, bool)>> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"experiment_ids": [experiment], "max_results": 1000});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let page = self.ok("runs/search", &body)?;
            for run in page["runs"].as_array().into_iter().flatten() {
                let tags: BTreeMap<&str, &str> = run["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| Some((t["key"].as_str()?, t["value"].as_str()?)))
                    .collect();
                if let (Some(key), Some(id)) =
                    (tags.get("reagent.key"), run["info"]["run_id"].as_str())
                {
                    out.insert(
                        key.to_string(),
                        (
                            id.to_string(),
                            tags.get("reagent.complete") == Some(&"true"),
                        ),
                    );
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Logs in batches MLflow accepts (1000 metrics, 100 params, 100 tags).
    fn log(
        &self,
        run: &str,
        metrics: &[Json],
        params: &[Json],
        tags: &[Json],
    ) -> anyhow::Result<()> {
        let chunks = metrics
            .len()
            .div_ceil(1000)
            .max(params.len().div_ceil(100))
            .max(tags.len().div_ceil(100))
            .max(1);
        for i in 0..chunks {
            let part = |v: &[Json], n: usize| -> Vec<Json> {
                v.iter().skip(i * n).take(n).cloned().collect()
            };
            self.ok(
                "runs/log-batch",
                &json!({"run_id": run, "metrics": part(metrics, 1000), "params": part(params, 100), "tags": part(tags, 100)}),
            )?;
        }
        Ok(())
    }

    fn put_artifact(&self, artifact_uri: &str, name: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        // Only a server that proxies artifacts takes them over HTTP.
        let Some(path) = artifact_uri.strip_prefix("mlflow-artifacts:/") else {
            return Ok(false);
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}",
            self.base,
            path.trim_start_matches('/')
        );
        let r = self
            .agent
            .put(&url)
            .send(bytes)
            .with_context(|| format!("uploading {name} to {}", self.base))?;
        if !r.status().is_success() {
            bail!(
                "MLflow refused the artifact {name}: HTTP {}",
                r.status().as_u16()
            );
        }
        Ok(true)
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A metric name MLflow accepts (it refuses `@`).
pub fn mlflow_metric(name: &str) -> String {
    name.replace('@', "_at_")
}

fn tag(key: &str, value: impl ToString) -> Json {
    let mut v = value.to_string();
    v.truncate(5000);
    json!({"key": key, "value": v})
}

fn param(key: &str, value: impl ToString) -> Json {
    let mut v = value.to_string();
    v.truncate(6000);
    json!({"key": key, "value": v})
}

/// Exports campaign `id` to the tracking server at `uri`.
pub fn mlflow(store: &Store, id: u64, uri: &str) -> anyhow::Result<Exported> {
    let view = View::load(store, id)?;
    let ml = Mlflow::new(uri)?;
    let name = format!("{} (reagent campaign {id})", view.row.spec.name);
    let experiment = ml.experiment(&name, id)?;
    let existing = ml.runs(&experiment)?;
    let mut done = Exported {
        experiment_id: experiment.clone(),
        experiment: name,
        ..Exported::default()
    };
    let settled = view.trials.iter().filter(|t| {
        !matches!(
            t.status,
            TrialStatus::Queued | TrialStatus::Launching | TrialStatus::Running
        )
    });
    let mut names: BTreeSet<String> = BTreeSet::new();
    for t in settled {
        match existing.get(&t.key) {
            Some((_, true)) => {
                done.already += 1;
                continue;
            }
            Some((run, false)) => {
                ml.ok("runs/delete", &json!({"run_id": run}))?;
                done.redone += 1;
            }
            None => done.created += 1,
        }
        let curves = store.curves(id, t.id)?;
        let run = trial_run(&ml, &experiment, &view, t, &curves, &mut names)?;
        ml.ok(
            "runs/set-tag",
            &json!({"run_id": run, "key": "reagent.complete", "value": "true"}),
        )?;
    }
    if view.row.state.is_terminal() {
        match existing.get("proposal") {
            Some((_, true)) => done.already += 1,
            other => {
                if let Some((run, false)) = other {
                    ml.ok("runs/delete", &json!({"run_id": run}))?;
                    done.redone += 1;
                } else {
                    done.created += 1;
                }
                proposal_run(&ml, &experiment, &view)?;
            }
        }
    }
    Ok(done)
}

fn trial_run(
    ml: &Mlflow,
    experiment: &str,
    view: &View,
    t: &crate::records::campaign::TrialRow,
    curves: &BTreeMap<String, Vec<(u32, f64)>>,
    renamed: &mut BTreeSet<String>,
) -> anyhow::Result<String> {
    let start = t.launched_ms.unwrap_or(view.row.created_ms);
    let end = t.finished_ms.unwrap_or(start);
    let made = ml.ok(
        "runs/create",
        &json!({
            "experiment_id": experiment,
            "run_name": format!("t{} h{}", t.id, t.hypothesis),
            "start_time": start,
            "tags": [tag("reagent.key", &t.key)],
        }),
    )?;
    let run = made["run"]["info"]["run_id"]
        .as_str()
        .context("MLflow created a run without an id")?
        .to_string();
    let mut params: Vec<Json> =
        crate::campaign::engine::full_config(&view.row.spec, &t.assignments)
            .iter()
            .map(|(k, v)| param(k, crate::strategy::render_value(v)))
            .collect();
    params.push(param("seed", t.seed));
    let mut metrics = Vec::new();
    let mut last_step: BTreeMap<&str, u32> = BTreeMap::new();
    for (m, points) in curves {
        for (step, v) in points.iter().filter(|p| p.1.is_finite()) {
            metrics
                .push(json!({"key": mlflow_metric(m), "value": v, "timestamp": end, "step": step}));
            last_step.insert(m, *step);
        }
    }
    for (m, v) in t.metrics.iter().filter(|(_, v)| v.is_finite()) {
        // The final value, unless the curve already ends with it.
        let step = last_step.get(m.as_str()).copied();
        let logged = step.is_some_and(|s| curves[m].iter().any(|p| p.0 == s && p.1 == *v));
        if !logged {
            metrics.push(json!({"key": mlflow_metric(m), "value": v, "timestamp": end, "step": step.map_or(0, |s| s + 1)}));
        }
        if m.contains('@') {
            renamed.insert(m.clone());
        }
    }
    let mut tags = vec![
        tag("mlflow.runName", format!("t{} h{}", t.id, t.hypothesis)),
        tag("reagent.campaign", view.row.id),
        tag("reagent.trial", t.id),
        tag("reagent.hypothesis", t.hypothesis),
        tag("reagent.title", view.labelled_title(t.hypothesis)),
        tag("reagent.phase", t.stage.name()),
        tag("reagent.status", t.status.name()),
        tag("reagent.seed", t.seed),
        tag("reagent.attempt", t.attempt),
    ];
    if let Some(d) = &t.diagnosis {
        tags.push(tag(
            "reagent.failure",
            crate::strategy::failure_class_name(d.class),
        ));
    }
    if !renamed.is_empty() {
        let map: Vec<String> = renamed
            .iter()
            .map(|m| format!("{m} -> {}", mlflow_metric(m)))
            .collect();
        tags.push(tag("reagent.metric_names", map.join(", ")));
    }
    ml.log(&run, &metrics, &params, &tags)?;
    let status = match t.status {
        TrialStatus::Succeeded => "FINISHED",
        TrialStatus::Failed => "FAILED",
        _ => "KILLED",
    };
    ml.ok(
        "runs/update",
        &json!({"run_id": run, "status": status, "end_time": end}),
    )?;
    Ok(run)
}

fn proposal_run(ml: &Mlflow, experiment: &str, view: &View) -> anyhow::Result<()> {
    let r = report::build(view);
    let now = crate::store::now_ms();
    let made = ml.ok(
        "runs/create",
        &json!({
            "experiment_id": experiment,
            "run_name": "proposal",
            "start_time": view.row.started_ms.unwrap_or(view.row.created_ms),
            "tags": [tag("reagent.key", "proposal")],
        }),
    )?;
    let run = made["run"]["info"]["run_id"]
        .as_str()
        .context("MLflow created a run without an id")?
        .to_string();
    let artifact_uri = made["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut metrics = Vec::new();
    let mut push = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            metrics.push(json!({"key": k, "value": v, "timestamp": now, "step": 0}));
        }
    };
    push("effect", r.effect.as_ref().map(|e| e.estimate));
    push("effect_ci95_low", r.effect.as_ref().map(|e| e.ci95_low));
    push("effect_ci95_high", r.effect.as_ref().map(|e| e.ci95_high));
    push("baseline_mean", r.baseline.as_ref().map(|b| b.mean));
    push("best_mean", r.best.as_ref().map(|b| b.mean));
    push("cpu_hours", Some(r.spent.cpu_hours));
    let params: Vec<Json> = r
        .best
        .as_ref()
        .map(|b| b.assignments.iter().map(|(k, v)| param(k, v)).collect())
        .unwrap_or_default();
    let tags = vec![
        tag("mlflow.runName", "proposal"),
        tag("reagent.campaign", view.row.id),
        tag("reagent.state", &r.state),
        tag("reagent.verdict", &r.verdict),
        tag("reagent.confirmed", r.confirmed),
        tag("mlflow.note.content", &r.verdict),
    ];
    ml.log(&run, &metrics, &params, &tags)?;
    let md = report::markdown(&r);
    let page = html::page(view, &r, now)?;
    ml.put_artifact(&artifact_uri, "proposal.md", md.as_bytes())?;
    ml.put_artifact(&artifact_uri, "proposal.html", page.as_bytes())?;
    ml.ok(
        "runs/update",
        &json!({"run_id": run, "status": "FINISHED", "end_time": now}),
    )?;
    ml.ok(
        "runs/set-tag",
        &json!({"run_id": run, "key": "reagent.complete", "value": "true"}),
    )?;
    Ok(())
}

/// The `[export]` section: where to export as trials finish.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoExport {
    pub mlflow: String,
}

/// The workspace's `[export]`, if any (errors located in the file).
pub fn load(dir: &std::path::Path) -> Result<Option<AutoExport>, crate::spec::ConfigError> {
    let Some(c) = crate::config::read(dir)? else {
        return Ok(None);
    };
    let Some(x) = c.sections.export.clone() else {
        return Ok(None);
    };
    let uri = x.mlflow.get_ref();
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err(c.at(
            x.mlflow.span(),
            format!(
                "export.mlflow must be the http:// or https:// address of an MLflow tracking server (it is {uri:?})"
            ),
        ));
    }
    Ok(Some(AutoExport {
        mlflow: x.mlflow.into_inner(),
    }))
}

/// After a pass that changed something: marks the workspace for export
/// and starts `reagent __export` unless one runs (it will see the mark).
pub fn trigger(ws_dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::write(ws_dir.join("export.dirty"), b"1\n")?;
    let lock = ws_dir.join("export.lock");
    match crate::jobs::local::try_lock(&lock, libc::LOCK_EX)? {
        Some(f) => drop(f),
        None => return Ok(()),
    }
    let exe = std::env::current_exe().context("finding the reagent executable")?;
    crate::jobs::local::spawn_detached(
        &exe,
        &[std::ffi::OsStr::new("__export"), ws_dir.as_os_str()],
    )?;
    Ok(())
}

/// Takes the export mark: true when a pass marked the workspace since the
/// last take (`reagent __export` exports again while it does).
pub fn take_mark(ws_dir: &std::path::Path) -> bool {
    std::fs::remove_file(ws_dir.join("export.dirty")).is_ok()
}

/// Holds the export lock, if no other export process does.
pub fn lock(ws_dir: &std::path::Path) -> anyhow::Result<Option<std::fs::File>> {
    crate::jobs::local::try_lock(&ws_dir.join("export.lock"), libc::LOCK_EX)
}

/// Appends lines to `export.log`.
pub fn log(ws_dir: &std::path::Path, lines: &[String]) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ws_dir.join("export.log"))
    {
        use std::io::Write as _;
        for l in lines {
            let _ = writeln!(f, "{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_is_renamed_for_mlflow_and_names_are_url_encoded() {
        assert_eq!(super::mlflow_metric("ndcg@10"), "ndcg_at_10");
        assert_eq!(super::mlflow_metric("val/loss"), "val/loss");
        assert_eq!(super::url_encode("a b (c) #1"), "a%20b%20%28c%29%20%231");
    }
}
