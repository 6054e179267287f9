"""What the Stock page's search box means: a scan, a location, a SKU, or part of a name.

A USB barcode scanner types into the box like a keyboard, so the text is first read as a
scan with the scanners' own parser (``wire.barcodes``): a location label (``LOC:wh1.a.3``)
searches that location's subtree, a GS1 element string or bare EAN/UPC/GTIN searches that
GTIN. Text that is no scan is, in turn, an existing location id, an existing SKU, or a
case-insensitive part of item SKUs and names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.items import ItemFilter, get_item, list_items
from server.commands.locations import get_location
from server.errors import ServerError
from server.queries.stock import StockQuery, stock
from server.queries.views import StockRow
from wire.barcodes import parse_barcode
from wire.scans import BarcodeError, CommandScan, LocationScan, PalletScan

MAX_QUERY: Final = 200
"""Characters of search text taken (a GS1-128 label is well under it)."""
MAX_ROWS: Final = 200
"""Stock rows shown for one search."""
MAX_NAME_MATCHES: Final = 20
"""Items a name search looks at."""


class SearchError(ServerError, ValueError):
    """The search text cannot be searched; ``str`` says why, for the person at the box."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What the text was taken as (for the page to say) and the stock rows found."""

    taken_as: str
    rows: list[StockRow] = field(default_factory=list)
    total: int = 0


def clean(text: str) -> str:
    """The text with surrounding blanks removed, bounded and free of control characters
    other than GS (the GS1 field separator a scanner may send)."""
    text = text.strip()
    if len(text) > MAX_QUERY:
        raise SearchError(f"the search is {len(text)} characters long; at most {MAX_QUERY}")
    bad = [c for c in text if (ord(c) < 0x20 and c != "\x1d") or ord(c) == 0x7F]
    if bad:
        raise SearchError(f"the search holds a control character ({ord(bad[0]):#04x})")
    return text


async def search_stock(conn: AsyncConnection, text: str, sites: frozenset[str]) -> SearchResult:
    """Stock matching ``text`` (see the module docstring), narrowed to ``sites``.

    Raises:
        SearchError: the text is too long, holds control characters, is a command barcode,
            or is a scan with a bad value (the message names it).
    """
    text = clean(text)
    if not text:
        return SearchResult(
            "everything", *await stock(conn, StockQuery(limit=MAX_ROWS, sites=sites))
        )
    try:
        scan = parse_barcode(text)
    except BarcodeError as err:
        scan = None
        reason = str(err)
    else:
        reason = ""
    if isinstance(scan, CommandScan):
        raise SearchError(f"{text!r} is a scanner command ({scan.command}), not something to find")
    if isinstance(scan, LocationScan):
        return await _at(conn, scan.location, sites, "location label")
    if isinstance(scan, PalletScan):
        raise SearchError(
            f"{text!r} is pallet SSCC {scan.sscc}: what it holds is at "
            f"/api/v1/aggregations/{scan.sscc}"
        )
    if scan is not None:
        rows, total = await stock(conn, StockQuery(gtin=scan.gtin, limit=MAX_ROWS, sites=sites))
        return SearchResult(f"GTIN {scan.gtin}", rows, total)
    if await get_location(conn, text) is not None:
        return await _at(conn, text, sites, "location")
    if await get_item(conn, text) is not None:
        rows, total = await stock(conn, StockQuery(sku=text, limit=MAX_ROWS, sites=sites))
        return SearchResult(f"SKU {text}", rows, total)
    if text.isdigit() and reason:
        # Digits that are no valid GTIN: say why rather than searching names for them.
        raise SearchError(reason)
    found, _ = await list_items(conn, ItemFilter(search=text), None, MAX_NAME_MATCHES)
    result = SearchResult(f"name or SKU containing {text!r}")
    for item in found:
        rows, total = await stock(
            conn, StockQuery(sku=item.sku, limit=MAX_ROWS - len(result.rows), sites=sites)
        )
        result.rows.extend(rows)
        if len(result.rows) >= MAX_ROWS:
            break
    return SearchResult(result.taken_as, result.rows, len(result.rows))


async def _at(
    conn: AsyncConnection, location: str, sites: frozenset[str], what: str
) -> SearchResult:
    rows, total = await stock(conn, StockQuery(location=location, limit=MAX_ROWS, sites=sites))
    return SearchResult(f"{what} {location}", rows, total)
