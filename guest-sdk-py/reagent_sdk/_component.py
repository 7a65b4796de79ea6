"""The component side: converts between componentize-py's generated
classes (module `wit_world`) and the SDK's types, and answers imports by
calling the host. Imported only inside a component.
"""

from __future__ import annotations

from typing import List, Optional, Union

import wit_world
from componentize_py_types import Err
from wit_world.imports import history as _history
from wit_world.imports import log as _log
from wit_world.imports import types as w

from . import types as t

# The world's optional interfaces, imported now (at build time, while
# componentize-py snapshots the interpreter): a generator has insights and
# memory, a debugger does not, and only a build with `llm = true` has llm.
try:
    from wit_world.imports import insights as _insights
except ImportError:  # the debugger world
    _insights = None
try:
    from wit_world.imports import memory as _memory
except ImportError:  # the debugger world
    _memory = None
try:
    from wit_world.imports import llm as _llm
except ImportError:  # built without `llm = true`
    _llm = None

# --- from the host --------------------------------------------------------


def value_in(v) -> t.Value:
    if isinstance(v, w.Value_Float):
        return t.Float(v.value)
    if isinstance(v, w.Value_Int):
        return t.Int(v.value)
    if isinstance(v, w.Value_Choice):
        return t.Choice(v.value)
    return t.Flag(v.value)


def assignments_in(items) -> List[t.Assignment]:
    return [t.Assignment(a.knob, value_in(a.value)) for a in items]


def kind_in(k) -> t.KnobKind:
    if isinstance(k, w.KnobKind_Float):
        return t.FloatKind(k.value.low, k.value.high)
    if isinstance(k, w.KnobKind_LogFloat):
        return t.LogFloatKind(k.value.low, k.value.high)
    if isinstance(k, w.KnobKind_Int):
        return t.IntKind(k.value.low, k.value.high)
    if isinstance(k, w.KnobKind_Categorical):
        return t.CategoricalKind(tuple(k.value))
    return t.FlagKind()


def estimate_in(e) -> Optional[t.Estimate]:
    return None if e is None else t.Estimate(e.mean, e.sd, e.n)


def enum_in(enum_type, v):
    return None if v is None else enum_type[v.name]


def context_in(c) -> t.Context:
    return t.Context(
        campaign=c.campaign,
        tags=list(c.tags),
        objective=t.Objective(c.objective.metric, t.Direction[c.objective.direction.name]),
        knobs=[t.KnobSpec(k.name, kind_in(k.kind), value_in(k.baseline)) for k in c.knobs],
        phase=t.Phase[c.phase.name],
        baseline=estimate_in(c.baseline),
        noise=c.noise,
        seed=c.seed,
        round=c.round,
        trials_done=c.trials_done,
        trials_left=c.trials_left,
    )


def hypothesis_summary_in(h) -> t.HypothesisSummary:
    return t.HypothesisSummary(
        id=h.id,
        title=h.title,
        category=h.category,
        phase=t.Phase[h.phase.name],
        assignments=assignments_in(h.assignments),
        parents=list(h.parents),
        outcome=estimate_in(h.outcome),
        effect=h.effect,
        promising=h.promising,
        trials=h.trials,
        failed=h.failed,
    )


def trial_summary_in(s) -> t.TrialSummary:
    return t.TrialSummary(
        id=s.id,
        hypothesis=s.hypothesis,
        phase=t.Phase[s.phase.name],
        assignments=assignments_in(s.assignments),
        seed=s.seed,
        status=t.TrialStatus[s.status.name],
        objective=s.objective,
        objective_stderr=s.objective_stderr,
        failure=enum_in(t.FailureClass, s.failure),
    )


def failure_in(f) -> t.FailureReport:
    return t.FailureReport(
        trial=f.trial,
        hypothesis=f.hypothesis,
        assignments=assignments_in(f.assignments),
        exit_code=f.exit_code,
        signal=f.signal,
        timed_out=f.timed_out,
        stopped_early=f.stopped_early,
        log_tail=f.log_tail,
        attempt=f.attempt,
        max_attempts=f.max_attempts,
        last_metrics=[(name, value) for name, value in f.last_metrics],
    )


def insight_in(i) -> t.Insight:
    return t.Insight(
        assignments=assignments_in(i.assignments),
        campaign=i.campaign,
        tags=list(i.tags),
        metric=i.metric,
        effect=i.effect,
        ci95_low=i.ci95_low,
        ci95_high=i.ci95_high,
        trials=i.trials,
        cost_cpu_hours=i.cost_cpu_hours,
        failure=enum_in(t.FailureClass, i.failure),
    )


