"""The order test processes run the suite in: heavy tests dealt out to the head of every
worker's slice, nothing lost or repeated."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.ordering import spread_heavy


def _items(kinds: str) -> list[Any]:
    return [
        SimpleNamespace(path=Path(f"tests/{kind}/test_x.py"), name=f"{kind}{n}")
        for n, kind in enumerate(kinds.split())
    ]


def test_heavy_tests_start_every_slice_and_fuzz_comes_before_system() -> None:
    items = _items("unit unit system integration fuzz unit system fuzz integration unit unit unit")
    before = list(items)
    spread_heavy(items, 3)
    assert sorted(i.name for i in items) == sorted(i.name for i in before)
    # 12 items over 3 workers: slices of 4, each opening with its heavy share.
    slices = [items[0:4], items[4:8], items[8:12]]
    assert [s[0].name for s in slices] == ["fuzz4", "fuzz7", "system2"]
    assert slices[0][1].name == "system6"
    # The light ones keep their order.
    light = [i.name for i in items if "unit" in i.name or "integration" in i.name]
    assert light == [i.name for i in before if "unit" in i.name or "integration" in i.name]


def test_one_process_keeps_the_collection_order() -> None:
    items = _items("unit system fuzz")
    names = [i.name for i in items]
    spread_heavy(items, 1)
    assert [i.name for i in items] == names
