"""The contract's data types (WIT package reagent:strategy@0.1.0, interface
`types`), as plain Python dataclasses.

They mirror the WIT one to one, so a strategy reads and builds them the
same way in a component and in a native test. Inside a component the SDK
converts them from and to componentize-py's generated classes (see
`reagent_sdk._component`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional, Tuple, Union


# --- values ---------------------------------------------------------------


@dataclass(frozen=True)
class Float:
    """A value of a float or log-float knob."""

    value: float


@dataclass(frozen=True)
class Int:
    """A value of an int knob."""

    value: int


@dataclass(frozen=True)
class Choice:
    """A value of a categorical knob."""

    value: str


@dataclass(frozen=True)
class Flag:
    """A value of a flag knob."""

    value: bool


Value = Union[Float, Int, Choice, Flag]


def render(value: Value) -> str:
    """A short rendering (`0.05`, `3`, `adam`, `true`), as the Rust SDK's."""
    if isinstance(value, Flag):
        return "true" if value.value else "false"
    if isinstance(value, Float):
        return _render_float(value.value)
    return str(value.value)


def _render_float(x: float) -> str:
    # Rust's `{}` for f64: shortest round-trip digits, no exponent, `1` for 1.0.
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e16:
        return str(int(x))
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(x, ".17f").rstrip("0").rstrip(".")
    return text


def as_float(value: Value) -> Optional[float]:
    """The value as a number (floats and ints; flags as 0/1); None for a choice."""
    if isinstance(value, Flag):
        return 1.0 if value.value else 0.0
    if isinstance(value, (Float, Int)):
        return float(value.value)
    return None


@dataclass(frozen=True)
class Assignment:
    """One knob set to one value."""

    knob: str
    value: Value


# --- knobs ----------------------------------------------------------------


@dataclass(frozen=True)
class FloatKind:
    """Uniform over [low, high]."""

    low: float
    high: float


@dataclass(frozen=True)
class LogFloatKind:
    """Positive, searched on a log scale over [low, high]."""

    low: float
    high: float


@dataclass(frozen=True)
class IntKind:
    """Integer in [low, high], inclusive."""

    low: int
    high: int


@dataclass(frozen=True)
class CategoricalKind:
    """One of the listed choices."""

    choices: Tuple[str, ...]


@dataclass(frozen=True)
class FlagKind:
    """true or false."""


KnobKind = Union[FloatKind, LogFloatKind, IntKind, CategoricalKind, FlagKind]


