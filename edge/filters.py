"""Software read filters: EPC prefixes to keep or drop, and RSSI thresholds per antenna.

They run on every read before any read point sees it, so they are built once from
``[llrp.filter]`` into tuples and dicts and cost a ``startswith`` and a dict lookup per
read. A reader with no filter configured gets none at all (``read_filter`` returns None).

Policy:

* ``exclude`` wins over ``include``; an empty ``include`` keeps every EPC.
* A read below its antenna's threshold (``min_rssi_by_antenna``, else ``min_rssi``) is
  dropped. A read *without* an RSSI (some readers leave it out) is kept: there is nothing
  to judge it by, and dropping every read of such a reader would be worse than keeping a
  weak one.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from edge.config import ReadFilterSettings
from edge.readers.types import TagRead

PREFIX: Final = "prefix"
RSSI: Final = "rssi"


class ReadFilter:
    """Decides whether a read goes on; counts what it drops, by why.

    Args:
        settings: the reader's ``[llrp.filter]`` table.
    """

    def __init__(self, settings: ReadFilterSettings) -> None:
        self._include = tuple(prefix.lower() for prefix in settings.include)
        self._exclude = tuple(prefix.lower() for prefix in settings.exclude)
        self._min_rssi = settings.min_rssi
        self._by_antenna = dict(settings.min_rssi_by_antenna)
        self._checks_rssi = self._min_rssi is not None or bool(self._by_antenna)
        self.dropped: Counter[str] = Counter()
        """Reads dropped so far, by reason (``prefix`` or ``rssi``)."""

    def admits(self, read: TagRead) -> bool:
        """True when ``read`` passes every filter (EPC hex is lowercase from the reader)."""
        epc = read.epc_hex
        if (self._include and not epc.startswith(self._include)) or (
            self._exclude and epc.startswith(self._exclude)
        ):
            self.dropped[PREFIX] += 1
            return False
        if self._checks_rssi and read.rssi is not None:
            threshold = self._by_antenna.get(read.antenna, self._min_rssi)
            if threshold is not None and read.rssi < threshold:
                self.dropped[RSSI] += 1
                return False
        return True


def read_filter(settings: ReadFilterSettings) -> ReadFilter | None:
    """The filter for ``settings``, or None when it would keep every read."""
    return ReadFilter(settings) if settings.active else None
