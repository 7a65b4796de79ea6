#!/usr/bin/env python3
"""Run an Optuna search over a training command, the way Reagent runs one.

    optuna_runner.py --space SPACE.json --command-json CMD.json --trials N
                     --sampler {tpe,random} --seed S --workdir DIR
                     --out RESULT.json [--parallel 1] [--metric valid_loss]
                     [--holdout test_loss] [--direction minimize] ...

The comparison baseline for Reagent: the same knob space, the same command
and the same way of reporting metrics, with Optuna (ask/tell) choosing the
configurations. Each trial:

1. asks the study for a configuration (TPE, or Optuna's RandomSampler for
   ``--sampler random``, both seeded with ``--seed``, so the two go through
   the same loop);
2. renders the argv template of CMD.json, whose ``{knob}``, ``{seed}`` and
   ``{trial}`` placeholders follow Reagent's ``[job] command`` (``{{`` and
   ``}}`` are literal braces; values are written as Reagent writes them:
   floats in the shortest exact decimal form without exponent, ``1`` for
   1.0, flags as ``true``/``false``);
3. runs it as a subprocess (no shell) in its own session, in ``--cwd``
   (default: CMD.json's folder, as a campaign's workdir defaults to the
   campaign file's folder; a relative program path is taken from there),
   with stdin from /dev/null, stdout and stderr to files in a fresh trial
   folder ``DIR/trial-NNNN`` (replaced if it exists), and the environment
   Reagent gives a job: ``REAGENT_METRICS`` (a fresh ``metrics.jsonl``
   there), ``REAGENT_PARAMS`` (``params.json``, written there),
   ``REAGENT_JOB_DIR``, ``REAGENT_SEED``, ``REAGENT_TRIAL`` and
   ``REAGENT_KNOB_<NAME>``;
4. reads the metrics file as Reagent does (JSON lines; a metric's value is
   its last value in the file; unreadable lines are skipped; a non-finite
   final value counts as missing) and tells the study the objective
   (``--metric``), or FAIL when the command exited non-zero, was killed by
   ``--time-limit``, could not be started, or reported no finite objective.
   The holdout metric (``--holdout``) is recorded, never told.

Every trial runs with the same seed (``{seed}`` = ``--trial-seed``, default
1), as all of Reagent's exploration trials do.

SPACE.json is a list of knobs in the kinds Reagent's ``[knobs]`` has::

    [{"name": "lr", "kind": "log-float", "low": 1e-4, "high": 1.0, "baseline": 0.3},
     {"name": "optimizer", "kind": "categorical", "choices": ["sgd", "adam"], "baseline": "sgd"},
     {"name": "layers", "kind": "int", "low": 0, "high": 4, "baseline": 0},
     {"name": "dropout", "kind": "float", "low": 0.0, "high": 0.5, "baseline": 0.0},
     {"name": "use_bias", "kind": "flag", "baseline": true}]

float -> suggest_float, log-float -> suggest_float(log=True), int ->
suggest_int (uniform, as Reagent's int has no log scale), categorical ->
suggest_categorical, flag -> suggest_categorical([false, true]). The
baseline is only used with ``--enqueue-baseline`` (the first trial is then
the baseline configuration).

With ``--parallel P`` up to P trials run at once (TPE then uses
``constant_liar``); trials are recorded, and best_so_far counted, in the
order they finish.

RESULT.json::

    {"method": "optuna-tpe" | "optuna-tpe-mv" | "random", "seed": S,
     "trials": [{"number", "params", "state", "objective", "holdout",
                 "wall_secs", "exit_code", "error", "argv"}, ...],
     "best": {"number", "params", "objective", "holdout"} | null,
     "best_so_far": [best objective after the i-th finished trial, or null],
     "wall_secs", "cpu_secs_self", "cpu_secs_children", ...}

Times: ``wall_secs`` runs from this script's first line (after the
interpreter's start-up) to the end; ``cpu_secs_self`` is
getrusage(RUSAGE_SELF) user+sys of this Python process at the end (all its
threads: interpreter start-up, importing Optuna, the samplers, spawning and
reaping, reading metrics; not the children); ``cpu_secs_children`` is
getrusage(RUSAGE_CHILDREN), the trial commands and their waited-for
descendants. ``*_startup`` fields are the same clocks when the first trial
is asked, so ``cpu_secs_self - cpu_secs_self_startup`` is the loop's cost.
A trial's ``wall_secs`` runs from spawning the command to reaping it.
"""

