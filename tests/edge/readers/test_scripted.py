"""The reader port's in-repo fake: it plays its script, pauses, fails when told, idles."""

from __future__ import annotations

import asyncio

import pytest

from edge.readers.port import Reader
from edge.readers.scripted import ScriptedReader
from edge.readers.types import ReaderFault, StateChanged, TagRead

READ = TagRead(
    reader="dock1", epc_hex="ab" * 12, antenna=1, rssi=-50.0, first_seen_us=1, last_seen_us=1
)


async def take(reader: Reader, count: int) -> list[object]:
    got: list[object] = []
    async for item in reader:
        got.append(item)
        if len(got) == count:
            break
    return got


async def test_plays_its_script_in_order_and_its_status_follows_the_states() -> None:
    down = StateChanged("dock1", "error", detail="connection refused")
    fault = ReaderFault("dock1", "reader overheated")
    reader = ScriptedReader("dock1", [READ, 0.01, down, fault], end=True)
    async with reader:
        assert reader.status().state == "connected"
        got = [item async for item in reader]
    assert got == [READ, down, fault]
    assert reader.entered
    assert reader.closed
    assert reader.done.is_set()
    assert reader.yielded == 3
    status = reader.status()
    assert (status.name, status.kind, status.state) == ("dock1", "llrp", "error")


async def test_idles_after_its_script_like_a_real_reader() -> None:
    reader = ScriptedReader("dock1", [READ])
    async with reader:
        stream = aiter(reader)
        assert await anext(stream) == READ
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await anext(stream)
    assert reader.done.is_set()


async def test_fails_when_told_to() -> None:
    broken = ScriptedReader("dock1", fail_on_enter=OSError("no such port"))
    with pytest.raises(OSError, match="no such port"):
        async with broken:
            pass
    assert not broken.entered

    failing = ScriptedReader("dock1", [READ, RuntimeError("stream lost"), READ])
    async with failing:
        stream = aiter(failing)
        assert await anext(stream) == READ
        with pytest.raises(RuntimeError, match="stream lost"):
            await anext(stream)
    assert failing.yielded == 1
    assert not failing.done.is_set()


async def test_a_scanner_too() -> None:
    fault = ReaderFault("hand-1", "malformed")
    scanner = ScriptedReader("hand-1", [fault], kind="serial", end=True)
    async with scanner:
        assert await take(scanner, 1) == [fault]
    assert scanner.status().kind == "serial"
