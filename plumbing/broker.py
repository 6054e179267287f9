"""An in-process MQTT broker (amqtt) for the single-box default and the demo.

Production sites run Mosquitto or a cluster (see deploy/); this broker exists so that
`stockgate demo` and a server with ``[mqtt] url = "embedded"`` need nothing installed.
It listens on loopback only and allows anonymous clients, which is why it is not offered
for anything but a single machine.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt on 127.0.0.1; ``port=0`` picks a free port (exposed as ``.port``/``.url``)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_loopback_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                },
            }
        )

    async def __aenter__(self) -> EmbeddedBroker:
        await self._broker.start()
        log.info("embedded MQTT broker listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._broker.shutdown()
