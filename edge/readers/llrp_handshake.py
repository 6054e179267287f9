"""Opening and closing an LLRP connection: connect, handshake, goodbye.

The reader speaks first: its READER_EVENT_NOTIFICATION with a ConnectionAttemptEvent
says whether it takes us. Then the handshake asks for its capabilities (model,
firmware, antennas, GPIs and GPOs, the RF tables), checks the configured RF settings
against them *before* anything is changed on the reader (a bad config changes nothing),
switches the Impinj extensions on where the reader has them (falling back to standard
fields if older firmware refuses them, unless a search mode needs them), reads the
antennas' states, sets keepalives and GPI inputs, and replaces whatever ROSpecs and
AccessSpecs the reader holds with ours. GPI ports beyond what the reader has are left
out with a warning and a ``ReaderFault`` instead of failing the handshake, so a wrong
port number never stops the reads.

Each request waits for its response; whatever the reader sends in between (reports,
keepalives, notifications) is handled as usual. A stop sends DELETE_ROSPEC and closes,
bounded by ``STOP_TIMEOUT_S``; reads that arrive on the way still count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from edge.config import LlrpSettings
from edge.errors import ReaderError
from edge.readers import llrp_rospec as requests
from edge.readers.llrp_codec import Decoded, LlrpDecodeError
from edge.readers.llrp_inbound import ERROR_MESSAGE, NOTIFICATION, LlrpInbound
from edge.readers.llrp_link import READ_CHUNK, LlrpLink, decode_frame
from edge.readers.llrp_reports import (
    LlrpError,
    LlrpStatusError,
    antenna_states,
    capabilities,
    check_status,
    notification,
)
from edge.readers.types import ReaderFault

__all__ = [
    "STOP_TIMEOUT_S",
    "WATCHDOG_KEEPALIVES",
    "LlrpHandshakeError",
    "connect",
    "goodbye",
    "handshake",
]

WATCHDOG_KEEPALIVES: Final = 3
"""Keepalive intervals without any message before the connection counts as dead."""
STOP_TIMEOUT_S: Final = 2.0
"""How long a polite stop (DELETE_ROSPEC, then close) may take before we just close."""

_DELETE_ROSPEC_RESPONSE_TYPE: Final = 31


class LlrpHandshakeError(LlrpError):
    """The reader refused the connection or answered a handshake request wrongly."""


async def connect(settings: LlrpSettings) -> LlrpLink:
    """Open a TCP connection to the reader, bounded by ``connect_timeout_s``.

    Raises:
        LlrpHandshakeError: the connection timed out or was refused.
    """
    where = f"{settings.host}:{settings.port}"
    try:
        async with asyncio.timeout(settings.connect_timeout_s):
            stream_reader, writer = await asyncio.open_connection(
                settings.host, settings.port, limit=READ_CHUNK
            )
    except TimeoutError as err:
        raise LlrpHandshakeError(
            f"connecting to {where} timed out after {settings.connect_timeout_s:g} s"
        ) from err
    except OSError as err:
        raise LlrpHandshakeError(f"cannot connect to {where}: {err}") from err
    return LlrpLink(stream_reader, writer, settings.connect_timeout_s)


async def handshake(
    link: LlrpLink, settings: LlrpSettings, gpi_ports: Sequence[int], inbound: LlrpInbound
) -> None:
    """Take the reader's welcome and configure it; ``link.ready`` once it runs our ROSpec.

    The reader's capabilities and antenna states are kept in ``inbound``.

    Raises:
        LlrpHandshakeError: no welcome, a refusal, or a response missing or undecodable.
        LlrpStatusError: the reader refused a request.
        LlrpConfigError: the settings do not fit the reader.
        LlrpConnectionLost, LlrpWatchdogError: the connection failed meanwhile.
    """
    log = inbound.log
    timeout = settings.connect_timeout_s
    await _connection_attempt(link, timeout, inbound)
    caps = capabilities(
        (await _request(link, requests.GET_READER_CAPABILITIES, timeout, inbound)).body
    )
    # Checked before anything is changed on the reader, so a bad config changes nothing.
    add_rospec = requests.add_rospec(settings, caps)
    plan = requests.rf_plan(
        settings, caps, requests.inventory_antennas(settings.antennas, caps.max_antennas)
    )
    inbound.capabilities = caps
    log.info(
        "reader model %s (manufacturer %s), firmware %s, %d antennas; asking for %s",
        caps.model,
        caps.manufacturer,
        caps.firmware,
        caps.max_antennas,
        plan.describe(),
    )
    if plan.impinj:
        try:
            await _request(link, requests.IMPINJ_ENABLE_EXTENSIONS, timeout, inbound)
        except LlrpStatusError as err:
            # Older firmware says Impinj but refuses the extensions: standard fields do.
            if settings.search_mode != "reader_default":
                raise requests.LlrpConfigError(
                    f"reader {inbound.name}: search_mode {settings.search_mode!r} needs "
                    f"Impinj extensions and the reader refused them: {err}"
                ) from err
            log.warning("Impinj extensions refused (%s): standard fields only", err)
            settings = settings.model_copy(update={"impinj_extensions": False})
            add_rospec = requests.add_rospec(settings, caps)
    config = await _request(link, requests.GET_READER_CONFIG, timeout, inbound)
    states = antenna_states(config.body)
    if states:
        inbound.antennas = states
        down = inbound.antennas_disconnected
        if down:
            log.warning("antennas %s are disconnected", down)
    gpis = [port for port in gpi_ports if port <= caps.gpis]
    if len(gpis) != len(gpi_ports):
        problem = (
            f"GPI ports {sorted(set(gpi_ports) - set(gpis))} are beyond the "
            f"reader's {caps.gpis} GPIs: those photo-eyes are not watched"
        )
        log.warning("%s", problem)
        await inbound.emit_one(ReaderFault(inbound.name, problem))
    await _request(link, requests.set_reader_config(settings.keepalive_s, gpis), timeout, inbound)
    link.idle_limit = WATCHDOG_KEEPALIVES * settings.keepalive_s
    await link.send(requests.ENABLE_EVENTS_AND_REPORTS)
    await _request(link, requests.DELETE_ALL_ACCESSSPECS, timeout, inbound)
    await _request(link, requests.DELETE_ALL_ROSPECS, timeout, inbound)
    await _request(link, add_rospec, timeout, inbound)
    await _request(link, requests.ENABLE_OUR_ROSPEC, timeout, inbound)
    link.ready = True


async def _connection_attempt(link: LlrpLink, timeout: float, inbound: LlrpInbound) -> None:
    """Wait for the reader's opening READER_EVENT_NOTIFICATION (the reader speaks first)."""
    try:
        async with asyncio.timeout(timeout):
            frame = await link.next_frame()
    except TimeoutError as err:
        raise LlrpHandshakeError(
            f"no ConnectionAttemptEvent from the reader within {timeout:g} s"
        ) from err
    try:
        decoded = await decode_frame(frame)
    except LlrpDecodeError as err:
        raise LlrpHandshakeError(f"cannot decode the reader's first message: {err}") from err
    if decoded.name != NOTIFICATION:
        raise LlrpHandshakeError(f"reader sent {decoded.name} instead of a ConnectionAttemptEvent")
    note = notification(inbound.name, decoded.body)
    if note.connection_attempt is None:
        raise LlrpHandshakeError(
            "reader's first READER_EVENT_NOTIFICATION has no ConnectionAttemptEvent"
        )
    if note.connection_attempt != "Success":
        raise LlrpHandshakeError(f"reader refused the connection: {note.connection_attempt}")
    inbound.note(note.events)
    await inbound.emit_all(note.events)


