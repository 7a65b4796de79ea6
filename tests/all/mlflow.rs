//! `reagent export mlflow` against a real `mlflow server` (SQLite store,
//! artifacts proxied, on 127.0.0.1) started here from the test venv; the
//! export is read back through MLflow's own client and compared with the
//! store; a second export adds nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::campaign::{Project, text};

fn venv_python() -> Option<PathBuf> {
    crate::support::python_with("mlflow")
}

struct MlflowServer(Child);

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // The server's workers are its children: stop the whole group.
        // SAFETY: killpg on the group this test created for the server.
        #[allow(unsafe_code)]
        unsafe {
            libc::killpg(self.0.id() as i32, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn start_server(py: &Path, dir: &Path) -> (MlflowServer, String) {
    use std::os::unix::process::CommandExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mlflow = py.parent().unwrap().join("mlflow");
    let child = std::process::Command::new(mlflow)
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let server = MlflowServer(child);
    let uri = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        let up = ureq::get(&format!("{uri}/health")).call().is_ok();
        if up {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "mlflow server did not come up: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    (server, uri)
}

#[test]
fn a_campaign_exports_to_a_real_mlflow_server_once_and_reads_back_the_same() {
    let Some(py) = venv_python() else {
        return;
    };
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 12").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { FAIL_T5 = \"crash\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let server_dir = tempfile::tempdir().unwrap();
    let (_server, uri) = start_server(&py, server_dir.path());

    let first = p.json(&["export", "mlflow", "1", "--tracking-uri", &uri, "--json"]);
    let trials = p.json(&["trials", "1", "--json"]);
    let trials = trials.as_array().unwrap();
    let settled = trials
        .iter()
        .filter(|t| {
            !matches!(
                t["status"].as_str(),
                Some("queued" | "launching" | "running")
            )
        })
        .count();
    assert_eq!(first["created"], settled + 1, "{first}");
    assert_eq!(first["already"], 0, "{first}");
    // Again: nothing new.
    let second = p.json(&["export", "mlflow", "1", "--tracking-uri", &uri, "--json"]);
    assert_eq!(second["created"], 0, "{second}");
    assert_eq!(second["already"], settled + 1, "{second}");

    // Read back through MLflow's client.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mlflow/read_back.py");
    let o = std::process::Command::new(&py)
        .arg(script)
        .arg(&uri)
        .arg(first["experiment"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(
        runs.len(),
        settled + 1,
        "one run per settled trial, and the proposal"
    );
    for t in trials.iter().filter(|t| t["status"] != "queued") {
        let id = t["id"].to_string();
        let run = runs
            .iter()
            .find(|r| r["tags"]["reagent.trial"] == id.as_str())
            .unwrap_or_else(|| panic!("no run for trial {id}"));
        assert_eq!(run["tags"]["reagent.status"], t["status"], "{run}");
        assert_eq!(run["tags"]["reagent.phase"], t["phase"], "{run}");
        assert_eq!(run["tags"]["reagent.complete"], "true", "{run}");
        let want = if t["status"] == "succeeded" {
            "FINISHED"
        } else if t["status"] == "failed" {
            "FAILED"
        } else {
            "KILLED"
        };
        assert_eq!(run["status"], want, "{run}");
        for (knob, v) in t["assignments"].as_object().unwrap() {
            let got: f64 = run["params"][knob]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            match v.as_f64() {
                Some(x) => assert!((got - x).abs() <= 1e-9 * x.abs().max(1.0), "{knob}: {run}"),
                None => assert_eq!(run["params"][knob], *v, "{knob}: {run}"),
            }
        }
        assert_eq!(run["params"]["seed"], t["seed"].to_string(), "{run}");
        if let Some(v) = t["objective"].as_f64() {
            assert_eq!(run["metrics"]["valid_loss"].as_f64(), Some(v), "{run}");
            // The per-step curve: toy.sh reports steps 1 and 2.
            let steps: Vec<i64> = run["history"]["valid_loss"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_i64().unwrap())
                .collect();
            assert_eq!(steps, vec![1, 2], "{run}");
        }
    }
    let proposal = runs
        .iter()
        .find(|r| r["name"] == "proposal")
        .expect("a proposal run");
    assert_eq!(
        proposal["artifacts"],
        serde_json::json!(["proposal.html", "proposal.md"]),
        "{proposal}"
    );
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(
        proposal["metrics"]["effect"].as_f64(),
        r["effect"]["estimate"].as_f64(),
        "{proposal}"
    );

    // `[export]`: the driver exports as trials finish, from a detached
    // process; by the end everything is there and a manual export adds
    // nothing.
    let q = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 10")
            .replace("name = \"toy\"", "name = \"toy-auto\"")
    });
    std::fs::write(
        q.path(".reagent/config.toml"),
        format!("[export]\nmlflow = \"{uri}\"\n"),
    )
    .unwrap();
    let o = q.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let settled = q.json(&["trials", "1", "--json"]).as_array().unwrap().len();
    // Watch the server (not exporting ourselves) until every trial and the
    // proposal are there, complete.
    let complete = || -> usize {
        let exp = ureq::get(&format!(
            "{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=toy-auto%20%28reagent%20campaign%201%29"
        ))
        .call()
        .ok()
        .and_then(|r| r.into_body().read_to_string().ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let Some(id) = exp
            .as_ref()
            .and_then(|e| e["experiment"]["experiment_id"].as_str())
        else {
            return 0;
        };
        let body = serde_json::json!({"experiment_ids": [id], "max_results": 1000}).to_string();
        let text = ureq::post(&format!("{uri}/api/2.0/mlflow/runs/search"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        let runs: serde_json::Value = serde_json::from_str(&text).unwrap();
        runs["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == "reagent.complete" && t["value"] == "true")
            })
            .count()
    };
    let start = Instant::now();
    while complete() < settled + 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the automatic export never caught up ({} of {}): {}",
            complete(),
            settled + 1,
            std::fs::read_to_string(q.path(".reagent/export.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let again = q.json(&["export", "mlflow", "1", "--tracking-uri", &uri, "--json"]);
    assert_eq!(
        (again["created"].as_u64(), again["already"].as_u64()),
        (Some(0), Some(settled as u64 + 1)),
        "{again}"
    );
    let log = std::fs::read_to_string(q.path(".reagent/export.log")).unwrap();
    assert!(log.contains("campaign 1:"), "{log}");
}
