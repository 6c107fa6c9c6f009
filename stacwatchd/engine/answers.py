"""How a build process's answers cross to the parent: cheaper to decode than pickle's defaults.

Every answer is decoded on the parent's side, in the one process whose CPU caps the
whole scan, so the forms are chosen for decoding there: frozen dataclasses as constructor
calls, an Item as marshal bytes, the catalog placement (the same for every answer) made
once. The functions live in this module, not in ``build_process`` (which runs as
``__main__``), so that the parent finds them by name.
"""

from __future__ import annotations

import functools
import marshal
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from stacwatchd.model.datetimes import Timing
from stacwatchd.model.results import BuiltItem, Rejection
from stacwatchd.model.sources import Sources
from stacwatchd.stac.placed import PlacedItem, Placement
from stacwatchd.stac.summaries import ItemIndex

__all__ = ["pickle_answers_compactly"]


def _by_fields(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    """A frozen slots dataclass pickled as the call of its constructor. The default
    (``__setstate__``, which looks the fields up again for every object) costs the
    parent ~8 µs more per answer, on the thread that every answer passes through."""
    return type(obj), tuple(getattr(obj, name) for name in obj.__slots__)


def _built_item(item: bytes, *rest: Any) -> BuiltItem:
    """A ``BuiltItem`` whose Item crossed as marshal bytes: half the decoding of pickle's."""
    return BuiltItem(marshal.loads(item), *rest)


def _reduce_built_item(built: Any) -> tuple[Any, tuple[Any, ...]]:
    try:
        item = marshal.dumps(built.item)
    except ValueError:  # a value of a type marshal does not know: pickle it as it is
        return _by_fields(built)
    return _built_item, (item, *(getattr(built, name) for name in built.__slots__[1:]))


@functools.lru_cache(maxsize=64)
def _placement(root: str, root_title: str, collection_title: str, partition: str) -> Placement:
    """The placement the parent sent, made once per distinct value (a Path to parse)."""
    return Placement(Path(root), root_title, collection_title, partition)


def _reduce_placement(placement: Any) -> tuple[Any, tuple[Any, ...]]:
    return _placement, (str(placement.root), placement.root_title, placement.collection_title, placement.partition)


def pickle_answers_compactly() -> None:
    """Make this process (a build process) pickle its answers in the forms above."""
    for cls in (Rejection, Sources, Timing, PlacedItem, ItemIndex):
        ForkingPickler.register(cls, _by_fields)
    ForkingPickler.register(BuiltItem, _reduce_built_item)
    ForkingPickler.register(Placement, _reduce_placement)
