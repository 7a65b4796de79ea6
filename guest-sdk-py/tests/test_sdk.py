"""The SDK's own behaviour, natively: knob helpers, the RNG (the same
stream as the Rust SDK's), the phase dispatch, and every import answered
by the mock host."""

import math
from collections import deque

import pytest

from fixtures import KNOBS, context
from reagent_sdk import (
    Assignment,
    ByKnob,
    ByTag,
    Choice,
    Completion,
    Debugger,
    Diagnosis,
    Escalate,
    FailureClass,
    FailureReport,
    Flag,
    Float,
    Generator,
    Hypothesis,
    Insight,
    Int,
    KnownFailures,
    Level,
    LlmError,
    MemoryQuotaError,
    Phase,
    Retry,
    Rng,
    TopEffects,
    TrialStatus,
    TrialSummary,
    export_debugger,
    export_generator,
    history,
    insights,
    llm,
    log,
    memory,
    render,
    testing,
)

LR, OPT, BATCH, DROPOUT, BIAS = KNOBS


def test_accepts_checks_type_and_range_like_the_host():
    assert LR.accepts(Float(0.01))
    assert not LR.accepts(Float(2.0))
    assert not LR.accepts(Float(math.nan))
    assert not LR.accepts(Int(1))
    assert BATCH.accepts(Int(2048)) and not BATCH.accepts(Int(2049))
    assert not BATCH.accepts(Int(True)), "a bool is not an int knob value"
    assert OPT.accepts(Choice("adam")) and not OPT.accepts(Choice("rmsprop"))
    assert BIAS.accepts(Flag(False)) and not BIAS.accepts(Int(0))


def test_clamp_converts_and_falls_back_to_baseline():
    assert LR.clamp(Float(5.0)) == Float(1.0)
    assert LR.clamp(Float(math.inf)) == Float(0.05)
    assert BATCH.clamp(Float(100.5)) == Int(101), "halves round away from zero, as in Rust"
    assert BATCH.clamp(Int(10)) == Int(32)
    assert OPT.clamp(Choice("rmsprop")) == Choice("sgd")
    assert BIAS.clamp(Int(1)) == Flag(True)


def test_from_unit_and_to_unit_are_inverse_and_always_valid():
    rng = Rng(3)
    for knob in KNOBS:
        for _ in range(200):
            value = knob.from_unit(rng.random())
            assert knob.accepts(value), (knob.name, value)
        assert knob.accepts(knob.from_unit(math.nan))
        assert knob.accepts(knob.from_unit(-3.0)) and knob.accepts(knob.from_unit(7.0))
    assert LR.from_unit(0.5) == Float(pytest.approx(0.01))
    assert LR.to_unit(Float(0.01)) == pytest.approx(0.5)
    assert OPT.from_unit(1.0) == Choice("adagrad") and OPT.to_unit(Choice("adam")) == 0.5
    assert BATCH.to_unit(BATCH.from_unit(0.25)) == pytest.approx(0.25, abs=1e-3)


def test_rng_gives_the_rust_sdks_stream():
    # Values printed by reagent-sdk's Rng (guest-sdk/src/rng.rs) for the same seeds.
    r = Rng(7)
    assert [r.next_u64() for _ in range(3)] == [
        12923355070828475994,
        5142052590334782674,
        15488392906492639638,
    ]
    r = Rng(42)
    assert r.random() == 0.08386297105988216
    items = list(range(10))
    r.shuffle(items)
    assert items == [5, 8, 7, 3, 6, 0, 4, 1, 9, 2]
    assert r.integer(-3, 4) == -2


def test_rng_ranges_stay_in_bounds_and_the_normal_is_centred():
    r = Rng(1)
    for _ in range(5000):
        assert -2.0 <= r.uniform(-2.0, 3.0) <= 3.0
        assert -3 <= r.integer(-3, 4) <= 4
        assert r.below(5) < 5
    mean = sum(r.normal() for _ in range(20000)) / 20000
    assert abs(mean) < 0.05
    assert Rng(9).choose([]) is None


def test_render_matches_the_rust_rendering():
    assert render(Float(0.05)) == "0.05"
    assert render(Float(1.0)) == "1"
    assert render(Float(1e-5)) == "0.00001"
    assert render(Int(3)) == "3"
    assert render(Flag(True)) == "true"
    assert render(Choice("adam")) == "adam"


def test_hypothesis_builder_replaces_a_knob_and_keys_ignore_order():
    h = Hypothesis("t").because("why").in_category("opt").set("lr", Float(0.1)).set("lr", Float(0.2))
    assert h.assignments == [type(h.assignments[0])("lr", Float(0.2))]
    a = Hypothesis("a").set("lr", Float(0.1)).set("optimizer", Choice("adam"))
    b = Hypothesis("b").set("optimizer", Choice("adam")).set("lr", Float(0.1))
    assert a.key() == b.key() == "lr=0.1,optimizer=adam"
    assert a.get("lr") == Float(0.1) and a.get("dropout") is None