# --- to the host ----------------------------------------------------------


def value_out(v: t.Value):
    # Checked here so a wrong type is a clear Python error, not a trap in
    # the bindings' lowering.
    if isinstance(v, t.Float):
        return w.Value_Float(float(v.value))
    if isinstance(v, t.Int):
        return w.Value_Int(int(v.value))
    if isinstance(v, t.Choice):
        return w.Value_Choice(str(v.value))
    if isinstance(v, t.Flag):
        return w.Value_Flag(bool(v.value))
    raise TypeError(f"not a knob value: {v!r} (use Float, Int, Choice or Flag)")


def assignments_out(items) -> list:
    return [w.Assignment(a.knob, value_out(a.value)) for a in items]


def hypothesis_out(h: t.Hypothesis):
    return w.Hypothesis(
        title=str(h.title),
        rationale=str(h.rationale),
        category=str(h.category),
        assignments=assignments_out(h.assignments),
        parents=[int(p) for p in h.parents],
    )


def action_out(a: t.Action):
    if isinstance(a, t.Retry):
        return w.Action_Retry()
    if isinstance(a, t.RetryWith):
        return w.Action_RetryWith(assignments_out(a.assignments))
    if isinstance(a, t.Exclude):
        return w.Action_Exclude()
    if isinstance(a, t.Escalate):
        return w.Action_Escalate()
    raise TypeError(f"not an action: {a!r}")


def diagnosis_out(d: t.Diagnosis):
    return w.Diagnosis(
        class_=w.FailureClass[d.failure_class.name],
        action=action_out(d.action),
        rationale=str(d.rationale),
    )


# --- the imports ----------------------------------------------------------


class _Host:
    """Answers the SDK's import calls by calling the real host."""

    def log(self, level: t.Level, message: str) -> None:
        _log.log(_log.Level[level.name], message)

    def trial_count(self) -> int:
        return _history.trial_count()

    def trials_page(self, cursor: int, limit: int):
        p = _history.trials(cursor, limit)
        return [trial_summary_in(s) for s in p.items], p.next

    def hypotheses_page(self, cursor: int, limit: int):
        p = _history.hypotheses(cursor, limit)
        return [hypothesis_summary_in(h) for h in p.items], p.next

    def curve(self, trial: int, metric: str):
        return [(step, value) for step, value in _history.curve(trial, metric)]

    def insights_page(self, query: t.InsightQuery, cursor: int, limit: int):
        if isinstance(query, t.ByKnob):
            q = _insights.Query_ByKnob(query.knob)
        elif isinstance(query, t.ByTag):
            q = _insights.Query_ByTag(query.tag)
        elif isinstance(query, t.TopEffects):
            q = _insights.Query_TopEffects()
        elif isinstance(query, t.KnownFailures):
            q = _insights.Query_KnownFailures()
        else:
            raise TypeError(f"not an insight query: {query!r}")
        p = _insights.find(q, cursor, limit)
        return [insight_in(i) for i in p.items], p.next

    def memory_get(self, key: str) -> Optional[bytes]:
        return _memory.get(key)

    def memory_set(self, key: str, value: bytes) -> Optional[str]:
        try:
            _memory.set(key, value)
        except Err as e:
            return str(e.value)
        return None

    def memory_delete(self, key: str) -> None:
        _memory.delete(key)

    def memory_keys(self):
        return list(_memory.keys())

    def complete(self, messages, max_tokens: int) -> Union[t.Completion, str]:
        if _llm is None:
            return (
                "this strategy was built without the llm import; set `llm = true` under "
                "[tool.reagent] in pyproject.toml and rebuild"
            )
        try:
            c = _llm.complete([_llm.Message(m.role, m.content) for m in messages], max_tokens)
        except Err as e:
            return str(e.value)
        return t.Completion(c.content, c.prompt_tokens, c.completion_tokens)


HOST = _Host()


def generator_export(strategy):
    """The `WitWorld` class componentize-py instantiates, calling `strategy`."""

    class WitWorld(wit_world.WitWorld):
        def propose(self, ctx, max):  # noqa: A002 - the WIT parameter's name
            out = strategy.propose(context_in(ctx), max)
            return [hypothesis_out(h) for h in out]

    return WitWorld


def debugger_export(strategy):
    class WitWorld(wit_world.WitWorld):
        def diagnose(self, ctx, failure):
            return diagnosis_out(strategy.diagnose(context_in(ctx), failure_in(failure)))

    return WitWorld