import time

_T0 = time.perf_counter()  # before the heavy imports

import argparse
import concurrent.futures
import decimal
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import warnings

import optuna
from optuna.trial import TrialState

KINDS = ("float", "log-float", "int", "categorical", "flag")
RESERVED = ("seed", "trial")


class SetupError(Exception):
    """A bad space, command template or argument: reported, exit status 2."""


# --- the knob space ---------------------------------------------------------


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_space(path):
    """The knobs of SPACE.json, checked as Reagent checks `[knobs]`."""
    with open(path) as f:
        knobs = json.load(f)
    if not isinstance(knobs, list) or not knobs:
        raise SetupError(f"{path}: expected a non-empty JSON list of knobs")
    seen = set()
    for k in knobs:
        if not isinstance(k, dict):
            raise SetupError(f"{path}: a knob must be an object, got {k!r}")
        name, kind = k.get("name"), k.get("kind")
        where = f"{path}: knob {name!r}"
        if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
            raise SetupError(f"{where}: the name must be letters, digits and _, not seed or trial")
        if name in seen:
            raise SetupError(f"{where}: duplicate name")
        seen.add(name)
        if kind not in KINDS:
            raise SetupError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if "baseline" not in k:
            raise SetupError(f"{where}: baseline is required")
        b = k["baseline"]
        if kind in ("float", "log-float", "int"):
            lo, hi = k.get("low"), k.get("high")
            if not (_is_number(lo) and _is_number(hi) and lo < hi):
                raise SetupError(f"{where}: needs numbers low < high")
            if kind == "log-float" and lo <= 0:
                raise SetupError(f"{where}: log-float needs low > 0")
            if kind == "int" and not all(isinstance(v, int) for v in (lo, hi, b)):
                raise SetupError(f"{where}: int needs integer low, high and baseline")
            if not (_is_number(b) and lo <= b <= hi):
                raise SetupError(f"{where}: baseline must be in [low, high]")
        elif kind == "categorical":
            choices = k.get("choices")
            if (not isinstance(choices, list) or len(choices) < 2
                    or not all(isinstance(c, str) for c in choices)
                    or len(set(choices)) != len(choices)):
                raise SetupError(f"{where}: needs at least two distinct string choices")
            if b not in choices:
                raise SetupError(f"{where}: baseline must be one of the choices")
        elif not isinstance(b, bool):
            raise SetupError(f"{where}: a flag's baseline must be true or false")
    return knobs


def suggest(trial, knob):
    """Ask an Optuna trial for this knob's value."""
    name, kind = knob["name"], knob["kind"]
    if kind == "float":
        return trial.suggest_float(name, knob["low"], knob["high"])
    if kind == "log-float":
        return trial.suggest_float(name, knob["low"], knob["high"], log=True)
    if kind == "int":
        return trial.suggest_int(name, knob["low"], knob["high"])
    if kind == "categorical":
        return trial.suggest_categorical(name, knob["choices"])
    return trial.suggest_categorical(name, [False, True])


def baseline_params(knobs):
    return {k["name"]: k["baseline"] for k in knobs}


# --- the command template ---------------------------------------------------