class OnlyExploit(Generator):
    def exploit(self, ctx, max):
        return [Hypothesis("x").set("lr", Float(0.1))]


def test_propose_dispatches_by_phase_and_unset_phases_propose_nothing():
    g = OnlyExploit()
    assert g.propose(context(Phase.VALIDATE), 4) == []
    assert g.propose(context(Phase.COMBINE), 4) == []
    assert len(g.propose(context(Phase.EXPLOIT), 4)) == 1


def test_context_helpers_follow_the_objective_direction():
    from reagent_sdk import Direction

    ctx = context()
    assert ctx.better(0.7, 0.8) and ctx.improvement(0.7) == pytest.approx(0.1)
    ctx = context(direction=Direction.MAXIMIZE)
    assert ctx.better(0.9, 0.8) and ctx.improvement(0.9) == pytest.approx(0.1)
    assert ctx.knob("lr") is LR and ctx.knob("nope") is None


def test_the_default_debugger_escalates():
    failure = FailureReport(4, 2, [], 1, None, False, False, "boom", 1, 2, [])
    d = Debugger().diagnose(context(), failure)
    assert d == Diagnosis(FailureClass.UNKNOWN, Escalate(), d.rationale) and "4" in d.rationale


def test_outside_a_component_export_returns_the_strategy_and_checks_its_type():
    g = OnlyExploit()
    assert export_generator(g) is g
    with pytest.raises(TypeError):
        export_generator(OnlyExploit)
    with pytest.raises(TypeError):
        export_debugger(g)

    class Retrier(Debugger):
        def diagnose(self, ctx, failure):
            return Diagnosis(FailureClass.INFRASTRUCTURE, Retry(), "flake")

    assert export_debugger(Retrier()).diagnose(context(), None).action == Retry()


def trial(i, status=TrialStatus.SUCCEEDED, objective=0.8):
    return TrialSummary(i, i, Phase.VALIDATE, [], 1, status, objective)


def test_history_pages_through_everything_the_host_holds():
    host = testing.install(testing.MockHost(trials=[trial(i) for i in range(600)]))
    host.curves[(3, "loss")] = [(1, 0.9), (2, 0.7)]
    assert history.trial_count() == 600
    assert [t.id for t in history.trials()] == list(range(600))
    items, nxt = history.trials_page(590, 256)
    assert len(items) == 10 and nxt is None
    assert history.curve(3, "loss") == [(1, 0.9), (2, 0.7)]
    assert history.curve(3, "acc") == [] and history.hypotheses() == []


def test_insights_are_filtered_by_query():
    ok = Insight([Assignment("lr", Float(0.1))], "c1", ["ranking"], "ne", 0.01, 0.0, 0.02, 4, 1.0)
    failed = Insight([], "c2", ["vision"], "ne", 0.0, 0.0, 0.0, 1, 0.5, FailureClass.OUT_OF_MEMORY)
    testing.install(testing.MockHost(insights=[ok, failed]))
    assert insights.find(ByKnob("lr")) == [ok]
    assert insights.find(ByTag("vision")) == [failed]
    assert insights.find(TopEffects()) == [ok]
    assert insights.find(KnownFailures()) == [failed]
    assert insights.find(TopEffects(), max_items=0) == []


def test_memory_round_trips_and_refuses_past_the_quota():
    host = testing.install(testing.MockHost(memory_quota=16))
    memory.set("k", b"12345")
    assert memory.get("k") == b"12345" and memory.keys() == ["k"]
    with pytest.raises(MemoryQuotaError):
        memory.set("big", b"x" * 32)
    assert memory.keys() == ["k"], "a refused write changes nothing"
    memory.delete("k")
    assert memory.get("k") is None and host.memory == {}


def test_log_lines_reach_the_host_with_their_level():
    log.info("hello")
    log.warn("careful")
    host = testing.take()
    assert host.logs == [(Level.INFO, "hello"), (Level.WARN, "careful")]


def test_llm_answers_in_order_then_raises_and_prompts_are_kept():
    host = testing.install(
        testing.MockHost(llm_replies=deque([Completion("try adam", 10, 3), "budget spent"]))
    )
    msgs = [llm.message("user", "what next?")]
    assert llm.complete(msgs, 50).content == "try adam"
    with pytest.raises(LlmError, match="budget spent"):
        llm.complete(msgs, 50)
    with pytest.raises(LlmError):
        llm.complete(msgs, 50)
    assert len(host.llm_prompts) == 3 and host.llm_prompts[0] == (msgs, 50)
