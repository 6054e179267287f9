"""The benchmark gateway's edge config, in a module light enough for the memory probe.

Only ``edge.config`` and ``plumbing.settings`` are imported here, so the fresh process that
measures resident memory loads nothing an edge agent would not load itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from edge.config import EdgeSettings
from plumbing.settings import load

GATEWAY: Final = "gw-bench-1"
SITE: Final = "wh1"
READER: Final = "dock1"
READ_POINT: Final = "wh1.dock.1"
OUTSIDE_ANTENNA: Final = 1
INSIDE_ANTENNA: Final = 2
READ_FILTER: Final[dict[str, object]] = {"include": ["30"], "min_rssi": -80.0}
"""The reader's software filter: SGTIN-96 tags only (header 0x30), nothing weaker than
-80 dBm. Every read of the benchmark stream passes it, so its full cost is paid per read."""
DEFAULT_LLRP_PORT: Final = 5084


def edge_settings(
    outbox: Path, *, mqtt_url: str | None = None, reader_port: int = DEFAULT_LLRP_PORT
) -> EdgeSettings:
    """One reader with a software filter, one dock-door portal (antenna 1 outside, antenna 2
    inside, default timings), the outbox at ``outbox``."""
    values: dict[str, object] = {
        "gateway": {"id": GATEWAY, "site": SITE},
        "buffer": {"path": str(outbox)},
        "llrp": [{"name": READER, "host": "127.0.0.1", "port": reader_port, "filter": READ_FILTER}],
        "portals": [
            {
                "read_point": READ_POINT,
                "reader": READER,
                "outside_antennas": [OUTSIDE_ANTENNA],
                "inside_antennas": [INSIDE_ANTENNA],
            }
        ],
    }
    if mqtt_url is not None:
        values["mqtt"] = {"url": mqtt_url}
    return load(EdgeSettings, None, **values)