def render_value(value):
    """A value as Reagent writes it into a command argument."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        s = repr(value)  # the shortest form that reads back exactly
        if "e" in s or "E" in s:
            s = format(decimal.Decimal(s), "f")
        if s.endswith(".0"):
            s = s[:-2]
        return s
    return str(value)


def parse_template(arg):
    """Split one argument into literal strings and ("name",) placeholders."""
    parts, text, i = [], [], 0
    while i < len(arg):
        c = arg[i]
        if c == "{" and arg.startswith("{{", i):
            text.append("{")
            i += 2
        elif c == "}" and arg.startswith("}}", i):
            text.append("}")
            i += 2
        elif c == "{":
            end = arg.find("}", i + 1)
            if end < 0:
                raise SetupError(f"unclosed {{ in command argument {arg!r}")
            if text:
                parts.append("".join(text))
                text = []
            parts.append((arg[i + 1:end],))
            i = end + 1
        elif c == "}":
            raise SetupError(f"lone }} in command argument {arg!r}")
        else:
            text.append(c)
            i += 1
    if text:
        parts.append("".join(text))
    return parts


def load_command(argv, names, path="command"):
    """The argv template (CMD.json's list), parsed; placeholders must name a
    knob, seed or trial."""
    if (not isinstance(argv, list) or not argv
            or not all(isinstance(a, str) for a in argv) or not argv[0].strip()):
        raise SetupError(f"{path}: expected a non-empty JSON list of strings")
    return compile_command(argv, names)


def compile_command(argv, names):
    template = [parse_template(a) for a in argv]
    allowed = set(names) | set(RESERVED)
    for parts in template:
        for p in parts:
            if isinstance(p, tuple) and p[0] not in allowed:
                raise SetupError(f"command placeholder {{{p[0]}}} names no knob, seed or trial")
    return template


def render_command(template, values):
    """The argv for one trial: `values` maps knob names, seed and trial."""
    return ["".join(p if isinstance(p, str) else render_value(values[p[0]]) for p in parts)
            for parts in template]


# --- running one trial ------------------------------------------------------


def read_metrics(path):
    """Final value of every metric in a JSON-lines metrics file, as Reagent
    reads it: numeric top-level fields except step and epoch, last value
    wins, unreadable lines skipped, non-finite finals dropped."""
    final = {}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return final
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for k, v in obj.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool):
                final[k] = float(v)
    return {k: v for k, v in final.items() if math.isfinite(v)}


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_job(argv, job_dir, env, cwd=None, time_limit=None):
    """Run one command to completion in `job_dir`.

    Returns (exit_code or None, error or None, wall seconds). Blocks in
    waitpid (no polling); a time limit is a timer thread that kills the
    process group. Whatever is left of the group when the command exits is
    killed, as Reagent's supervisor does.
    """
    t = time.perf_counter()
    with open(os.path.join(job_dir, "stdout.log"), "wb") as out, \
            open(os.path.join(job_dir, "stderr.log"), "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            return None, f"cannot start: {e}", time.perf_counter() - t
    timed_out = threading.Event()
    timer = None
    if time_limit:
        def expire():
            timed_out.set()
            _kill_group(proc.pid)
        timer = threading.Timer(time_limit, expire)
        timer.daemon = True
        timer.start()
    code = proc.wait()
    wall = time.perf_counter() - t
    if timer:
        timer.cancel()
    _kill_group(proc.pid)
    if timed_out.is_set():
        return code, f"time limit ({time_limit:g} s) reached", wall
    if code != 0:
        return code, f"exit status {code}", wall
    return code, None, wall


def run_trial(number, params, template, workdir, metric, holdout, trial_seed,
              cwd=None, time_limit=None, base_env=None):
    """Run trial `number` (0-based) with `params`; return its record (the
    objective is None when the trial failed)."""
    job_dir = os.path.join(workdir, f"trial-{number + 1:04d}")
    if os.path.lexists(job_dir):
        shutil.rmtree(job_dir)
    os.makedirs(job_dir)
    metrics_path = os.path.join(job_dir, "metrics.jsonl")
    params_path = os.path.join(job_dir, "params.json")
    values = dict(params, seed=trial_seed, trial=number + 1)
    with open(params_path, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
    env = dict(os.environ if base_env is None else base_env)
    env.update({
        "REAGENT_METRICS": metrics_path,
        "REAGENT_PARAMS": params_path,
        "REAGENT_JOB_DIR": job_dir,
        "REAGENT_SEED": str(trial_seed),
        "REAGENT_TRIAL": str(number + 1),
    })
    for name, v in params.items():
        env["REAGENT_KNOB_" + name.upper()] = render_value(v)
    argv = render_command(template, values)
    code, error, wall = run_job(argv, job_dir, env, cwd, time_limit)
    found = read_metrics(metrics_path)
    objective = found.get(metric)
    if error is None and objective is None:
        error = f"no finite {metric} in {metrics_path}"
    if error is not None:
        objective = None
    return {
        "number": number,
        "params": params,
        "state": "COMPLETE" if error is None else "FAIL",
        "objective": objective,
        "holdout": found.get(holdout) if holdout else None,
        "wall_secs": wall,
        "exit_code": code,
        "error": error,
        "argv": argv,
    }


# --- the study --------------------------------------------------------------


def make_sampler(kind, seed, multivariate=False, parallel=1, n_startup_trials=10):
    """TPE (multivariate and constant_liar optional) or random, seeded.

    TPE's first `n_startup_trials` (Optuna's default, 10) come from a random
    sampler seeded like RandomSampler(seed): up to there TPE and random
    search with the same seed propose the same configurations."""
    # multivariate and constant_liar are experimental in Optuna 4; the README says
    # so, rather than a warning on every run
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=multivariate,
                                      constant_liar=parallel > 1,
                                      n_startup_trials=n_startup_trials)


def method_name(kind, multivariate=False):
    if kind == "random":
        return "random"
    return "optuna-tpe-mv" if multivariate else "optuna-tpe"


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env():
    """The environment variables that set numpy's thread pools (numpy's
    OpenBLAS starts a thread per core when Optuna imports it, which costs
    about 0.1 s of CPU at start-up unless OPENBLAS_NUM_THREADS=1)."""
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


def cpu_clocks():
    """(self user+sys, children user+sys) in seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, ch.ru_utime + ch.ru_stime


