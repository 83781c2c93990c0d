"""Time-ordered message ids (UUIDv7), made by the server and by the Python SDK alike."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from cariosan.domain.ids import time_ordered_id
from cariosan_client.ids import new_message_id

MAKERS: dict[str, Callable[[], uuid.UUID]] = {
    "server": time_ordered_id,
    "sdk": lambda: uuid.UUID(new_message_id()),
}


@pytest.mark.parametrize("maker", list(MAKERS))
def test_ids_are_version_7_with_the_time_in_front(maker: str) -> None:
    before = time.time_ns() // 1_000_000
    made = MAKERS[maker]()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


@pytest.mark.parametrize("maker", list(MAKERS))
def test_later_ids_sort_after_earlier_ones_and_none_repeat(maker: str) -> None:
    first = [MAKERS[maker]() for _ in range(1000)]
    time.sleep(0.002)
    second = [MAKERS[maker]() for _ in range(1000)]
    assert max(first) < min(second)
    assert len(set(first + second)) == 2000
