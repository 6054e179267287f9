"""TCP with asyncio streams, as the edge and the simulators both use it.

``listen`` starts a server on a port that may be 0 and says which port it got;
``close_writer`` closes a stream without hanging on a peer that never finishes the close
(a reset or the time running out ends the wait quietly: the connection is gone either way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(
    handler: ClientHandler, host: str, port: int, *, limit: int | None = None
) -> tuple[asyncio.Server, int]:
    """A server calling ``handler`` for each client on ``host``:``port`` (0: a free
    port), with ``SO_REUSEADDR`` so it can listen again at once on the same port; with
    the port it listens on.

    Args:
        handler: the coroutine run for each connection.
        host: address to listen on.
        port: TCP port; 0 picks a free one.
        limit: the streams' buffer limit (asyncio's default when None).
    """
    if limit is None:
        server = await asyncio.start_server(handler, host, port, reuse_address=True)
    else:
        server = await asyncio.start_server(handler, host, port, limit=limit, reuse_address=True)
    port_now: int = server.sockets[0].getsockname()[1]
    return server, port_now


async def close_writer(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close ``writer`` and wait at most ``timeout`` seconds for the close to finish."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
