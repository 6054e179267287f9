"""A portal's light stack on the reader's GPO outputs.

Three signals, each on its own output (``[portals.lights]``), each optional:

* **accepted**: pulsed for ``pulse_s`` when a pass ends with a direction and at least
  ``min_confidence``;
* **unexpected**: pulsed when a pass ends without a direction or below
  ``min_confidence``, and when a photo-eye window closes with no read (a pallet went
  through unread). At a door with a photo-eye window, passes only exist while a window
  was open, so this is exactly "something passed and we could not tell what";
* **offline**: on while the gateway has no broker connection (reads are still buffered;
  the light tells the dock staff that the office does not see them yet).

One task per light stack owns the outputs: callers only queue requests (never blocking
the read path), and the task writes them, switches pulses off when they run out, watches
the broker connection, and writes every output again after the reader reconnects (a
reader may reset its outputs on a new connection). Lights are a courtesy: a write the
reader cannot take is logged and the next change tries again; a full request queue drops
the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final, Protocol, runtime_checkable

from edge.config import LightSettings

log = logging.getLogger(__name__)

POLL_S: Final = 0.5
"""How often the broker connection is looked at for the offline light."""
QUEUE_SIZE: Final = 64

_REASSERT: Final = -1


@runtime_checkable
class GpoWriter(Protocol):
    """What a light stack needs of a reader (``LlrpReader`` is one)."""

    async def write_gpo(self, writes: Sequence[tuple[int, bool]]) -> bool: ...


class LightStack:
    """The light stack of one portal.

    Args:
        read_point: the portal (for logs).
        settings: which output does what.
        writer: the reader whose GPO outputs drive the lights.
        online: whether the broker link is up now.
    """

    def __init__(
        self,
        read_point: str,
        settings: LightSettings,
        writer: GpoWriter,
        online: Callable[[], bool],
    ) -> None:
        self.read_point = read_point
        self.settings = settings
        self._writer = writer
        self._online = online
        self._requests: asyncio.Queue[int] = asyncio.Queue(QUEUE_SIZE)
        self._off_at: dict[int, float] = {}
        self._level: dict[int, bool] = {}
        self.pulses = 0
        self.dropped = 0

    # -- requests (synchronous, from the read path) -----------------------------------

    def accepted(self) -> None:
        """A pass with a direction and enough confidence ended."""
        if self.settings.accepted is not None:
            self._ask(self.settings.accepted)

    def unexpected(self) -> None:
        """A pass without direction or confidence ended, or a window closed unread."""
        if self.settings.unexpected is not None:
            self._ask(self.settings.unexpected)

    def signal_pass(self, direction: str | None, confidence: float) -> None:
        """Light ``accepted`` or ``unexpected`` for a pass that just ended."""
        if direction is not None and confidence >= self.settings.min_confidence:
            self.accepted()
        else:
            self.unexpected()

    def reassert(self) -> None:
        """Write every output again (after the reader reconnected)."""
        self._ask(_REASSERT)

    def _ask(self, request: int) -> None:
        try:
            self._requests.put_nowait(request)
        except asyncio.QueueFull:
            self.dropped += 1

    # -- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the outputs until cancelled; switches them all off on the way out."""
        loop = asyncio.get_running_loop()
        offline_port = self.settings.offline
        ports = [
            p
            for p in (self.settings.accepted, self.settings.unexpected, offline_port)
            if p is not None
        ]
        self._level = dict.fromkeys(ports, False)
        await self._write([(port, False) for port in ports])
        try:
            while True:
                now = loop.time()
                wait = POLL_S
                if self._off_at:
                    wait = min(wait, max(0.0, min(self._off_at.values()) - now))
                request: int | None = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        request = await self._requests.get()
                await self._step(request, loop.time(), offline_port)
        finally:
            lit = [(port, False) for port, on in self._level.items() if on]
            if lit:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._write(lit))

    async def _step(self, request: int | None, now: float, offline_port: int | None) -> None:
        writes: dict[int, bool] = {}
        if request == _REASSERT:
            writes.update(self._level)
        elif request is not None:
            self.pulses += 1
            self._off_at[request] = now + self.settings.pulse_s
            if not self._level.get(request):
                writes[request] = True
        for port, at in list(self._off_at.items()):
            if at <= now:
                del self._off_at[port]
                writes[port] = False
        if offline_port is not None:
            offline = not self._online()
            if offline != self._level.get(offline_port):
                writes[offline_port] = offline
                log.info("portal %s: offline light %s", self.read_point, "on" if offline else "off")
        if writes:
            self._level.update(writes)
            await self._write(sorted(writes.items()))

    async def _write(self, writes: list[tuple[int, bool]]) -> None:
        if writes and not await self._writer.write_gpo(writes):
            log.debug("portal %s: lights %s not written now", self.read_point, writes)
