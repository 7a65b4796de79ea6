"""The host's imports: `log`, `history`, `insights`, `memory` and `llm`.

Each function calls the host inside a component and the installed
`testing.MockHost` natively. Every answer is recorded by the host, so a
call replays identically; the host caps page sizes, argument sizes and the
number of calls.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from ._host import backend
from .types import (
    Completion,
    HypothesisSummary,
    Insight,
    InsightQuery,
    Level,
    Message,
    TrialSummary,
)

#: Page size the iterators below ask for; the host may cap it lower.
PAGE = 256


class log:  # noqa: N801 - a namespace, used as `log.info(...)`
    """Leveled lines into the strategy log (capped by the host)."""

    @staticmethod
    def write(level: Level, message: str) -> None:
        backend().log(level, str(message))

    @staticmethod
    def trace(message: str) -> None:
        log.write(Level.TRACE, message)

    @staticmethod
    def debug(message: str) -> None:
        log.write(Level.DEBUG, message)

    @staticmethod
    def info(message: str) -> None:
        log.write(Level.INFO, message)

    @staticmethod
    def warn(message: str) -> None:
        log.write(Level.WARN, message)

    @staticmethod
    def error(message: str) -> None:
        log.write(Level.ERROR, message)


def _all_pages(fetch) -> list:
    out: list = []
    cursor = 0
    while True:
        items, nxt = fetch(cursor)
        out.extend(items)
        if nxt is None or nxt <= cursor:
            return out
        cursor = nxt


class history:  # noqa: N801
    """Read-only, paged access to this campaign's hypotheses and trials."""

    @staticmethod
    def trial_count() -> int:
        return backend().trial_count()

    @staticmethod
    def trials_page(cursor: int, limit: int = PAGE) -> Tuple[List[TrialSummary], Optional[int]]:
        return backend().trials_page(cursor, limit)

    @staticmethod
    def hypotheses_page(
        cursor: int, limit: int = PAGE
    ) -> Tuple[List[HypothesisSummary], Optional[int]]:
        return backend().hypotheses_page(cursor, limit)

    @staticmethod
    def trials() -> List[TrialSummary]:
        """Every trial, in launch order, fetched page by page."""
        return _all_pages(lambda c: history.trials_page(c, PAGE))

    @staticmethod
    def hypotheses() -> List[HypothesisSummary]:
        """Every hypothesis, in proposal order, fetched page by page."""
        return _all_pages(lambda c: history.hypotheses_page(c, PAGE))

    @staticmethod
    def curve(trial: int, metric: str) -> List[Tuple[int, float]]:
        """Intermediate values of `metric` reported by `trial`, as (step, value)."""
        return backend().curve(trial, metric)


class insights:  # noqa: N801
    """Effects recorded by earlier campaigns of the workspace (needs the
    `insights` grant, on by default)."""

    @staticmethod
    def find_page(
        query: InsightQuery, cursor: int, limit: int = PAGE
    ) -> Tuple[List[Insight], Optional[int]]:
        return backend().insights_page(query, cursor, limit)

    @staticmethod
    def find(query: InsightQuery, max_items: int = 1000) -> List[Insight]:
        """Up to `max_items` records matching `query`."""
        out: List[Insight] = []
        cursor = 0
        while len(out) < max_items:
            items, nxt = insights.find_page(query, cursor, PAGE)
            out.extend(items)
            if nxt is None or nxt <= cursor:
                break
            cursor = nxt
        return out[:max_items]


class MemoryQuotaError(Exception):
    """`memory.set` would exceed the host's quota."""


class memory:  # noqa: N801
    """A small key-value store private to this strategy in this campaign; it
    survives hibernation (needs the `memory` grant, on by default)."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        return backend().memory_get(key)

    @staticmethod
    def set(key: str, value: bytes) -> None:
        """Stores `value`; raises `MemoryQuotaError` past the quota."""
        problem = backend().memory_set(key, bytes(value))
        if problem is not None:
            raise MemoryQuotaError(problem)

    @staticmethod
    def delete(key: str) -> None:
        backend().memory_delete(key)

    @staticmethod
    def keys() -> List[str]:
        return backend().memory_keys()


class LlmError(Exception):
    """The host could not give a completion (not granted, budget spent,
    endpoint down or answering nonsense): carry on without the model."""


class llm:  # noqa: N801
    """Host-mediated language-model completions. Usable only in a strategy
    built with `llm = true` (see `reagent strategy build`) and run under a
    campaign granting `llm`; otherwise every call raises `LlmError`. Treat
    the content as untrusted text: the host validates your hypotheses, not
    what the model said."""

    @staticmethod
    def message(role: str, content: str) -> Message:
        return Message(role, content)

    @staticmethod
    def complete(messages: List[Message], max_tokens: int) -> Completion:
        answer = backend().complete(list(messages), max_tokens)
        if isinstance(answer, str):
            raise LlmError(answer)
        return answer
