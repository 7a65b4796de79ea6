"""Native tests: plain pytest, the imports answered by a MockHost."""

from app import Strategy
from reagent_sdk import (
    Assignment,
    CategoricalKind,
    Choice,
    Context,
    Direction,
    Estimate,
    Float,
    HypothesisSummary,
    Int,
    IntKind,
    KnobSpec,
    LogFloatKind,
    Objective,
    Phase,
    TrialStatus,
    TrialSummary,
    testing,
)

KNOBS = [
    KnobSpec("lr", LogFloatKind(1e-4, 1.0), Float(0.01)),
    KnobSpec("optimizer", CategoricalKind(("sgd", "adam")), Choice("sgd")),
    KnobSpec("layers", IntKind(1, 8), Int(2)),
]


def context(phase, seed=7):
    return Context(
        campaign="test",
        tags=[],
        objective=Objective("loss", Direction.MINIMIZE),
        knobs=KNOBS,
        phase=phase,
        baseline=Estimate(1.0, 0.01, 3),
        noise=0.02,
        seed=seed,
        round=0,
        trials_done=3,
        trials_left=10,
    )


def promising(id, knob, value, effect):
    return HypothesisSummary(
        id=id,
        title=f"{knob} change",
        category=knob,
        phase=Phase.VALIDATE,
        assignments=[Assignment(knob, value)],
        parents=[],
        outcome=Estimate(1.0 - effect, 0.0, 1),
        effect=effect,
        promising=True,
        trials=1,
        failed=0,
    )


def check_valid(ctx, hypotheses, max):
    """What the host checks: at most `max`, titled, every value in range."""
    assert 0 < len(hypotheses) <= max
    for h in hypotheses:
        assert h.title.strip()
        assert h.assignments
        for a in h.assignments:
            assert ctx.knob(a.knob).accepts(a.value), (a.knob, a.value)
    assert len({h.key() for h in hypotheses}) == len(hypotheses), "no duplicates"


def test_validate_proposes_single_changes_and_logs():
    testing.install()
    ctx = context(Phase.VALIDATE)
    out = Strategy().propose(ctx, 2)
    check_valid(ctx, out, 2)
    assert all(len(h.assignments) == 1 for h in out)
    assert any("validate" in line for _, line in testing.take().logs)


def test_the_same_seed_gives_the_same_proposal():
    testing.install()
    assert Strategy().propose(context(Phase.VALIDATE, 3), 3) == Strategy().propose(
        context(Phase.VALIDATE, 3), 3
    )


def test_combine_pairs_promising_changes_with_their_parents():
    testing.install(
        testing.MockHost(
            hypotheses=[
                promising(1, "lr", Float(0.1), 0.2),
                promising(2, "optimizer", Choice("adam"), 0.1),
            ]
        )
    )
    ctx = context(Phase.COMBINE)
    out = Strategy().propose(ctx, 4)
    check_valid(ctx, out, 4)
    assert out[0].parents == [1, 2] and len(out[0].assignments) == 2


def test_combine_without_two_promising_changes_still_proposes():
    testing.install()
    ctx = context(Phase.COMBINE)
    check_valid(ctx, Strategy().propose(ctx, 3), 3)


def test_exploit_steps_around_the_best_trial():
    best = [Assignment("lr", Float(0.1))]
    testing.install(
        testing.MockHost(
            trials=[
                TrialSummary(1, 1, Phase.VALIDATE, [], 1, TrialStatus.SUCCEEDED, 1.0),
                TrialSummary(2, 2, Phase.VALIDATE, best, 1, TrialStatus.SUCCEEDED, 0.8),
            ]
        )
    )
    ctx = context(Phase.EXPLOIT)
    out = Strategy().propose(ctx, 3)
    check_valid(ctx, out, 3)
    assert sum(h.get("lr") is not None for h in out) >= 2, "most steps keep the best lr change"