@dataclass(frozen=True)
class KnobSpec:
    name: str
    kind: KnobKind
    baseline: Value

    def is_continuous(self) -> bool:
        """True for float and log-float knobs."""
        return isinstance(self.kind, (FloatKind, LogFloatKind))

    def accepts(self, value: Value) -> bool:
        """Whether `value` has this knob's type and lies in its range: what
        the host checks of every assignment."""
        kind = self.kind
        if isinstance(kind, (FloatKind, LogFloatKind)):
            return (
                isinstance(value, Float)
                and math.isfinite(value.value)
                and kind.low <= value.value <= kind.high
            )
        if isinstance(kind, IntKind):
            return (
                isinstance(value, Int)
                and not isinstance(value.value, bool)
                and kind.low <= value.value <= kind.high
            )
        if isinstance(kind, CategoricalKind):
            return isinstance(value, Choice) and value.value in kind.choices
        return isinstance(value, Flag)

    def clamp(self, value: Value) -> Value:
        """Converts `value` to this knob's type and clamps it into range.
        Numbers round for int knobs; anything else unusable falls back to
        the baseline."""
        kind = self.kind
        if isinstance(kind, (FloatKind, LogFloatKind)):
            x = as_float(value)
            if x is None or not math.isfinite(x):
                base = as_float(self.baseline)
                return Float(base if base is not None else kind.low)
            return Float(min(max(x, kind.low), kind.high))
        if isinstance(kind, IntKind):
            x = as_float(value)
            if x is None or not math.isfinite(x):
                return self.baseline
            return Int(min(max(_round_half_away(x), kind.low), kind.high))
        if isinstance(kind, CategoricalKind):
            if isinstance(value, Choice) and value.value in kind.choices:
                return value
            return self.baseline
        return value if isinstance(value, Flag) else self.baseline

    def to_unit(self, value: Value) -> Optional[float]:
        """Position of `value` in the knob's range mapped to [0, 1] (log scale
        for log-float knobs, index order for categorical ones)."""
        kind = self.kind
        if isinstance(kind, FloatKind):
            x = as_float(value)
            if x is None:
                return None
            return (x - kind.low) / (kind.high - kind.low) if kind.high > kind.low else 0.5
        if isinstance(kind, LogFloatKind):
            x = as_float(value)
            if x is None or x <= 0 or kind.low <= 0:
                return None
            lo, hi = math.log(kind.low), math.log(kind.high)
            return (math.log(x) - lo) / (hi - lo) if hi > lo else 0.5
        if isinstance(kind, IntKind):
            if not isinstance(value, Int):
                return None
            return (value.value - kind.low) / (kind.high - kind.low) if kind.high > kind.low else 0.5
        if isinstance(kind, CategoricalKind):
            if not isinstance(value, Choice) or value.value not in kind.choices:
                return None
            n = len(kind.choices)
            return kind.choices.index(value.value) / (n - 1) if n > 1 else 0.5
        if isinstance(value, Flag):
            return 1.0 if value.value else 0.0
        return None

    def from_unit(self, u: float) -> Value:
        """Inverse of `to_unit`: a valid value at position `u` in [0, 1]."""
        u = min(max(u, 0.0), 1.0) if math.isfinite(u) else 0.5
        kind = self.kind
        if isinstance(kind, FloatKind):
            return Float(kind.low + u * (kind.high - kind.low))
        if isinstance(kind, LogFloatKind):
            lo, hi = math.log(kind.low), math.log(kind.high)
            return Float(min(max(math.exp(lo + u * (hi - lo)), kind.low), kind.high))
        if isinstance(kind, IntKind):
            x = kind.low + u * (kind.high - kind.low)
            return Int(min(max(_round_half_away(x), kind.low), kind.high))
        if isinstance(kind, CategoricalKind):
            if not kind.choices:
                return self.baseline
            index = _round_half_away(u * (len(kind.choices) - 1))
            return Choice(kind.choices[min(index, len(kind.choices) - 1)])
        return Flag(u >= 0.5)


def _round_half_away(x: float) -> int:
    # Rust's f64::round: halves away from zero (Python's round() is to even).
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


# --- the call -------------------------------------------------------------


class Direction(Enum):
    MINIMIZE = 0
    MAXIMIZE = 1


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction


class Phase(Enum):
    """The phase a proposal is for."""

    VALIDATE = 0
    COMBINE = 1
    EXPLOIT = 2


@dataclass(frozen=True)
class Estimate:
    """A summary statistic over replicated trials, in the objective's units."""

    mean: float
    sd: float
    n: int


@dataclass
class Context:
    """Everything a strategy is told about the call it is answering."""

    campaign: str
    tags: List[str]
    objective: Objective
    knobs: List[KnobSpec]
    phase: Phase
    baseline: Optional[Estimate]
    noise: Optional[float]
    seed: int
    round: int
    trials_done: int
    trials_left: int

    def knob(self, name: str) -> Optional[KnobSpec]:
        """The knob called `name`, if the campaign has it."""
        return next((k for k in self.knobs if k.name == name), None)

    def better(self, a: float, b: float) -> bool:
        """True when objective value `a` is better than `b`."""
        return a < b if self.objective.direction == Direction.MINIMIZE else a > b

    def improvement(self, value: float) -> Optional[float]:
        """Improvement of `value` over the baseline mean, positive = better."""
        if self.baseline is None:
            return None
        base = self.baseline.mean
        return base - value if self.objective.direction == Direction.MINIMIZE else value - base


