"""What the reports under ``/api/v1/reports/`` share: their query filters, the route pair
each is served on, and the answer as JSON or CSV.

A report is registered with ``report_route`` under ``path`` (JSON, or CSV with
``Accept: text/csv``) and ``path.csv`` (CSV), one endpoint for both. Its query filters are
query models (``Window``, ``ItemFilter``): FastAPI lists their fields as query parameters
in the place the model stands in the endpoint's signature, so a route declares a filter in
one line and the OpenAPI parameters are those of the fields. The models only hold what was
asked; the endpoint checks it (``Window.bounds``, ``ItemFilter.scope``) in its own order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from server.api.auth import check_site
from server.api.context import Principal
from server.api.history import CSV_MEDIA, SiteParam, bounded, wants_csv
from server.api.params import Sku
from server.api.uploads import csv_download
from server.commands.masterdata import CATEGORY_PATTERN
from server.reports.gc_pause import without_collector
from server.reports.valuation import Method
from server.reports.valuation_reports import Scope

MAX_PERIOD: Final = timedelta(days=3660)
DEFAULT_PERIOD: Final = timedelta(days=30)

AsOf = Annotated[datetime | None, Query(description="Default now; no offset means UTC.")]
Since = Annotated[datetime | None, Query(description="Inclusive; no offset means UTC.")]
Until = Annotated[datetime | None, Query(description="Exclusive; default now.")]
MethodParam = Annotated[Method, Query(description="moving_average (default) or fifo.")]
Category = Annotated[str | None, Query(pattern=CATEGORY_PATTERN, max_length=64)]

Item = TypeVar("Item", bound=BaseModel)


class Window(BaseModel):
    """``since`` and ``until``: the period a report covers."""

    since: Since = None
    until: Until = None

    def bounds(self, default: timedelta, widest: timedelta) -> tuple[datetime, datetime]:
        """The period in UTC: ``default`` long, ending now or where one end says.

        Raises:
            HTTPException: 400 when ``since`` is not before ``until``, or the period is
                longer than ``widest``.
        """
        start, end = bounded(self.since, "since"), bounded(self.until, "until")
        if end is None:
            end = (start + default) if start is not None else datetime.now(UTC)
        if start is None:
            start = end - default
        if start >= end:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "since must be before until")
        if end - start > widest:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"since..until spans more than {widest.days} days"
            )
        return start, end


class ItemFilter(BaseModel):
    """``site``, ``sku`` and ``category``: which books a report lists."""

    site: SiteParam = None
    sku: Sku = None
    category: Category = None

    def scope(self, principal: Principal) -> Scope:
        """The filter narrowed to the key's sites.

        Raises:
            HTTPException: 403 when ``site`` is not one of the key's.
        """
        if self.site is not None:
            check_site(principal, self.site)
        return Scope(site=self.site, sku=self.sku, category=self.category, sites=principal.sites)


WindowParams = Annotated[Window, Query()]
"""``since`` and ``until`` as query parameters."""
ItemParams = Annotated[ItemFilter, Query()]
"""``site``, ``sku`` and ``category`` as query parameters."""


def copied(model: type[Item], row: Any, **computed: Any) -> Item:
    """``model`` with each field taken from ``row``'s attribute of that name, but those in
    ``computed`` (amounts rounded, figures derived)."""
    taken = {name: getattr(row, name) for name in model.model_fields if name not in computed}
    return model(**taken, **computed)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def csv_lines(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> AsyncIterator[str]:
    """``header`` and ``rows`` as CSV (empty for null, ISO 8601 for times), in one chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(_cell(value) for value in row)
    yield buffer.getvalue()


def cells_of(names: Sequence[str]) -> Callable[[Any], list[Any]]:
    """A report item's CSV line: its attributes ``names``, in that order."""
    return lambda item: [getattr(item, name) for name in names]


def answer(
    request: Request,
    report: BaseModel,
    name: str,
    header: Sequence[str],
    flatten: Callable[[Any], Sequence[Any]],
) -> Any:
    """The report as JSON, or its ``items`` as CSV (one line each, ``flatten``ed).

    The JSON is the model's own (pydantic's serializer, by alias as FastAPI writes it): a
    model returned as it is would be validated again and turned into Python objects before
    ``json.dumps``, about ten times the time for a report of 20,000 items.
    """
    if wants_csv(request) or request.url.path.endswith(".csv"):
        lines = [flatten(item) for item in getattr(report, "items")]  # noqa: B009
        return csv_download(csv_lines(header, lines), f"{name}.csv")
    return Response(report.model_dump_json(by_alias=True), media_type="application/json")


def report_route(
    router: APIRouter, path: str, model: type[BaseModel], summary: str
) -> Callable[[Any], Any]:
    """Register a report under ``path`` (JSON, or CSV by Accept) and ``path.csv`` (CSV)."""

    def register(endpoint: Any) -> Any:
        # The collector paused for the whole request, the report's items and their JSON
        # included (``server.reports.gc_pause``): the 20,000 items' models of an aging
        # report at 10M ledger rows started collections (p50 1,475 -> 1,075 ms with the
        # pause here, same file and server).
        paused = without_collector(endpoint)
        router.add_api_route(
            path,
            paused,
            methods=["GET"],
            response_model=model,
            responses={200: {"content": {CSV_MEDIA: {}}}},
            summary=summary,
        )
        router.add_api_route(
            f"{path}.csv",
            paused,
            methods=["GET"],
            response_class=StreamingResponse,
            responses={200: {"content": {CSV_MEDIA: {}}, "description": f"{summary} (CSV)."}},
            summary=f"{summary} (CSV)",
        )
        return endpoint

    return register