def run_study(study, knobs, template, n_trials, workdir, metric, holdout=None,
              direction="minimize", trial_seed=1, parallel=1, cwd=None,
              time_limit=None, on_trial=None):
    """The ask/run/tell loop. Returns the finished trials' records, in the
    order they finished, and best_so_far."""
    os.makedirs(workdir, exist_ok=True)
    better = (lambda a, b: a < b) if direction == "minimize" else (lambda a, b: a > b)
    base_env = dict(os.environ)
    records, best_so_far, best = [], [], None
    running = {}
    launched = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        while launched < n_trials or running:
            while launched < n_trials and len(running) < parallel:
                trial = study.ask()
                params = {k["name"]: suggest(trial, k) for k in knobs}
                fut = pool.submit(run_trial, trial.number, params, template, workdir,
                                  metric, holdout, trial_seed, cwd, time_limit, base_env)
                running[fut] = trial
                launched += 1
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: running[f].number):
                trial = running.pop(fut)
                rec = fut.result()
                if rec["objective"] is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, rec["objective"])
                    if best is None or better(rec["objective"], best):
                        best = rec["objective"]
                records.append(rec)
                best_so_far.append(best)
                if on_trial:
                    on_trial(rec, best)
    return records, best_so_far


def best_record(records, direction="minimize"):
    """The best finished trial (the earliest among equals), or None."""
    best = None
    for r in sorted(records, key=lambda r: r["number"]):
        v = r["objective"]
        if v is not None and (best is None or (v < best["objective"] if direction == "minimize"
                                               else v > best["objective"])):
            best = r
    return None if best is None else {k: best[k] for k in ("number", "params", "objective", "holdout")}


