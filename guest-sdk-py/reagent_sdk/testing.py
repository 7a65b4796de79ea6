"""A stand-in for the host's imports, so strategy logic runs under plain
pytest, no WebAssembly involved. Install a `MockHost`, call your methods,
then look at what was logged or stored:

    host = testing.install(MockHost(trials=[...]))
    out = MyStrategy().propose(ctx, 8)
    assert any("validate" in line for _, line in host.logs)

Outside a component the SDK answers imports from the installed mock host
(an empty one if none was installed).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple, Union

from .types import (
    ByKnob,
    ByTag,
    Completion,
    HypothesisSummary,
    Insight,
    InsightQuery,
    KnownFailures,
    Level,
    Message,
    TopEffects,
    TrialSummary,
)


@dataclass
class MockHost:
    """What the imports answer with while testing natively."""

    trials: List[TrialSummary] = field(default_factory=list)
    hypotheses: List[HypothesisSummary] = field(default_factory=list)
    curves: Dict[Tuple[int, str], List[Tuple[int, float]]] = field(default_factory=dict)
    insights: List[Insight] = field(default_factory=list)
    memory: Dict[str, bytes] = field(default_factory=dict)
    #: The host's quota on the memory store (keys plus values), as the real one.
    memory_quota: int = 1 << 20
    logs: List[Tuple[Level, str]] = field(default_factory=list)
    #: Answers `llm.complete` gives, in order (an error once they run out):
    #: a `Completion`, or a string for an error.
    llm_replies: Deque[Union[Completion, str]] = field(default_factory=deque)
    #: What the strategy sent to `llm.complete`: (messages, max_tokens).
    llm_prompts: List[Tuple[List[Message], int]] = field(default_factory=list)

    # The imports, as the host answers them.

    def log(self, level: Level, message: str) -> None:
        self.logs.append((level, message))

    def trial_count(self) -> int:
        return len(self.trials)

    def trials_page(self, cursor: int, limit: int):
        return page(self.trials, cursor, limit)

    def hypotheses_page(self, cursor: int, limit: int):
        return page(self.hypotheses, cursor, limit)

    def curve(self, trial: int, metric: str) -> List[Tuple[int, float]]:
        return list(self.curves.get((trial, metric), []))

    def insights_page(self, query: InsightQuery, cursor: int, limit: int):
        return page([i for i in self.insights if insight_matches(i, query)], cursor, limit)

    def memory_get(self, key: str) -> Optional[bytes]:
        return self.memory.get(key)

    def memory_set(self, key: str, value: bytes) -> Optional[str]:
        after = dict(self.memory)
        after[key] = bytes(value)
        used = sum(len(k.encode()) + len(v) for k, v in after.items())
        if used > self.memory_quota:
            return f"memory quota of {self.memory_quota} bytes exceeded ({used} bytes)"
        self.memory = after
        return None

    def memory_delete(self, key: str) -> None:
        self.memory.pop(key, None)

    def memory_keys(self) -> List[str]:
        return sorted(self.memory)

    def complete(self, messages: List[Message], max_tokens: int) -> Union[Completion, str]:
        self.llm_prompts.append((list(messages), max_tokens))
        if not self.llm_replies:
            return "no language model in this test host"
        return self.llm_replies.popleft()


def page(items, cursor: int, limit: int):
    """One page of `items` from `cursor`: (items, next cursor or None)."""
    start = min(cursor, len(items))
    end = min(start + max(limit, 1), len(items))
    return list(items[start:end]), (end if end < len(items) else None)


def insight_matches(insight: Insight, query: InsightQuery) -> bool:
    if isinstance(query, ByKnob):
        return any(a.knob == query.knob for a in insight.assignments)
    if isinstance(query, ByTag):
        return query.tag in insight.tags
    if isinstance(query, TopEffects):
        return insight.failure is None
    if isinstance(query, KnownFailures):
        return insight.failure is not None
    raise TypeError(f"not an insight query: {query!r}")


_installed: Optional[MockHost] = None


def install(host: Optional[MockHost] = None) -> MockHost:
    """Makes `host` (a new empty one by default) answer the imports; returns it."""
    global _installed
    _installed = host if host is not None else MockHost()
    return _installed


def take() -> MockHost:
    """Takes back the installed host (with what the strategy logged and
    stored) and installs an empty one."""
    global _installed
    host = current()
    _installed = MockHost()
    return host


def current() -> MockHost:
    global _installed
    if _installed is None:
        _installed = MockHost()
    return _installed
