"""Reads an exported campaign back through MLflow's own client (run by
tests/all/mlflow.rs): every run of the experiment with its params, final
metrics, metric histories, reagent.* tags and artifacts, as JSON."""

import json
import sys

from mlflow.tracking import MlflowClient


def main():
    uri, name = sys.argv[1], sys.argv[2]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    out = []
    for r in runs:
        history = {
            k: [[m.step, m.value] for m in client.get_metric_history(r.info.run_id, k)]
            for k in r.data.metrics
        }
        out.append({
            "name": r.info.run_name,
            "status": r.info.status,
            "params": r.data.params,
            "metrics": r.data.metrics,
            "history": history,
            "tags": {k: v for k, v in r.data.tags.items() if k.startswith("reagent.")},
            "artifacts": sorted(a.path for a in client.list_artifacts(r.info.run_id)),
        })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
