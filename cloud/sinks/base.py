from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Item(Generic[T]):
    payload: T
    topic: str
    partition: int
    offset: int
    ctx: Any = None  # caller's handle (e.g. the Kafka message, for dead-lettering)


@dataclass
class FlushResult:
    written: int = 0
    failed: list[tuple[Item, BaseException]] = field(default_factory=list)
    checkpoint: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next offset
    seconds: float = 0.0


class BatchingSink:
    """Buffers items; ``flush`` writes them and returns the checkpoint of everything handed in."""

    def __init__(self) -> None:
        self._items: list[Item] = []
        self._seen: dict[tuple[str, int], int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Item) -> None:
        self._items.append(item)
        self.mark(item.topic, item.partition, item.offset)

    def mark(self, topic: str, partition: int, offset: int) -> None:
        """Record that ``offset`` was consumed even if nothing is buffered for it (a dead-lettered record)."""
        tp = (topic, partition)
        if offset + 1 > self._seen.get(tp, -1):
            self._seen[tp] = offset + 1

    def drop_partitions(self, tps: set[tuple[str, int]]) -> None:
        """Forget buffered items of partitions this instance no longer owns (rebalance)."""
        self._items = [i for i in self._items if (i.topic, i.partition) not in tps]
        for tp in tps:
            self._seen.pop(tp, None)

    def take(self) -> tuple[list[Item], dict[tuple[str, int], int]]:
        """Hand over the buffer and its checkpoint (for a caller that writes them on another thread
        with :meth:`write` while it keeps adding to a fresh buffer)."""
        items, seen = self._items, self._seen
        self._items, self._seen = [], {}
        return items, seen

    def write(self, items: list[Item]) -> FlushResult:
        """Write ``items`` (from :meth:`take`); no buffer state is touched, so it is safe on a worker thread."""
        import time

        t0 = time.perf_counter()
        res = self._write(items) if items else FlushResult()
        res.seconds = time.perf_counter() - t0
        return res

    def flush(self) -> FlushResult:
        import time

        t0 = time.perf_counter()
        items, self._items = self._items, []
        res = self._write(items) if items else FlushResult()
        res.checkpoint = dict(self._seen)
        self._seen.clear()
        res.seconds = time.perf_counter() - t0
        return res

    def _write(self, items: list[Item]) -> FlushResult:  # pragma: no cover - abstract
        raise NotImplementedError
