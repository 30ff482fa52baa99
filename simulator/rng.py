"""Named random streams: one independent generator per concern, all derived from one seed.

Each part of the simulator draws from its own stream (``stream(seed, "transactions")``,
``stream(seed, "fraud.terminals")``...), so adding or changing one part never shifts the
draws of another: the genuine traffic of a ``realistic`` run equals the ``handbook`` run with
the same seed. Names are hashed with CRC-32 (stable across processes, unlike ``hash``).

>>> a = stream(42, "profiles").random(3)
>>> bool((a == stream(42, "profiles").random(3)).all())
True
>>> bool((a == stream(42, "transactions").random(3)).any())
False
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """A PCG64 generator for ``(seed, name)``; the same pair always gives the same draws."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def sample_per_day(rng: np.random.Generator, n_days: int, population: int, k: int) -> np.ndarray:
    """``k`` distinct members of ``range(population)`` drawn independently for each day.

    Returns an ``(n_days, k)`` integer array (the handbook's daily ``sample(n=k)``).

    >>> draws = sample_per_day(np.random.default_rng(0), 4, 10, 3)
    >>> draws.shape, all(len(set(row)) == 3 for row in draws.tolist())
    ((4, 3), True)
    """
    k = min(k, population)
    if n_days <= 0 or k <= 0:
        return np.zeros((max(n_days, 0), max(k, 0)), dtype=np.int64)
    return np.stack([rng.choice(population, size=k, replace=False) for _ in range(n_days)])
