"""Photo-eye read windows: a portal counts reads only while a pallet is in the door.

A photo-eye across the door is wired to one of the reader's GPI inputs. Its level goes
high when the beam is blocked and low when it clears. With ``gpi_window = true`` a portal
opens a window on high and closes it ``gpi_tail_s`` after low; reads at that portal
outside a window are ignored (the antennas' field reaches past the door and reads goods
that stand nearby). A high during the tail keeps the same window open.

A window that closes without a single read at its portal means a pallet went through
unread (no tags, dead tags, or tags shielded by the load). That is the one case a read
window can detect that nothing else can, and it is reported: ``tick`` returns the closed
window, and the caller logs it, counts it, lists it as a health issue and lights the
"unexpected" light.

Times are the host's monotonic clock when the event or read was handled, not the reader's
timestamps: GPI events and tag reports are separate messages, and tag reports come in
batches (every ``report_timeout_ms``), so the tail must cover that delay; the default one
second is five report intervals. A photo-eye that is already blocked when the reader
connects opens no window until it clears and is blocked again (the reader reports
changes, not levels).

Pure: no I/O and no clock; the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A photo-eye window that has closed."""

    read_point: str
    opened_at: float
    closed_at: float
    reads: int

    @property
    def unread(self) -> bool:
        """No read at all during the window: a pallet went through unread."""
        return self.reads == 0

    @property
    def length_s(self) -> float:
        return self.closed_at - self.opened_at


class ReadWindow:
    """The window state of one portal.

    Args:
        read_point: the portal's read point (for reports).
        tail_s: how long a window stays open after the photo-eye clears.
        max_open_s: a window open longer than this is reported as stuck.
    """

    def __init__(self, read_point: str, tail_s: float, max_open_s: float) -> None:
        if tail_s < 0 or max_open_s <= 0:
            raise ValueError("tail_s must be >= 0 and max_open_s > 0")
        self.read_point = read_point
        self._tail_s = tail_s
        self._max_open_s = max_open_s
        self._blocked = False
        self._opened_at: float | None = None
        self._until: float | None = None
        """End of the tail once the photo-eye has cleared; None while blocked or closed."""
        self.reads = 0
        """Reads admitted in the current window."""
        self.windows = 0
        """Windows closed so far."""
        self.unread = 0
        """Windows closed with no read so far."""

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def gpi(self, high: bool, now: float) -> None:
        """The photo-eye changed: ``high`` is blocked."""
        if high:
            self._blocked = True
            self._until = None
            if self._opened_at is None:
                self._opened_at = now
                self.reads = 0
        elif self._blocked:
            self._blocked = False
            if self._opened_at is not None:
                self._until = now + self._tail_s

    def admit(self, now: float) -> bool:
        """Whether a read at ``now`` counts at this portal (and count it if so)."""
        if self._opened_at is None:
            return False
        until = self._until
        if until is not None and now >= until:
            return False
        self.reads += 1
        return True

    def tick(self, now: float) -> ClosedWindow | None:
        """The window, if its tail ended by ``now``."""
        opened, until = self._opened_at, self._until
        if opened is None or until is None or now < until:
            return None
        self._opened_at = None
        self._until = None
        self.windows += 1
        closed = ClosedWindow(self.read_point, opened, until, self.reads)
        if closed.unread:
            self.unread += 1
        self.reads = 0
        return closed

    def stuck(self, now: float) -> float | None:
        """Seconds the photo-eye has been blocked, when longer than ``max_open_s``."""
        if not self._blocked or self._opened_at is None:
            return None
        open_s = now - self._opened_at
        return open_s if open_s > self._max_open_s else None

    def reset(self, now: float) -> None:
        """Forget the photo-eye's level (the reader reconnected; it reports changes only)."""
        self._blocked = False
        if self._opened_at is not None and self._until is None:
            # Left open: it closes at the next tick, so it is reported and not lost.
            self._until = now
