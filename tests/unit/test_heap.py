"""A booted server process collects garbage less often than CPython's default (cariosan.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cariosan.heap import freeze_booted_heap


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's default, whatever an earlier test booted
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _collections_while_making(objects: int) -> list[int]:
    generations: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    kept: list[list[int]] = []
    gc.collect()
    gc.callbacks.append(seen)
    try:
        for _ in range(objects):
            kept.append([])
    finally:
        gc.callbacks.remove(seen)
    return generations


def test_the_booted_heap_is_frozen_and_young_objects_are_collected_less_often(
    collector_restored: None,
) -> None:
    # The default young threshold (700) collects several times over 5,000 new containers.
    assert _collections_while_making(5_000)

    freeze_booted_heap()

    assert gc.get_freeze_count() > 0
    assert _collections_while_making(5_000) == []
    # Not never: a young collection still comes, once 10,000 have piled up.
    assert _collections_while_making(12_000)[:1] == [0]
