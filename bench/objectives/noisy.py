#!/usr/bin/env python3
"""A synthetic training command with a known optimum, for the benchmarks.

It stands in for a model: it takes the same knobs a Reagent campaign would
pass, computes a validation loss from a fixed formula plus seeded noise, and
reports it the way a real trainer does (JSON lines to ``$REAGENT_METRICS``).
It needs only the standard library and runs in well under 50 ms.

Usage::

    noisy.py --lr X --optimizer {sgd,adam,adagrad} --layers N \\
             --batch_size N --dropout X [--seed S] [--noise-free]
    noisy.py --optimum        # print the optimum and the baseline as JSON

Output: one line, appended to the file named by ``$REAGENT_METRICS`` (or
printed to stdout when it is unset)::

    {"step": 1, "valid_loss": v, "valid_loss_stderr": 0.003, "test_loss": t}

The knob space (what a campaign declares)::

    lr          log-float    [1e-4, 1]     baseline 0.3
    optimizer   categorical  sgd|adam|adagrad  baseline sgd
    layers      int          [0, 4]        baseline 0
    batch_size  int          [32, 2048]    baseline 256
    dropout     float        [0, 0.5]      baseline 0.0

The noise-free loss. With u = log10(lr), b = log2(batch_size / 512) and
L = layers, d = dropout::

    f = 0.30 + OFFSET[opt]
        + CURV[opt] * (u - log10(LR0[opt]) - 0.5 * log10(batch_size / 256))^2
        + 0.006 * b^2
        - 0.06 * (1 - ((L - 3) / 3)^2)
        + 0.5 * (d - 0.1 * max(0, L - 1))^2

    opt        OFFSET   LR0     CURV (per decade^2)
    sgd         0.00    0.1     0.04
    adagrad    -0.01    0.01    0.04
    adam       -0.02    0.001   0.05

The terms, and the interactions they create:

* learning rate: a parabola in log10(lr) whose best point depends on the
  optimizer (sgd 0.1, adagrad 0.01, adam 0.001 at batch 256) and moves with
  the batch size by the square-root scaling rule (lr* ~ sqrt(batch_size)).
  Switching sgd -> adam while keeping lr = 0.3 is much worse (+0.28);
  adam only pays off together with a ~300x smaller learning rate;
* batch size: a parabola in log2(batch_size) with its best at 512;
* depth: capacity gain 0.06 * (1 - ((L-3)/3)^2), i.e. 0, .033, .053, .060,
  .053 for L = 0..4, best at 3 layers;
* dropout: best at d*(L) = 0.1 * max(0, L - 1), i.e. 0 for L <= 1 (dropout
  only hurts there: +0.005 at 0.1, +0.125 at 0.5), 0.1, 0.2, 0.3 for
  L = 2, 3, 4. Without dropout deeper models overfit (+0.005, +0.02, +0.045
  for L = 2, 3, 4), so as a single change from the baseline layers=2 looks
  best, while layers=3 only wins together with dropout=0.2.

The global optimum (unique; every term is at its minimum)::

    optimizer=adam, lr=0.001*sqrt(2)=0.00141421356..., batch_size=512,
    layers=3, dropout=0.2                       f = 0.22

The best configurations with the other optimizers (same batch size, layers
and dropout, lr = LR0 * sqrt(2)) score 0.23 (adagrad) and 0.24 (sgd). The
baseline (lr=0.3, sgd, layers=0, batch_size=256, dropout=0) scores
0.30 + 0.04 * (log10 3)^2 + 0.006 = 0.31511..., 0.095 above the optimum.

Noise (deterministic: the same seed and configuration give the same output)::

    valid_loss = f + s_seed + e_valid
    test_loss  = f + s_seed + e_test

* s_seed ~ N(0, 0.002^2) depends on the seed only: a training run's luck
  (initialisation, data order) that shifts both metrics of a run and is the
  same for every configuration trained with that seed, so comparisons at
  one seed (Reagent's exploration trials all use seed 1) are not blurred by
  it, while replicates over seeds measure it;
* e_valid, e_test ~ N(0, 0.003^2), independent, depend on the seed and the
  exact configuration (values hashed as written on the command line):
  run-to-run variation that does not carry over between configurations.
  Selecting the minimum of many noisy valid_loss values therefore picks up
  a favourable e_valid that test_loss does not share (the winner's curse
  the holdout metric is there to reveal).

The sd of valid_loss across seeds at one configuration is
sqrt(0.002^2 + 0.003^2) = 0.0036; valid_loss_stderr reports the 0.003 of the
per-run term. ``--noise-free`` reports f itself for both metrics.

The formula is defined beyond the space (any lr > 0, batch_size >= 1,
layers >= 0, 0 <= dropout < 1) so that values outside it, if approved, still
give a loss; invalid values exit with status 2.
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys

# Per-optimizer constants: (loss offset, best lr at batch 256, curvature in
# loss per decade^2 of lr).
OPTIMIZERS = {
    "sgd": (0.00, 0.1, 0.04),
    "adagrad": (-0.01, 0.01, 0.04),
    "adam": (-0.02, 0.001, 0.05),
}

BASE_LOSS = 0.30
BATCH_BEST = 512  # best batch size
BATCH_REF = 256  # batch size at which LR0 is the best lr
BATCH_CURV = 0.006  # loss per doubling^2 away from BATCH_BEST
DEPTH_GAIN = 0.06  # loss removed at the best depth
DEPTH_BEST = 3
DROPOUT_CURV = 0.5
SEED_SD = 0.002  # per-seed shift, shared by every configuration and metric
RUN_SD = 0.003  # per-(seed, configuration) noise, independent per metric

BASELINE = {"lr": 0.3, "optimizer": "sgd", "layers": 0, "batch_size": 256, "dropout": 0.0}
OPTIMUM = {
    "lr": 0.001 * math.sqrt(2.0),
    "optimizer": "adam",
    "layers": 3,
    "batch_size": 512,
    "dropout": 0.2,
}
OPTIMUM_LOSS = 0.22


def best_dropout(layers):
    """The dropout rate that removes all overfitting at this depth."""
    return 0.1 * max(0, layers - 1)


def expected_loss(cfg):
    """The noise-free validation loss f of a configuration (a dict of knobs)."""
    offset, lr0, curv = OPTIMIZERS[cfg["optimizer"]]
    bs = cfg["batch_size"]
    lr_best = math.log10(lr0) + 0.5 * math.log10(bs / BATCH_REF)
    lr_term = curv * (math.log10(cfg["lr"]) - lr_best) ** 2
    batch_term = BATCH_CURV * math.log2(bs / BATCH_BEST) ** 2
    layers = cfg["layers"]
    depth_term = -DEPTH_GAIN * (1.0 - ((layers - DEPTH_BEST) / DEPTH_BEST) ** 2)
    dropout_term = DROPOUT_CURV * (cfg["dropout"] - best_dropout(layers)) ** 2
    return BASE_LOSS + offset + lr_term + batch_term + depth_term + dropout_term


def _rng(*parts):
    """A random generator seeded by a hash of the given strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def noisy_metrics(cfg, raw, seed):
    """(valid_loss, test_loss) with the seeded noise described above.

    `raw` holds the knob values as written on the command line: the
    per-run noise is keyed on them, so any change of value changes it.
    """
    f = expected_loss(cfg)
    shift = _rng("seed", str(seed)).gauss(0.0, SEED_SD)
    key = "\x1e".join(f"{k}={raw[k]}" for k in sorted(raw))
    run = _rng("run", str(seed), key)
    e_valid = run.gauss(0.0, RUN_SD)
    e_test = run.gauss(0.0, RUN_SD)
    return f + shift + e_valid, f + shift + e_test


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lr", type=str)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--layers", type=str)
    p.add_argument("--batch_size", type=str)
    p.add_argument("--dropout", type=str)
    p.add_argument("--seed", type=str, default="1")
    p.add_argument("--noise-free", action="store_true", help="report the noise-free loss")
    p.add_argument("--optimum", action="store_true", help="print the optimum as JSON and exit")
    return p.parse_args(argv)