def write_json(path, obj):
    """Write strict JSON atomically."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def _parse_args(argv):
    p = argparse.ArgumentParser(description="Optuna (ask/tell) over a training command, run like Reagent's trials.")
    p.add_argument("--space", required=True, help="knob space, a JSON list")
    p.add_argument("--command-json", required=True, help="argv template, a JSON list of strings")
    p.add_argument("--trials", type=int, required=True, help="trials to run (failed ones count)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--workdir", required=True, help="where the trial folders go")
    p.add_argument("--out", required=True, help="result JSON file")
    p.add_argument("--parallel", type=int, default=1, help="trials in flight at once")
    p.add_argument("--metric", default="valid_loss", help="objective metric")
    p.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    p.add_argument("--holdout", default="test_loss", help="holdout metric, recorded only ('' for none)")
    p.add_argument("--trial-seed", type=int, default=1, help="the {seed} of every trial")
    p.add_argument("--cwd", default=None,
                   help="the commands' working directory (default: CMD.json's folder, as a "
                        "campaign's workdir defaults to the campaign file's folder)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per trial, then killed (FAIL)")
    p.add_argument("--multivariate", action="store_true", help="TPE with multivariate=True")
    p.add_argument("--startup-trials", type=int, default=10,
                   help="TPE's random start-up trials (Optuna's default: 10)")
    p.add_argument("--enqueue-baseline", action="store_true", help="make the first trial the baseline")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: in memory)")
    p.add_argument("--verbose", action="store_true", help="a line per trial on stderr")
    a = p.parse_args(argv)
    if a.trials < 1 or a.parallel < 1:
        p.error("--trials and --parallel must be >= 1")
    if a.startup_trials < 0:
        p.error("--startup-trials must be >= 0")
    if a.time_limit is not None and a.time_limit <= 0:
        p.error("--time-limit must be > 0")
    return a


def main(argv=None):
    args = _parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        knobs = load_space(args.space)
        with open(args.command_json) as f:
            command = json.load(f)
        template = load_command(command, [k["name"] for k in knobs], args.command_json)
    except (SetupError, OSError, ValueError) as e:
        print(f"optuna_runner: {e}", file=sys.stderr)
        return 2
    cwd = os.path.abspath(args.cwd or os.path.dirname(os.path.abspath(args.command_json)))
    study = optuna.create_study(
        direction=args.direction,
        sampler=make_sampler(args.sampler, args.seed, args.multivariate, args.parallel,
                             args.startup_trials),
        storage=args.storage,
    )
    if args.enqueue_baseline:
        study.enqueue_trial(baseline_params(knobs))

    def report(rec, best):
        val = "FAIL " + rec["error"] if rec["objective"] is None else f"{rec['objective']:.6g}"
        print(f"trial {rec['number'] + 1}: {val}  best {best}  {rec['wall_secs']:.3f}s",
              file=sys.stderr)

    wall_start = time.perf_counter() - _T0
    cpu_self_start, cpu_children_start = cpu_clocks()
    records, best_so_far = run_study(
        study, knobs, template, args.trials, os.path.abspath(args.workdir), args.metric,
        args.holdout or None, args.direction, args.trial_seed, args.parallel,
        cwd, args.time_limit, report if args.verbose else None)
    cpu_self, cpu_children = cpu_clocks()
    wall = time.perf_counter() - _T0

    best = best_record(records, args.direction)
    result = {
        "method": method_name(args.sampler, args.multivariate),
        "seed": args.seed,
        "trials": records,
        "best": best,
        "best_so_far": best_so_far,
        "wall_secs": wall,
        "cpu_secs_self": cpu_self,
        "cpu_secs_children": cpu_children,
        "wall_secs_startup": wall_start,
        "cpu_secs_self_startup": cpu_self_start,
        "cpu_secs_children_startup": cpu_children_start,
        "n_trials": len(records),
        "n_failed": sum(r["objective"] is None for r in records),
        "metric": args.metric,
        "direction": args.direction,
        "holdout": args.holdout or None,
        "trial_seed": args.trial_seed,
        "parallel": args.parallel,
        "enqueue_baseline": args.enqueue_baseline,
        "multivariate": args.multivariate,
        "startup_trials": args.startup_trials if args.sampler == "tpe" else None,
        "space": knobs,
        "command": command,
        "cwd": cwd,
        "optuna_version": optuna.__version__,
        "python_version": platform.python_version(),
        "thread_env": thread_env(),
    }
    write_json(args.out, result)
    summary = "none" if best is None else f"{best['objective']:.6g} (holdout {best['holdout']})"
    print(f"{result['method']} seed {args.seed}: {len(records)} trials, "
          f"{result['n_failed']} failed, best {summary}; wall {wall:.2f}s, "
          f"cpu self {cpu_self:.2f}s, children {cpu_children:.2f}s -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
