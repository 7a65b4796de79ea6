"""Native tests of the evolutionary generator: plain pytest, a MockHost."""

from app import Evolve, elite
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
    KnobSpec("lr", LogFloatKind(1e-3, 1.0), Float(0.3)),
    KnobSpec("optimizer", CategoricalKind(("sgd", "adam")), Choice("sgd")),
    KnobSpec("layers", IntKind(0, 3), Int(0)),
]


def context(phase, seed=11, direction=Direction.MINIMIZE, left=10):
    return Context(
        "c", [], Objective("valid_loss", direction), KNOBS, phase,
        Estimate(1.0, 0.01, 3), 0.02, seed, 0, 3, left,
    )


def check(ctx, out, max):
    assert 0 < len(out) <= max
    assert len({h.key() for h in out}) == len(out)
    for h in out:
        assert h.title and h.assignments
        assert all(ctx.knob(a.knob).accepts(a.value) for a in h.assignments)


def trial(i, assignments, objective):
    return TrialSummary(i, i, Phase.VALIDATE, assignments, 1, TrialStatus.SUCCEEDED, objective)


def test_validate_looks_at_every_knob_before_any_twice():
    testing.install()
    ctx = context(Phase.VALIDATE)
    out = Evolve().propose(ctx, 3)
    check(ctx, out, 3)
    assert sorted(h.assignments[0].knob for h in out) == ["layers", "lr", "optimizer"]


def test_validate_skips_what_was_already_proposed():
    testing.install()
    ctx = context(Phase.VALIDATE)
    first = Evolve().propose(ctx, 2)
    summaries = [
        HypothesisSummary(i, h.title, h.category, Phase.VALIDATE, h.assignments, [], None,
                          None, False, 0, 0)
        for i, h in enumerate(first)
    ]
    testing.install(testing.MockHost(hypotheses=summaries))
    again = Evolve().propose(ctx, 8)
    assert not {h.key() for h in first} & {h.key() for h in again}


def test_elite_ranks_by_mean_objective_in_the_objectives_direction():
    a = [Assignment("lr", Float(0.1))]
    b = [Assignment("layers", Int(2))]
    testing.install(testing.MockHost(trials=[trial(1, a, 0.5), trial(2, a, 0.7), trial(3, b, 0.55)]))
    assert elite(context(Phase.EXPLOIT), 2) == [{"layers": Int(2)}, {"lr": Float(0.1)}]
    maximize = context(Phase.EXPLOIT, direction=Direction.MAXIMIZE)
    assert elite(maximize, 1) == [{"lr": Float(0.1)}]


def test_exploit_children_descend_from_the_elite_and_are_deterministic():
    best = [Assignment("lr", Float(0.05)), Assignment("optimizer", Choice("adam"))]
    host = testing.MockHost(trials=[trial(1, [], 1.0), trial(2, best, 0.6)])
    testing.install(host)
    ctx = context(Phase.EXPLOIT)
    out = Evolve().propose(ctx, 8)
    check(ctx, out, 8)
    assert sum(h.get("optimizer") == Choice("adam") for h in out) >= 4, [h.title for h in out]
    testing.install(host)
    assert Evolve().propose(ctx, 8) == out


def test_combine_merges_promising_pairs_or_falls_back_to_exploit():
    def promising(id, assignment, effect):
        return HypothesisSummary(id, f"h{id}", "x", Phase.VALIDATE, [assignment], [],
                                 Estimate(1 - effect, 0, 1), effect, True, 1, 0)

    testing.install(testing.MockHost(hypotheses=[
        promising(1, Assignment("lr", Float(0.1)), 0.1),
        promising(2, Assignment("layers", Int(3)), 0.2),
    ]))
    ctx = context(Phase.COMBINE)
    out = Evolve().propose(ctx, 2)
    check(ctx, out, 2)
    assert out[0].parents == [2, 1]
    testing.install()
    check(ctx, Evolve().propose(ctx, 2), 2)