async def _request(
    link: LlrpLink, request: requests.Request, timeout: float, inbound: LlrpInbound
) -> Decoded:
    """Send a request and wait for its response, handling whatever comes in between.

    Raises:
        LlrpHandshakeError: no response in time, or one that cannot be decoded.
        LlrpStatusError: the response (or an ERROR_MESSAGE) is not Success.
    """
    try:
        async with asyncio.timeout(timeout):
            await link.send(request)
            while True:
                frame = await link.next_frame()
                try:
                    decoded = await decode_frame(frame)
                except LlrpDecodeError as err:
                    await inbound.decode_error(link, frame, err)
                    continue
                if decoded.name == request.response:
                    check_status(request.response, decoded.body)
                    return decoded
                if decoded.name == ERROR_MESSAGE:
                    check_status(f"ERROR_MESSAGE in reply to {request.name}", decoded.body)
                await inbound.dispatch(link, decoded)
    except TimeoutError as err:
        raise LlrpHandshakeError(f"no {request.response} within {timeout:g} s") from err


async def goodbye(link: LlrpLink, inbound: LlrpInbound) -> None:
    """DELETE_ROSPEC 0 and close, bounded by STOP_TIMEOUT_S; reads on the way still count."""
    try:
        if link.ready and link.usable:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await link.send(requests.DELETE_ALL_ROSPECS)
                while True:
                    frame = await link.next_frame()
                    if frame.msg_type == _DELETE_ROSPEC_RESPONSE_TYPE:
                        break
                    await inbound.handle(link, frame)
    except (TimeoutError, OSError, ReaderError) as err:
        inbound.log.info("no answer to DELETE_ROSPEC on stop: %s", str(err) or repr(err))
    finally:
        await link.close(STOP_TIMEOUT_S / 4)
        inbound.log.info("stopped")