@dataclass
class Hypothesis:
    """A proposed change, relative to the baseline configuration. Build one
    with `Hypothesis("title").because(...).in_category(...).set(knob, value)`."""

    title: str
    rationale: str = ""
    category: str = "general"
    assignments: List[Assignment] = field(default_factory=list)
    parents: List[int] = field(default_factory=list)

    def because(self, rationale: str) -> "Hypothesis":
        self.rationale = rationale
        return self

    def in_category(self, category: str) -> "Hypothesis":
        self.category = category
        return self

    def set(self, knob: str, value: Value) -> "Hypothesis":
        """Sets `knob` to `value`, replacing an earlier assignment of it."""
        self.assignments = [a for a in self.assignments if a.knob != knob]
        self.assignments.append(Assignment(knob, value))
        return self

    def with_parents(self, parents) -> "Hypothesis":
        self.parents = [int(p) for p in parents]
        return self

    def get(self, knob: str) -> Optional[Value]:
        """The value this hypothesis gives `knob`, if it changes it."""
        return next((a.value for a in self.assignments if a.knob == knob), None)

    def key(self) -> str:
        """A canonical key for de-duplication: sorted `knob=value` pairs."""
        return assignments_key(self.assignments)


def assignments_key(assignments) -> str:
    """A canonical, order-independent key for a set of assignments."""
    return ",".join(sorted(f"{a.knob}={render(a.value)}" for a in assignments))


@dataclass(frozen=True)
class HypothesisSummary:
    """What the host knows about one hypothesis so far."""

    id: int
    title: str
    category: str
    phase: Phase
    assignments: List[Assignment]
    parents: List[int]
    outcome: Optional[Estimate]
    effect: Optional[float]
    promising: bool
    trials: int
    failed: int


class TrialStatus(Enum):
    PENDING = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    EXCLUDED = 4
    CANCELLED = 5


class FailureClass(Enum):
    OUT_OF_MEMORY = 0
    DIVERGENCE = 1
    TIME_LIMIT = 2
    KILLED = 3
    INFRASTRUCTURE = 4
    PROGRAM_ERROR = 5
    MISSING_METRICS = 6
    UNKNOWN = 7


@dataclass(frozen=True)
class TrialSummary:
    """One trial: one hypothesis under one seed."""

    id: int
    hypothesis: int
    phase: Phase
    assignments: List[Assignment]
    seed: int
    status: TrialStatus
    objective: Optional[float] = None
    objective_stderr: Optional[float] = None
    failure: Optional[FailureClass] = None


@dataclass(frozen=True)
class FailureReport:
    """What the host saw of a failed trial."""

    trial: int
    hypothesis: int
    assignments: List[Assignment]
    exit_code: Optional[int]
    signal: Optional[int]
    timed_out: bool
    stopped_early: bool
    log_tail: str
    attempt: int
    max_attempts: int
    last_metrics: List[Tuple[str, float]]


@dataclass(frozen=True)
class Retry:
    """Run the same configuration again (infrastructure flake)."""


@dataclass(frozen=True)
class RetryWith:
    """Run again with these knobs changed (a new, linked trial)."""

    assignments: List[Assignment]


@dataclass(frozen=True)
class Exclude:
    """Give up on this hypothesis."""


@dataclass(frozen=True)
class Escalate:
    """Ask a human."""


Action = Union[Retry, RetryWith, Exclude, Escalate]


@dataclass(frozen=True)
class Diagnosis:
    failure_class: FailureClass
    action: Action
    rationale: str


class Level(Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


# --- insights -------------------------------------------------------------


@dataclass(frozen=True)
class Insight:
    """An effect recorded by an earlier campaign of this workspace."""

    assignments: List[Assignment]
    campaign: str
    tags: List[str]
    metric: str
    effect: float
    ci95_low: float
    ci95_high: float
    trials: int
    cost_cpu_hours: float
    failure: Optional[FailureClass] = None


@dataclass(frozen=True)
class ByKnob:
    """Every record that changes this knob."""

    knob: str


@dataclass(frozen=True)
class ByTag:
    """Every record from a campaign carrying this tag."""

    tag: str


@dataclass(frozen=True)
class TopEffects:
    """The best effects, best first."""


@dataclass(frozen=True)
class KnownFailures:
    """Records of changes that failed."""


InsightQuery = Union[ByKnob, ByTag, TopEffects, KnownFailures]


@dataclass(frozen=True)
class Message:
    """One chat message for `llm.complete` (role: system, user or assistant)."""

    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
