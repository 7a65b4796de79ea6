#!/usr/bin/env python3
"""Orchestration overhead of an Optuna ask/tell loop over subprocesses.

    optuna_overhead.py [--trials 2000] [--sampler tpe] [--seed 0]
                       [--command-json CMD.json | --true]
                       [--workdir DIR] [--out RESULT.json]

The baseline for Reagent's host-cost bench (``cargo bench -p reagent
--bench campaign``): the same kind of no-op trial, driven by Optuna instead.
One float knob ``x`` in [0, 1]; N trials run one after another through the
exact loop of optuna_runner.py (ask, render the argv, fresh trial folder
with params.json and an empty metrics path, spawn in a new session, reap,
kill the leftover group, read the metrics file, tell). The default trial is

    sh -c 'echo "{\\"loss\\": $REAGENT_KNOB_X}" > "$REAGENT_METRICS"'

which reports the knob as the objective ``loss`` (so TPE sees a varying
objective and does its usual work). ``--true`` runs /bin/true instead,
which reports nothing, so every trial is told FAIL; ``--command-json``
runs any argv template (placeholders ``{x}``, ``{seed}``, ``{trial}``).

What is counted, all for one Python process (written to stdout as JSON,
and to ``--out``):

* ``wall_secs``: from this script's first line (after the interpreter's
  start-up) to after the last tell;
* ``cpu_secs_self``: getrusage(RUSAGE_SELF) user+sys of this process at
  the end, all threads: interpreter start-up, importing Optuna, creating
  the study, the samplers, forking/spawning and reaping the children,
  writing params.json, reading metrics. Not the children;
* ``cpu_secs_children``: getrusage(RUSAGE_CHILDREN): the no-op commands
  (``sh`` and ``echo``), and nothing of the orchestrator;
* ``per_trial_wall_ms`` = wall_secs / N, ``per_trial_cpu_ms_self`` =
  cpu_secs_self / N, ``per_trial_cpu_ms_children`` = cpu_secs_children / N
  (start-up amortised over the N trials);
* the same with ``_loop``: only the trial loop (from the first ask to the
  last tell), start-up excluded; ``*_startup`` is what came before it.

Importing Optuna imports numpy, whose OpenBLAS starts a thread per core;
on 2 cores that is about 0.13 s of the start-up CPU (``cpu_secs_self`` and
its per-trial figure), which ``OPENBLAS_NUM_THREADS=1`` removes (the
``_loop`` figures do not change). ``thread_env`` in the output records
these variables.

Not counted: the interpreter's start-up before the first line in the wall
times (about 15 ms; it is in the CPU times), tearing the interpreter down at
exit, and deleting the temporary trial folders (done after measuring).
Optuna's storage is in memory (nothing is made durable), unlike Reagent's
store.
"""

import time

_T0 = time.perf_counter()  # before the heavy imports

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile

import optuna

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import optuna_runner as runner  # noqa: E402

DEFAULT_COMMAND = ["sh", "-c", 'echo "{{\\"loss\\": $REAGENT_KNOB_X}}" > "$REAGENT_METRICS"']
KNOBS = [{"name": "x", "kind": "float", "low": 0.0, "high": 1.0, "baseline": 0.5}]


def _parse_args(argv):
    p = argparse.ArgumentParser(description="Optuna ask/tell loop over no-op subprocesses.")
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    cmd = p.add_mutually_exclusive_group()
    cmd.add_argument("--command-json", help="argv template to run instead of the default no-op")
    cmd.add_argument("--true", action="store_true", help="run /bin/true (no metric: every trial FAILs)")
    p.add_argument("--metric", default="loss")
    p.add_argument("--workdir", help="keep the trial folders here (default: a temporary folder, removed)")
    p.add_argument("--out", help="also write the result JSON here")
    a = p.parse_args(argv)
    if a.trials < 1:
        p.error("--trials must be >= 1")
    return a


def main(argv=None):
    args = _parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.true:
        command = ["/bin/true"]
    elif args.command_json:
        with open(args.command_json) as f:
            command = json.load(f)
    else:
        command = DEFAULT_COMMAND
    try:
        template = runner.load_command(command, [k["name"] for k in KNOBS], args.command_json or "command")
    except runner.SetupError as e:
        print(f"optuna_overhead: {e}", file=sys.stderr)
        return 2
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="optuna-overhead-")

    study = optuna.create_study(direction="minimize", sampler=runner.make_sampler(args.sampler, args.seed))
    wall_start = time.perf_counter() - _T0
    cpu_self_start, cpu_children_start = runner.cpu_clocks()
    records, _ = runner.run_study(study, KNOBS, template, args.trials, workdir, args.metric,
                                  holdout=None, trial_seed=1, parallel=1, cwd=os.getcwd())
    cpu_self, cpu_children = runner.cpu_clocks()
    wall = time.perf_counter() - _T0
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)

    n = len(records)
    loop_wall = wall - wall_start
    loop_self = cpu_self - cpu_self_start
    loop_children = cpu_children - cpu_children_start
    result = {
        "trials": n,
        "wall_secs": wall,
        "cpu_secs_self": cpu_self,
        "cpu_secs_children": cpu_children,
        "per_trial_wall_ms": 1000 * wall / n,
        "per_trial_cpu_ms_self": 1000 * cpu_self / n,
        "per_trial_cpu_ms_children": 1000 * cpu_children / n,
        "wall_secs_startup": wall_start,
        "cpu_secs_self_startup": cpu_self_start,
        "per_trial_wall_ms_loop": 1000 * loop_wall / n,
        "per_trial_cpu_ms_self_loop": 1000 * loop_self / n,
        "per_trial_cpu_ms_children_loop": 1000 * loop_children / n,
        "failed": sum(r["objective"] is None for r in records),
        "sampler": args.sampler,
        "command": command,
        "optuna_version": optuna.__version__,
        "python_version": platform.python_version(),
        "thread_env": runner.thread_env(),
    }
    if args.out:
        runner.write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
