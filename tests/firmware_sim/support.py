"""Helpers shared by the simulator tests (bounded waits, tag populations)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from edge.config import LlrpSettings
from edge.readers.llrp import LlrpReader
from edge.readers.types import ReaderEvent, ReaderOutput, TagRead
from firmware_sim.portal import ShelfPopulation, TagField
from firmware_sim.reader import ReaderSimulator

S = TypeVar("S", bound="Sighting")
WAIT_S = 10.0
POLL_S = 0.02


def epcs(n: int, base: int = 0) -> list[str]:
    """``n`` distinct 96-bit EPCs (hex)."""
    return [f"3054257bf461a840{base + i:08x}" for i in range(n)]


def shelf(tags: list[str], rate: float = 2000.0) -> TagField:
    return TagField([ShelfPopulation(tags, reads_per_s=rate)])


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``check`` until it holds; bounded in time (and so in count)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


class Sighting(Protocol):
    """A tag read as a client decoded it (the probe's or the edge's)."""

    @property
    def epc_hex(self) -> str: ...

    @property
    def antenna(self) -> int | None: ...

    @property
    def first_seen_us(self) -> int | None: ...

    @property
    def last_seen_us(self) -> int | None: ...


def passes_of(reads: Sequence[S], quiet_s: float) -> dict[str, list[list[S]]]:
    """Each tag's reads split into passes by a quiet gap longer than ``quiet_s``."""
    by_tag: dict[str, list[S]] = defaultdict(list)
    for read in reads:
        by_tag[read.epc_hex].append(read)
    passes: dict[str, list[list[S]]] = {}
    for epc, tag_reads in by_tag.items():
        tag_reads.sort(key=lambda r: r.first_seen_us or 0)
        groups: list[list[S]] = [[tag_reads[0]]]
        for read in tag_reads[1:]:
            last = max(r.last_seen_us or 0 for r in groups[-1])
            if (read.first_seen_us or 0) - last > quiet_s * 1e6:
                groups.append([])
            groups[-1].append(read)
        passes[epc] = groups
    return passes


def direction_of(group: Sequence[Sighting], outside: set[int], inside: set[int]) -> str | None:
    """ "in" when first read outside and last inside, "out" the other way, else None."""
    first = min(group, key=lambda r: r.first_seen_us or 0).antenna
    last = max(group, key=lambda r: r.last_seen_us or 0).antenna
    if first in outside and last in inside:
        return "in"
    if first in inside and last in outside:
        return "out"
    return None


@dataclass
class Seen:
    """Everything the edge's reader yielded, in order, with the time it came."""

    items: list[tuple[float, ReaderOutput]] = field(default_factory=list)

    def reads(self, after: float = 0.0) -> list[TagRead]:
        return [i for t, i in self.items if isinstance(i, TagRead) and t >= after]

    def events(self, kind: str) -> list[ReaderEvent]:
        return [i for _, i in self.items if isinstance(i, ReaderEvent) and i.kind == kind]

    def states(self) -> list[tuple[str | None, str]]:
        return [(e.state, e.detail) for e in self.events("state")]

    def count(self, state: str) -> int:
        return sum(1 for s, _ in self.states() if s == state)

    def when(self, state: str, nth: int = 1) -> float:
        times = [
            t
            for t, i in self.items
            if isinstance(i, ReaderEvent) and i.kind == "state" and i.state == state
        ]
        return times[nth - 1]

    def counts(self) -> Counter[tuple[str, int]]:
        counted: Counter[tuple[str, int]] = Counter()
        for read in self.reads():
            counted[(read.epc_hex, read.antenna)] += read.seen_count
        return counted


def settings(port: int, **values: Any) -> LlrpSettings:
    base: dict[str, Any] = {
        "name": "dock1",
        "host": "127.0.0.1",
        "port": port,
        "keepalive_s": 0.5,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "connect_timeout_s": 2,
    }
    return LlrpSettings(**(base | values))


@contextlib.asynccontextmanager
async def edge_on(sim: ReaderSimulator, **values: Any) -> AsyncIterator[Seen]:
    """The edge's LlrpReader on ``sim``, everything it yields kept until it stops."""
    seen = Seen()
    gpi_ports = values.pop("gpi_ports", ())
    reader = LlrpReader(settings(sim.port, **values), gpi_ports=gpi_ports)

    async def collect() -> None:
        async for item in reader:
            seen.items.append((time.monotonic(), item))

    async with reader:
        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            pass
    await asyncio.wait_for(task, 5.0)