def _die(msg):
    print(f"noisy.py: {msg}", file=sys.stderr)
    sys.exit(2)


def _config(args):
    """The typed configuration, or exit 2 with a message."""
    missing = [k for k in BASELINE if getattr(args, k) is None]
    if missing:
        _die(f"missing --{', --'.join(missing)}")
    try:
        cfg = {
            "lr": float(args.lr),
            "optimizer": args.optimizer,
            "layers": int(args.layers),
            "batch_size": int(args.batch_size),
            "dropout": float(args.dropout),
        }
        int(args.seed)
    except ValueError as e:
        _die(str(e))
    if not (cfg["lr"] > 0 and math.isfinite(cfg["lr"])):
        _die(f"lr must be > 0, got {args.lr}")
    if cfg["batch_size"] < 1:
        _die(f"batch_size must be >= 1, got {args.batch_size}")
    if cfg["layers"] < 0:
        _die(f"layers must be >= 0, got {args.layers}")
    if not 0.0 <= cfg["dropout"] < 1.0:
        _die(f"dropout must be in [0, 1), got {args.dropout}")
    return cfg


def main(argv=None):
    args = _parse_args(argv)
    if args.optimum:
        print(json.dumps({
            "config": OPTIMUM,
            "valid_loss": expected_loss(OPTIMUM),
            "baseline": {"config": BASELINE, "valid_loss": expected_loss(BASELINE)},
        }))
        return
    cfg = _config(args)
    if args.noise_free:
        valid = test = expected_loss(cfg)
    else:
        raw = {k: getattr(args, k) for k in BASELINE}
        valid, test = noisy_metrics(cfg, raw, args.seed)
    line = json.dumps({
        "step": 1,
        "valid_loss": round(valid, 8),
        "valid_loss_stderr": 0.0 if args.noise_free else RUN_SD,
        "test_loss": round(test, 8),
    })
    path = os.environ.get("REAGENT_METRICS")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")
    else:
        print(line)


if __name__ == "__main__":
    main()
