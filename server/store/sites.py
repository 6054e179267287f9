"""Sites: the first segment of a location id, and the SQL that keeps a query inside some.

A site is the root of the location tree (``wh1`` in ``wh1.dock.1``). API keys may be
restricted to sites (``[[api.keys]] sites = [...]``); every query a restricted key runs
is narrowed with ``in_sites`` and every write checks the sites it touches.

Location ids compare bytewise (``server.store.schema.core``), so the subtree of ``wh1`` is ``wh1``
itself plus the half-open range ``["wh1.", "wh1/")`` and an index on the column serves it.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from server.rules.policy import site_of as site_of


def in_sites(column: sa.ColumnElement[str], sites: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column`` holds a location in one of ``sites`` (a site or anything under it).

    An empty ``sites`` matches nothing; callers pass a key's sites only when it has some.
    """
    conditions = [
        sa.or_(column == site, sa.and_(column >= f"{site}.", column < f"{site}/"))
        for site in sorted(set(sites))
    ]
    if not conditions:
        return sa.false()
    return sa.or_(*conditions)
