"""A small, deterministic random number generator seeded by the host.

Strategies must be reproducible: the host passes a fresh `ctx.seed` on every
call and records it, so a decision replays bit-identically. Python's
`random` module is seeded from the (virtual, host-seeded) WASI random
source inside a component, but its stream is not specified across Python
versions; this one is the Rust SDK's (xoshiro256** seeded through
SplitMix64), so `Rng(seed)` gives the same numbers in both languages.
"""

from __future__ import annotations

import math
from typing import List, MutableSequence, Optional, Sequence, TypeVar

_MASK = (1 << 64) - 1
T = TypeVar("T")


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _MASK


def _splitmix64(state: int):
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


class Rng:
    """xoshiro256**; not cryptographic. Use `Rng(ctx.seed)`."""

    def __init__(self, seed: int) -> None:
        state = seed & _MASK
        s: List[int] = []
        for _ in range(4):
            state, out = _splitmix64(state)
            s.append(out)
        self._s = s

    def next_u64(self) -> int:
        s = self._s
        result = (_rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def random(self) -> float:
        """Uniform in [0, 1)."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float) -> float:
        """Uniform in [low, high]."""
        return low + (high - low) * self.random()

    def integer(self, low: int, high: int) -> int:
        """Uniform integer in [low, high], inclusive."""
        if high <= low:
            return low
        return low + self.next_u64() % (high - low + 1)

    def below(self, n: int) -> int:
        """Uniform index below `n` (0 when n is 0)."""
        return 0 if n <= 0 else self.next_u64() % n

    def normal(self) -> float:
        """Standard normal (Box–Muller)."""
        u1 = max(self.random(), 2.2250738585072014e-308)
        u2 = self.random()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def chance(self, p: float) -> bool:
        """True with probability `p`."""
        return self.random() < p

    def choose(self, items: Sequence[T]) -> Optional[T]:
        return items[self.below(len(items))] if items else None

    def shuffle(self, items: MutableSequence[T]) -> None:
        """Fisher–Yates, in place (the same permutation as the Rust SDK's)."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
