"""reagent_sdk: write Reagent strategies in Python.

A *strategy* is the replaceable brain of a Reagent campaign. It runs as a
WebAssembly component inside the host's sandbox (built from Python by
`reagent strategy build`, with componentize-py) and does one of two jobs:

- a **generator** proposes hypotheses (knob changes relative to baseline)
  for the current phase: subclass `Generator`;
- a **debugger** reads a failed trial and decides what to do about it:
  subclass `Debugger`.

A strategy is one class and one line that exports it:

    from reagent_sdk import Generator, Hypothesis, Rng, export_generator

    class Halve(Generator):
        def validate(self, ctx, max):
            rng = Rng(ctx.seed)
            ...

    WitWorld = export_generator(Halve())

It never sees a file, a socket or a clock; it reads what it needs through
`history`, `insights` and `memory`, and writes lines to `log`. Every answer
is validated by the host before anything is launched. Its logic is plain
Python: test it with pytest and a `testing.MockHost`.
"""

from __future__ import annotations

from typing import List

from . import testing
from ._host import IN_COMPONENT
from .imports import LlmError, MemoryQuotaError, history, insights, llm, log, memory
from .rng import Rng
from .types import (
    Action,
    Assignment,
    ByKnob,
    ByTag,
    CategoricalKind,
    Choice,
    Completion,
    Context,
    Diagnosis,
    Direction,
    Escalate,
    Estimate,
    Exclude,
    FailureClass,
    FailureReport,
    Flag,
    FlagKind,
    Float,
    FloatKind,
    Hypothesis,
    HypothesisSummary,
    Insight,
    Int,
    IntKind,
    KnobSpec,
    KnownFailures,
    Level,
    LogFloatKind,
    Message,
    Objective,
    Phase,
    Retry,
    RetryWith,
    TopEffects,
    TrialStatus,
    TrialSummary,
    Value,
    as_float,
    assignments_key,
    render,
)

#: This SDK's version; `reagent strategy build` embeds it in the component
#: (custom section `reagent-sdk-version`) so `strategy inspect` shows it.
SDK_VERSION = "0.1.0"


class Generator:
    """Proposes hypotheses. Override the phases you care about; the default
    `propose` dispatches on `ctx.phase`, and a phase left alone proposes
    nothing.

    The host rejects the whole answer if any hypothesis is invalid (unknown
    knob, wrong type, out of range, NaN, empty title, more than `max`), so
    build values with `KnobSpec.from_unit` or `KnobSpec.clamp`.
    """

    def propose(self, ctx: Context, max: int) -> List[Hypothesis]:  # noqa: A002
        if ctx.phase == Phase.VALIDATE:
            return self.validate(ctx, max)
        if ctx.phase == Phase.COMBINE:
            return self.combine(ctx, max)
        return self.exploit(ctx, max)

    def validate(self, ctx: Context, max: int) -> List[Hypothesis]:  # noqa: A002
        """Single changes from baseline, run in parallel to find what helps."""
        return []

    def combine(self, ctx: Context, max: int) -> List[Hypothesis]:  # noqa: A002
        """Combinations of the promising single changes (set `parents`)."""
        return []

    def exploit(self, ctx: Context, max: int) -> List[Hypothesis]:  # noqa: A002
        """Search around the best configuration so far."""
        return []


class Debugger:
    """Diagnoses failed trials. The default escalates everything to a human."""

    def diagnose(self, ctx: Context, failure: FailureReport) -> Diagnosis:
        return Diagnosis(
            FailureClass.UNKNOWN,
            Escalate(),
            f"no debugger logic for trial {failure.trial}; asking a human",
        )


def export_generator(strategy: Generator):
    """Exports `strategy` (an instance) as this component's `propose`.
    Assign the result to `WitWorld` in the strategy's main module; outside
    a component it returns the strategy itself."""
    if not isinstance(strategy, Generator):
        raise TypeError("export_generator expects an instance of a Generator subclass")
    if IN_COMPONENT:  # pragma: no cover - only inside a component
        from ._component import generator_export

        return generator_export(strategy)
    return strategy


def export_debugger(strategy: Debugger):
    """Exports `strategy` (an instance) as this component's `diagnose`."""
    if not isinstance(strategy, Debugger):
        raise TypeError("export_debugger expects an instance of a Debugger subclass")
    if IN_COMPONENT:  # pragma: no cover - only inside a component
        from ._component import debugger_export

        return debugger_export(strategy)
    return strategy


__all__ = [
    "SDK_VERSION",
    "Action",
    "Assignment",
    "ByKnob",
    "ByTag",
    "CategoricalKind",
    "Choice",
    "Completion",
    "Context",
    "Debugger",
    "Diagnosis",
    "Direction",
    "Escalate",
    "Estimate",
    "Exclude",
    "FailureClass",
    "FailureReport",
    "Flag",
    "FlagKind",
    "Float",
    "FloatKind",
    "Generator",
    "Hypothesis",
    "HypothesisSummary",
    "Insight",
    "Int",
    "IntKind",
    "KnobSpec",
    "KnownFailures",
    "Level",
    "LlmError",
    "LogFloatKind",
    "MemoryQuotaError",
    "Message",
    "Objective",
    "Phase",
    "Retry",
    "RetryWith",
    "Rng",
    "TopEffects",
    "TrialStatus",
    "TrialSummary",
    "Value",
    "as_float",
    "assignments_key",
    "export_debugger",
    "export_generator",
    "history",
    "insights",
    "llm",
    "log",
    "memory",
    "render",
    "testing",
]
