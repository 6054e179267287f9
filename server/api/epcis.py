"""EPCIS 2.0: ``GET /api/v1/epcis/events`` (query), ``POST /api/v1/epcis/capture`` (capture),
and ``GET /api/v1/purchase-orders/{id}/asn`` (a purchase order's shipping notice reconciled).

Query parameters follow the GS1 EPCIS 2.0 names (``server.epcis.query``); a list parameter
may be repeated or hold several values separated by ``|``, as the GS1 REST binding writes
them. The next page is in the ``Link`` header (``rel="next"``) and in
``GS1-Next-Page-Token``; the body is always a schema-valid ``EPCISQueryDocument``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse

from server.api.auth import Context, Operator, Viewer, check_site
from server.api.cursor import MAX_CURSOR_LENGTH, encode_cursor
from server.api.event_pages import position
from server.api.params import EPC_PATTERN, MAX_PAGE, as_utc
from server.api.read_points import Catalog
from server.api.uploads import read_body
from server.commands.asn import AsnReport, asn_report
from server.commands.pallets import release_held
from server.config.epcis import EpcisSettings
from server.epcis.capture import CaptureSummary, capture
from server.epcis.capture_document import CaptureRefused
from server.epcis.documents import query_document
from server.epcis.query import EpcisQuery, bare_step, query_events
from wire.cbv import CBV_STEPS
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["epcis"])
MAX_LIST_VALUES = 100
EPC_PATTERN_RE = re.compile(r"^urn:epc:idpat:[a-z0-9]+:[A-Za-z0-9.%_-]*\*?$")
EPC_RE = re.compile(EPC_PATTERN)
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s|]+$")
EPCIS_VERSION_HEADER = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
MEDIA_TYPES = ("application/json", "application/ld+json")

ListParam = Annotated[list[str] | None, Query(max_length=MAX_LIST_VALUES)]


def _settings(request: Request) -> EpcisSettings:
    return cast(EpcisSettings, request.app.state.epcis)


def _values(name: str, given: list[str] | None) -> list[str]:
    values = [value for entry in given or () for value in entry.split("|") if value]
    if len(values) > MAX_LIST_VALUES:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"{name}: at most {MAX_LIST_VALUES} values"
        )
    for value in values:
        if len(value) > 1000:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name}: a value is too long")
    return values


@router.get(
    "/epcis/events",
    responses={
        200: {
            "description": "An EPCISQueryDocument (EPCIS 2.0 JSON-LD).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        400: {"description": "A query parameter is wrong; the reason names it."},
    },
)
async def get_epcis_events(
    request: Request,
    context: Context,
    principal: Viewer,
    GE_eventTime: Annotated[
        datetime | None, Query(description="Inclusive; no offset means UTC.")
    ] = None,
    LT_eventTime: Annotated[
        datetime | None, Query(description="Exclusive; no offset means UTC.")
    ] = None,
    EQ_bizStep: ListParam = None,
    MATCH_epc: ListParam = None,
    EQ_bizLocation: ListParam = None,
    nextPageToken: Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR_LENGTH)] = None,
    perPage: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """ObjectEvents of the ledger as an EPCISQueryDocument, oldest first.

    Portal receipts and shipments, moves, counts (``cycle_counting``) and adjustments (CBV
    dispositions ``damaged``, ``stolen``, ``expired``, ...); read points and business
    locations as SGLNs where the location master data has one. A key restricted to sites
    sees the rows of its sites.
    """
    settings = _settings(request)
    since, until = as_utc(GE_eventTime, "GE_eventTime"), as_utc(LT_eventTime, "LT_eventTime")
    if since is not None and until is not None and since >= until:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "GE_eventTime must be before LT_eventTime")
    steps = {bare_step(value) for value in _values("EQ_bizStep", EQ_bizStep)}
    unknown = sorted(steps - CBV_STEPS)
    if unknown:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"EQ_bizStep: not CBV business steps: {unknown}"
        )
    epcs = _values("MATCH_epc", MATCH_epc)
    for epc in epcs:
        if not (EPC_RE.fullmatch(epc) or EPC_PATTERN_RE.fullmatch(epc)):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"MATCH_epc: {epc!r} is neither an EPC URN nor an urn:epc:idpat: pattern",
            )
    places = _values("EQ_bizLocation", EQ_bizLocation)
    for place in places:
        if not URI_RE.fullmatch(place):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"EQ_bizLocation: {place!r} is not a URI"
            )
    after = position(nextPageToken, "nextPageToken")
    query = EpcisQuery(
        since=since,
        until=until,
        biz_steps=frozenset(steps),
        epcs=tuple(epcs),
        biz_locations=tuple(places),
        after=after,
        limit=perPage,
        max_scan=settings.max_scan_rows,
        sites=principal.sites,
    )
    async with context.store.read("querying EPCIS events") as conn:
        page = await query_events(conn, query)
    headers = dict(EPCIS_VERSION_HEADER)
    if page.next_position is not None:
        token = encode_cursor(*page.next_position)
        headers["GS1-Next-Page-Token"] = token
        headers["Link"] = f'<{request.url.include_query_params(nextPageToken=token)}>; rel="next"'
    document = query_document(page.events, now_utc())
    return JSONResponse(document, headers=headers)


CAPTURE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {media: {"schema": {"type": "object"}} for media in MEDIA_TYPES},
        "description": "An EPCIS 2.0 EPCISDocument.",
    }
}


@router.post(
    "/epcis/capture",
    response_model=CaptureSummary,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=CAPTURE_BODY,
    responses={
        200: {"description": "The same document was captured before; its first answer."},
        413: {"description": "The document is too large."},
        415: {"description": "Not sent as JSON."},
        422: {"description": "Not an EPCIS 2.0 document capture takes; the reason says why."},
    },
)
async def capture_epcis(
    request: Request, context: Context, catalog: Catalog, principal: Operator
) -> Any:
    """Capture a partner's EPCIS document: shipping ObjectEvents naming an open purchase
    order (business transaction of type ``po``) become its advance shipping notice;
    AggregationEvents of pallets (SSCC ``parentID``) record what the pallets hold, and the
    pallets' events held while that was unknown are applied.

    Other events are accepted and listed under ``skipped`` with the reason. Sending the
    same document again changes nothing and returns the first answer with status 200.
    """
    settings = _settings(request)
    body = await read_body(
        request,
        media_types=MEDIA_TYPES,
        limit=settings.max_capture_bytes,
        wrong_type="send the EPCIS document with Content-Type: application/json or "
        "application/ld+json",
        what="document",
    )
    store = context.store
    table = await catalog.table()
    created: set[str] = set()
    try:
        async with store.begin("capturing an EPCIS document") as conn:
            now = now_utc()
            summary = await capture(
                conn, body, settings, actor=principal.name, sites=principal.sites, now=now
            )
            for sscc in [] if summary.replayed else summary.pallets:
                released = await release_held(
                    conn,
                    sscc,
                    read_points=table,
                    known_locations=store.known_locations,
                    now=now,
                    policy=context.policy,
                    sites=principal.sites,
                )
                created |= released.new_locations
        store.known_locations.update(created)
    except CaptureRefused as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err
    code = status.HTTP_200_OK if summary.replayed else status.HTTP_201_CREATED
    return JSONResponse(summary.model_dump(mode="json"), status_code=code)


@router.get(
    "/purchase-orders/{order_id}/asn",
    response_model=AsnReport,
    tags=["purchase orders"],
    responses={404: {"description": "No such purchase order."}},
)
async def get_asn(
    context: Context,
    principal: Viewer,
    order_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> AsnReport:
    """The order's advance shipping notice against what the portals received: units
    listed, received and missing per item, and the missing EPCs."""
    async with context.store.read("reconciling a shipping notice") as conn:
        report = await asn_report(conn, order_id)
    if report is None or not principal.allows(report.site):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no purchase order {order_id}")
    check_site(principal, report.site)
    return report
