#!/usr/bin/env python3
"""Optuna's samplers for `reagent strategy bench`, asked and told over stdio.

The bench (host/src/lab/others.rs) starts one of these per sampler and
sends one JSON object a line; each gets one JSON line back:

    {"op": "study", "sampler": "tpe"|"random", "seed": S,
     "space": [{"name", "kind": "float"|"log-float"|"int"|"categorical"|"flag",
                "low", "high", "choices"}, ...],
     "baseline": {knob: value}}                    -> {"ok": true}
    {"op": "ask"}                                  -> {"params": {knob: value}}
    {"op": "tell", "value": loss or null (failed)} -> {"ok": true}

A study minimises; its first trial is the baseline (enqueued), as in
Reagent's campaigns. Errors come back as {"error": "..."}.
"""
import json
import sys

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState


def distributions(space):
    out = {}
    for k in space:
        kind = k["kind"]
        if kind == "float":
            out[k["name"]] = FloatDistribution(k["low"], k["high"])
        elif kind == "log-float":
            out[k["name"]] = FloatDistribution(k["low"], k["high"], log=True)
        elif kind == "int":
            out[k["name"]] = IntDistribution(k["low"], k["high"])
        elif kind == "categorical":
            out[k["name"]] = CategoricalDistribution(k["choices"])
        elif kind == "flag":
            out[k["name"]] = CategoricalDistribution([False, True])
        else:
            raise ValueError(f"unknown knob kind {kind!r}")
    return out


def main():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = dists = trial = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "study":
                if msg["sampler"] == "tpe":
                    sampler = optuna.samplers.TPESampler(seed=msg["seed"])
                elif msg["sampler"] == "random":
                    sampler = optuna.samplers.RandomSampler(seed=msg["seed"])
                else:
                    raise ValueError(f"unknown sampler {msg['sampler']!r}")
                study = optuna.create_study(direction="minimize", sampler=sampler)
                dists = distributions(msg["space"])
                study.enqueue_trial(msg["baseline"])
                answer = {"ok": True}
            elif op == "ask":
                trial = study.ask(dists)
                answer = {"params": trial.params}
            elif op == "tell":
                if msg["value"] is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, msg["value"])
                answer = {"ok": True}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:  # the bench prints it with the task and seed
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
