"""shared.gc_tuning: what is loaded leaves the collector's walks; cycles made later are still collected."""

from __future__ import annotations

import gc
import weakref
from typing import Iterator

import pytest

from shared import gc_tuning


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_freezes_what_is_loaded_and_makes_young_collections_rarer(restored_gc: None) -> None:
    loaded = [_Node()]  # stands for the platform a process builds before it serves

    gc_tuning.settle()

    assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, *gc_tuning.OLDER_THRESHOLDS)
    assert gc.get_freeze_count() > 0
    assert not any(o is loaded for o in gc.get_objects())  # no generation holds it: never walked


def test_a_cycle_made_after_settling_is_still_collected(restored_gc: None) -> None:
    gc_tuning.settle()
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    del first, second

    assert alive() is not None  # reference counting alone cannot free a cycle
    gc.collect()
    assert alive() is None
