"""The kind of each test (from its folder), and the order the test processes run them in
(tests/conftest.py applies both)."""

from __future__ import annotations

import pytest

KINDS = ("unit", "integration", "fuzz", "system")


def kind_of(item: pytest.Item) -> str | None:
    parts = item.path.parts
    return next((kind for kind in KINDS if kind in parts), None)


# The kinds whose tests take seconds to minutes each (schema fuzz parts, real processes), the
# slowest kind first.
_HEAVY_KINDS = ("fuzz", "system")


def spread_heavy(items: list[pytest.Item], workers: int) -> None:
    """Spread the heavy tests over the test processes, each process's share first.

    pytest-xdist (`--dist worksteal`) hands each worker a contiguous slice of the collection and
    later moves tests that have not started from busy workers to idle ones. With the heavy tests
    in a few slices, one worker would run several minute-long fuzz parts in a row at the end of
    the run; dealt out like cards at the head of every slice, they start at once, side by side,
    and the quick tests fill the gaps. Every worker computes the same order (xdist requires it).
    """
    if workers < 2:
        return
    heavy = sorted(
        (i for i in items if kind_of(i) in _HEAVY_KINDS),
        key=lambda i: _HEAVY_KINDS.index(kind_of(i) or ""),
    )
    light = [i for i in items if kind_of(i) not in _HEAVY_KINDS]
    # The slice sizes xdist's work-stealing scheduler gives out (remaining // workers left).
    sizes, remaining = [], len(items)
    for left in range(workers, 0, -1):
        sizes.append(remaining // left)
        remaining -= sizes[-1]
    slices: list[list[pytest.Item]] = [[] for _ in sizes]
    for n, item in enumerate(heavy):
        slices[n % workers].append(item)
    rest = iter(light)
    for size, part in zip(sizes, slices, strict=True):
        part.extend(next(rest) for _ in range(max(0, size - len(part))))
    ordered = [item for part in slices for item in part] + list(rest)
    items[:] = ordered
