"""What the rules need to know of a read point and of location ids, declared here so the
rules depend on nothing above them (docs/architecture.md §2): the config's
``ReadPointSettings`` satisfies ``ReadPoint`` as it is, and the config takes its location
limits from here."""

from __future__ import annotations

from typing import Literal, Protocol

LOCATION_PATTERN = r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,7}$"
"""A location id: dotted path from site to bin, e.g. ``wh1.dock.1`` (at most 8 levels)."""
MAX_LOCATION_LENGTH = 128

Outbound = Literal["ship", "ignore"]
"""What an outbound pass (direction ``out``) at a read point means: ``ship`` takes the goods
out of the site; ``ignore`` records the event (its id) with no stock effect."""


class ReadPoint(Protocol):
    """A read point as the rules see it (read-only)."""

    @property
    def id(self) -> str: ...

    @property
    def inbound_location(self) -> str:
        """Where a pass with direction ``in`` receives the goods."""

    @property
    def outbound(self) -> Outbound: ...

    @property
    def site(self) -> str | None:
        """The site it belongs to, when configured (else its inbound location's)."""

    @property
    def missing_after_s(self) -> float | None:
        """A shelf: how long a departed unit may go unread before it is missing."""
