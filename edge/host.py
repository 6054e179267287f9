"""What a gateway's board says about itself: free disk, CPU temperature, Pi throttling.

Read from files, not from tools: ``/sys/class/thermal`` for the CPU temperature and the
Raspberry Pi firmware driver's ``get_throttled`` attribute for under-voltage and
throttling (the same bits ``vcgencmd get_throttled`` prints, without needing the
``vcgencmd`` binary or access to ``/dev/vchiq``). Where a source is absent (a PC, a
container) the value is None, never a guess. Every read is bounded and a file that does
not parse is treated as absent.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

from wire.models import ThrottleFlag

SYS: Final = Path("/sys")
THROTTLED_FILE: Final = "devices/platform/soc/soc:firmware/get_throttled"
"""Relative to ``/sys``: the firmware's throttling bits, in hex (Raspberry Pi kernels)."""
CPU_ZONE_TYPES: Final = ("cpu-thermal", "cpu_thermal", "soc-thermal", "x86_pkg_temp")
"""Thermal zone types that measure the CPU (the Pi's is ``cpu-thermal``)."""
MAX_ZONES: Final = 32
MAX_READ: Final = 64
THROTTLE_BITS: Final[tuple[ThrottleFlag, ...]] = get_args(ThrottleFlag)
"""Bit 0..3 now, and the same 16 bits higher since boot (in this order)."""
SINCE_BOOT_SHIFT: Final = 16


@dataclass(frozen=True, slots=True)
class Throttling:
    now: list[ThrottleFlag]
    since_boot: list[ThrottleFlag]


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return file.read(MAX_READ).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def throttle_flags(bits: int) -> Throttling:
    """Decode the firmware's ``get_throttled`` value."""
    return Throttling(
        now=[flag for i, flag in enumerate(THROTTLE_BITS) if bits >> i & 1],
        since_boot=[
            flag for i, flag in enumerate(THROTTLE_BITS) if bits >> (i + SINCE_BOOT_SHIFT) & 1
        ],
    )


class HostProbe:
    """Reads the board's facts for the status message.

    Args:
        sys_root: where sysfs is mounted (a directory of the same shape in tests).
    """

    def __init__(self, sys_root: Path = SYS) -> None:
        self._sys = sys_root

    def cpu_temp_c(self) -> float | None:
        """The CPU's thermal zone in °C, or None when the board has none."""
        zones = sorted((self._sys / "class" / "thermal").glob("thermal_zone*"))[:MAX_ZONES]
        for zone in zones:
            if _read(zone / "type") not in CPU_ZONE_TYPES:
                continue
            text = _read(zone / "temp")
            try:
                millidegrees = int(text) if text is not None else None
            except ValueError:
                millidegrees = None
            if millidegrees is not None and -100_000 <= millidegrees <= 200_000:
                return round(millidegrees / 1000, 1)
        return None

    def throttling(self) -> Throttling | None:
        """The Pi firmware's throttling flags, or None off a Pi."""
        text = _read(self._sys / THROTTLED_FILE)
        if not text:
            return None
        try:
            bits = int(text, 16)
        except ValueError:
            return None
        return throttle_flags(bits)

    @staticmethod
    def disk_free_bytes(path: Path) -> int | None:
        """Free bytes on the file system holding ``path`` (its folder when it is a file)."""
        folder = path if path.is_dir() else path.parent
        try:
            return shutil.disk_usage(folder if str(folder) else Path(".")).free
        except OSError:
            return None
