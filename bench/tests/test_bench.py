"""Quick checks of the benchmark scripts (a second or so; needs the venv).

    target/python/venv/bin/python -m unittest discover -s bench/tests -v
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "objectives"))

import noisy  # noqa: E402
import optuna_runner as runner  # noqa: E402

NOISY = os.path.join(BENCH, "objectives", "noisy.py")


class NoisyObjective(unittest.TestCase):
    def test_optimum_and_baseline(self):
        self.assertAlmostEqual(noisy.expected_loss(noisy.OPTIMUM), noisy.OPTIMUM_LOSS, places=12)
        self.assertAlmostEqual(noisy.expected_loss(noisy.BASELINE),
                               0.306 + 0.04 * math.log10(3) ** 2, places=12)

    def test_optimum_beats_its_neighbours(self):
        best = noisy.expected_loss(noisy.OPTIMUM)
        moves = [("lr", noisy.OPTIMUM["lr"] * 1.05), ("lr", noisy.OPTIMUM["lr"] / 1.05),
                 ("layers", 2), ("layers", 4), ("batch_size", 511), ("batch_size", 513),
                 ("dropout", 0.19), ("dropout", 0.21), ("optimizer", "sgd"),
                 ("optimizer", "adagrad")]
        for knob, value in moves:
            cfg = dict(noisy.OPTIMUM, **{knob: value})
            self.assertGreater(noisy.expected_loss(cfg), best, (knob, value))

    def test_grid_never_beats_the_optimum(self):
        best = noisy.expected_loss(noisy.OPTIMUM)
        for opt in noisy.OPTIMIZERS:
            for layers in range(5):
                for bs in (32, 128, 256, 400, 512, 700, 2048):
                    for d in (0.0, 0.1, 0.2, 0.3, 0.5):
                        for e in range(-16, 1):
                            cfg = dict(lr=10 ** (e / 4), optimizer=opt, layers=layers,
                                       batch_size=bs, dropout=d)
                            self.assertGreaterEqual(noisy.expected_loss(cfg), best - 1e-12)

    def _run(self, *args, env=None):
        out = subprocess.run([sys.executable, NOISY, *args], capture_output=True, text=True,
                             env=env, check=False)
        return out

    def test_cli_is_deterministic_and_seeded(self):
        args = ["--lr", "0.3", "--optimizer", "sgd", "--layers", "0", "--batch_size", "256",
                "--dropout", "0"]
        a = json.loads(self._run(*args, "--seed", "1").stdout)
        b = json.loads(self._run(*args, "--seed", "1").stdout)
        c = json.loads(self._run(*args, "--seed", "2").stdout)
        self.assertEqual(a, b)
        self.assertNotEqual(a["valid_loss"], c["valid_loss"])
        self.assertLess(abs(a["valid_loss"] - noisy.expected_loss(noisy.BASELINE)), 0.02)
        self.assertEqual(sorted(a), ["step", "test_loss", "valid_loss", "valid_loss_stderr"])

    def test_cli_writes_to_reagent_metrics(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.jsonl")
            env = dict(os.environ, REAGENT_METRICS=path)
            r = self._run("--lr", "0.001", "--optimizer", "adam", "--layers", "3",
                          "--batch_size", "512", "--dropout", "0.2", "--noise-free", env=env)
            self.assertEqual(r.stdout, "")
            with open(path) as f:
                line = json.loads(f.read())
            self.assertGreater(line["valid_loss"], noisy.OPTIMUM_LOSS)

    def test_cli_optimum_and_bad_input(self):
        o = json.loads(self._run("--optimum").stdout)
        self.assertEqual(o["config"]["optimizer"], "adam")
        self.assertAlmostEqual(o["valid_loss"], 0.22)
        r = self._run("--lr", "0", "--optimizer", "sgd", "--layers", "0", "--batch_size", "256",
                      "--dropout", "0")
        self.assertEqual(r.returncode, 2)


class Runner(unittest.TestCase):
    def test_render_value_like_reagent(self):
        cases = [(0.3, "0.3"), (1.0, "1"), (1e-05, "0.00001"), (0.0001, "0.0001"),
                 (1e16, "10000000000000000"), (7, "7"), (True, "true"), (False, "false"),
                 ("adam", "adam")]
        for value, text in cases:
            self.assertEqual(runner.render_value(value), text)

    def test_template(self):
        t = runner.load_command(["sh", "--lr={lr}", "{{x}}", "t{trial}s{seed}"], ["lr"])
        self.assertEqual(runner.render_command(t, {"lr": 0.5, "trial": 3, "seed": 1}),
                         ["sh", "--lr=0.5", "{x}", "t3s1"])
        for bad in (["p", "{nope}"], ["p", "{lr"], ["p", "lr}"], []):
            with self.assertRaises(runner.SetupError):
                runner.load_command(bad, ["lr"])

    def test_read_metrics_like_reagent(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.jsonl")
            with open(path, "w") as f:
                f.write('{"step": 1, "loss": 2, "acc": 0.5}\nnot json\n[1]\n'
                        '{"loss": 1.5, "flag": true, "name": "x"}\n{"acc": NaN}')
            self.assertEqual(runner.read_metrics(path), {"loss": 1.5})
            self.assertEqual(runner.read_metrics(os.path.join(d, "missing")), {})

    def test_space_checks(self):
        good = [{"name": "lr", "kind": "log-float", "low": 1e-4, "high": 1.0, "baseline": 0.3}]
        bad = [
            [{"name": "lr", "kind": "log-float", "low": 0, "high": 1.0, "baseline": 0.3}],
            [{"name": "n", "kind": "int", "low": 0, "high": 4, "baseline": 1.5}],
            [{"name": "o", "kind": "categorical", "choices": ["a"], "baseline": "a"}],
            [{"name": "seed", "kind": "flag", "baseline": True}],
            [{"name": "x", "kind": "float", "low": 0, "high": 1}],
        ]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "space.json")
            for space, ok in [(good, True)] + [(b, False) for b in bad]:
                with open(path, "w") as f:
                    json.dump(space, f)
                if ok:
                    self.assertEqual(runner.load_space(path), space)
                else:
                    with self.assertRaises(runner.SetupError, msg=space):
                        runner.load_space(path)


if __name__ == "__main__":
    unittest.main()
