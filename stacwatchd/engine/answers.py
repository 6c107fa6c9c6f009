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

__all__ = ["packed", "pickle_answers_compactly"]


def _by_fields(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    """A frozen slots dataclass pickled as the call of its constructor. The default
    (``__setstate__``, which looks the fields up again for every object) costs the
    parent ~8 µs more per answer, on the thread that every answer passes through."""
    return type(obj), tuple(getattr(obj, name) for name in obj.__slots__)


_DECODED = BuiltItem.__dict__["item"]  # the slot that holds a BuiltItem's Item


class _PackedBuiltItem(BuiltItem):
    """A ``BuiltItem`` whose Item crossed as marshal bytes and is decoded the first time it
    is asked for. The writer stores a new Item from the JSON its build process rendered
    (``placed``) and needs the Item itself only to render it again (an update, a changed
    placement), so most answers never decode it: the reader thread, through which every
    answer passes, is spared the work, and an answer waiting for the writer holds 2 KB of
    bytes instead of a 10 KB tree of dicts."""

    __slots__ = ("_item_id", "_packed")

    @property  # type: ignore[override]
    def item(self) -> dict[str, Any]:
        try:
            return _DECODED.__get__(self)
        except AttributeError:
            decoded = marshal.loads(self._packed)
            _DECODED.__set__(self, decoded)
            return decoded

    @item.setter
    def item(self, value: dict[str, Any]) -> None:  # the dataclass's __init__, as replace() calls it
        _DECODED.__set__(self, value)

    @property
    def id(self) -> str:
        try:
            return self._item_id
        except AttributeError:  # made by replace(): the Item was given
            return self.item["id"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BuiltItem):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in BuiltItem.__slots__)

    __hash__ = None  # type: ignore[assignment] # as BuiltItem's: an Item is a dict

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return BuiltItem, tuple(getattr(self, name) for name in BuiltItem.__slots__)


def _built_item(item: bytes, item_id: str, *rest: Any) -> BuiltItem:
    built = object.__new__(_PackedBuiltItem)
    object.__setattr__(built, "_packed", item)
    object.__setattr__(built, "_item_id", item_id)
    for name, value in zip(BuiltItem.__slots__[1:], rest, strict=True):
        object.__setattr__(built, name, value)
    return built


def packed(built: BuiltItem, item: bytes, **changes: Any) -> BuiltItem:
    """``built`` with ``changes``, its Item given as marshal bytes: a build process packs
    the Item before rendering it, which changes the Item in place, and so needs neither a
    copy of it to render nor a second packing to answer."""
    fields = {name: changes.get(name, getattr(built, name)) for name in BuiltItem.__slots__[1:]}
    return _built_item(item, built.id, *fields.values())


def _reduce_built_item(built: Any) -> tuple[Any, tuple[Any, ...]]:
    rest = tuple(getattr(built, name) for name in BuiltItem.__slots__[1:])
    if isinstance(built, _PackedBuiltItem):
        try:
            _DECODED.__get__(built)
        except AttributeError:  # still packed: the bytes are the Item
            return _built_item, (built._packed, built.id, *rest)
    try:
        item = marshal.dumps(built.item)
    except ValueError:  # a value of a type marshal does not know: pickle it as it is
        return _by_fields(built)
    return _built_item, (item, built.id, *rest)


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
    for built in (BuiltItem, _PackedBuiltItem):  # registered by exact type, subclasses not included
        ForkingPickler.register(built, _reduce_built_item)
    ForkingPickler.register(Placement, _reduce_placement)
