"""Whether the system clock is synchronised, as the kernel knows it (``adjtimex``).

Every event is stamped with the system clock, and a Raspberry Pi has no clock battery: it
boots with the time it had when it was last shut down (or 1970) until NTP sets it. The
kernel keeps the answer: an NTP client (systemd-timesyncd, chrony, ntpd) that disciplines
the clock clears ``STA_UNSYNC`` in the kernel's time status, and ``adjtimex`` then returns
something other than ``TIME_ERROR``. That is what ``systemd-time-wait-sync`` waits for
too, so the agent and the systemd unit (``After=time-sync.target``) agree.

With ``[gateway] wait_for_time_sync_s`` above 0 the agent waits up to that long for it
before starting its readers (no event is stamped meanwhile), then starts anyway, listing
the critical issue ``clock_unsynchronised`` while the kernel still says so; the server's
``[ingest] max_clock_skew_s`` quarantines events from the future either way.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from typing import Final

log = logging.getLogger(__name__)

TIME_ERROR: Final = 5
"""``adjtimex``'s return value while the clock is not synchronised."""
POLL_S: Final = 1.0


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (Linux): the fields up to ``tai`` and its padding.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def clock_synchronised() -> bool | None:
    """True or False as the kernel says; None where it cannot be asked (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    timex = _Timex()  # modes 0: read only
    state = int(libc.adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    return state != TIME_ERROR


async def wait_for_sync(limit_s: float) -> bool:
    """Wait up to ``limit_s`` for a synchronised clock; whether it is (or cannot be known)."""
    waited = 0.0
    while (synced := clock_synchronised()) is False and waited < limit_s:
        if waited % 10 == 0:
            log.warning(
                "the system clock is not synchronised (NTP); waiting up to %.0f s more before "
                "stamping events",
                limit_s - waited,
            )
        await asyncio.sleep(POLL_S)
        waited += POLL_S
    if synced is False:
        log.error(
            "ALARM the system clock is still not synchronised after %.0f s; starting with it "
            "(the server quarantines events stamped in the future)",
            limit_s,
        )
        return False
    return True
