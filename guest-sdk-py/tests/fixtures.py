"""Contexts and knobs shared by the SDK's tests."""

from reagent_sdk import (
    CategoricalKind,
    Choice,
    Context,
    Direction,
    Estimate,
    Flag,
    FlagKind,
    Float,
    FloatKind,
    Int,
    IntKind,
    KnobSpec,
    LogFloatKind,
    Objective,
    Phase,
)

KNOBS = [
    KnobSpec("lr", LogFloatKind(1e-4, 1.0), Float(0.05)),
    KnobSpec("optimizer", CategoricalKind(("sgd", "adam", "adagrad")), Choice("sgd")),
    KnobSpec("batch_size", IntKind(32, 2048), Int(256)),
    KnobSpec("dropout", FloatKind(0.0, 0.5), Float(0.0)),
    KnobSpec("use_bias", FlagKind(), Flag(True)),
]


def context(phase=Phase.VALIDATE, seed=7, direction=Direction.MINIMIZE):
    return Context(
        campaign="test",
        tags=["test"],
        objective=Objective("valid_ne", direction),
        knobs=list(KNOBS),
        phase=phase,
        baseline=Estimate(0.8, 0.01, 3),
        noise=0.005,
        seed=seed,
        round=0,
        trials_done=3,
        trials_left=12,
    )
