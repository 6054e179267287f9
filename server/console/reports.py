"""The console's Reports page: every report route of the API, and replenishment.

The list is not written down here: it is every ``GET /api/v1/reports/...`` route the
application has (``.csv`` twins left out), with the first line of its description, so a
report added to the API shows up on the page without a change to the console. A report's
page (``/reports/{name}``) offers the route's own query parameters as a form, asks the
route in-process as the signed-in person, and shows its answer generically: the plain
fields as a list, each list of records as a table. ``/reports/{name}.csv`` makes CSV of
those same tables (the first list of records in the answer), whatever the route offers.

Replenishment: the planner's draft purchase orders with their lines and, for an operator,
a button that confirms a draft (``POST /api/v1/replenishment/drafts/{id}/confirm``); and
the items at or below their reorder point (``/api/v1/replenishment/plans?below=true``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import Response
from markupsafe import Markup

from server.console.charts import ranking_chart
from server.console.web import (
    api,
    back_to,
    base_values,
    page,
    secure,
    session_of,
    to_sign_in,
    writer,
)

router = APIRouter(include_in_schema=False)

REPORTS_PREFIX: Final = "/api/v1/reports/"
NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_PARAMS: Final = 16
"""Query parameters passed on to a report at most."""
DRAFTS_SHOWN: Final = 20
PLANS_SHOWN: Final = 100


@dataclass(frozen=True, slots=True)
class ReportRoute:
    """A report the API serves: its name, what it is, and its query parameters."""

    name: str
    title: str
    summary: str
    params: tuple[tuple[str, str], ...]
    """(name, default as text) of each query parameter."""


def report_routes(app: FastAPI) -> dict[str, ReportRoute]:
    """Every ``GET /api/v1/reports/<name>`` of ``app``, by name.

    Read from the OpenAPI document (built once and cached by FastAPI), which names each
    route's query parameters and their defaults whatever way the routes were included.
    """
    found: dict[str, ReportRoute] = {}
    for path, operations in app.openapi().get("paths", {}).items():
        operation = operations.get("get")
        if operation is None or not path.startswith(REPORTS_PREFIX):
            continue
        if path.endswith(".csv") or "{" in path:
            continue
        name = path.removeprefix(REPORTS_PREFIX)
        text = str(operation.get("description") or operation.get("summary") or "").strip()
        params = tuple(
            (str(param["name"]), _default(param.get("schema", {}).get("default")))
            for param in operation.get("parameters", [])
            if param.get("in") == "query"
        )
        found[name] = ReportRoute(
            name=name,
            title=name.replace("-", " ").replace("_", " ").capitalize(),
            summary=" ".join(text.split("\n\n")[0].split()),
            params=params,
        )
    return dict(sorted(found.items()))


def _default(value: object) -> str:
    return str(value) if isinstance(value, str | int | float | bool) else ""


def tables_of(data: Any) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """An answer split into its plain fields and its lists of records (by field name)."""
    fields: dict[str, Any] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    if not isinstance(data, dict):
        return {"answer": data}, {}
    for key, value in data.items():
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            tables[key] = value
        elif not isinstance(value, dict | list):
            fields[key] = value
    return fields, tables


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """The keys of the records, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def chart_of(key: str, rows: list[dict[str, Any]]) -> Markup | None:
    """A ranking of the table's rows by its first numeric column (ids left out), each
    named by its SKU (or name, or first text column); None when there is no such pair."""
    columns = columns_of(rows)
    numbers = [
        c
        for c in columns
        if c != "id"
        and not c.endswith("_id")
        and rows
        and all(_numeric(row.get(c)) for row in rows)
    ]
    names = [c for c in columns if rows and all(isinstance(row.get(c), str) for row in rows)]
    if not numbers or not names:
        return None
    value = numbers[0]
    # An item's SKU or name says most; else the first text column.
    name = next((c for c in ("sku", "name") if c in names), names[0])
    return ranking_chart(
        f"{key}: {value} by {name}",
        [str(row[name]) for row in rows],
        [float(row[value]) for row in rows],
    )


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return (
            ", ".join(f"{k}={v}" for k, v in value.items())
            if isinstance(value, dict)
            else (", ".join(str(part) for part in value))
        )
    return str(value)


def _report_params(request: Request, report: ReportRoute) -> list[tuple[str, str]]:
    wanted = {name for name, _ in report.params}
    return [
        (name, value.strip()[:200])
        for name, value in list(request.query_params.items())[:MAX_PARAMS]
        if name in wanted and value.strip()
    ]


@router.get("/reports")
async def reports_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    drafts_answer = await api(
        request,
        session,
        "/api/v1/purchase-orders",
        {"status": "draft", "limit": str(DRAFTS_SHOWN)},
    )
    drafts = []
    errors = []
    if drafts_answer.ok:
        for summary in drafts_answer.json()["items"]:
            whole = await api(request, session, f"/api/v1/purchase-orders/{summary['id']}")
            drafts.append(whole.json() if whole.ok else {**summary, "lines": []})
    else:
        errors.append(f"draft orders: {drafts_answer.detail()}")
    plans = await api(
        request,
        session,
        "/api/v1/replenishment/plans",
        {"below": "true", "limit": str(PLANS_SHOWN)},
    )
    if not plans.ok:
        errors.append(f"reorder points: {plans.detail()}")
    return page(
        "reports.html",
        **base_values(session, "reports", request),
        reports=list(report_routes(request.app).values()),
        drafts=drafts,
        plans=plans.json()["items"] if plans.ok else [],
        error="; ".join(errors) or None,
    )


@router.get("/reports/{name}.csv")
async def report_csv(
    request: Request, name: Annotated[str, Path(pattern=NAME_PATTERN)]
) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    report = report_routes(request.app).get(name)
    if report is None:
        return _text(f"no report named {name!r}", 404)
    answer = await api(request, session, REPORTS_PREFIX + name, _report_params(request, report))
    if not answer.ok:
        return _text(answer.detail(), answer.status)
    _, tables = tables_of(answer.json())
    rows = next(iter(tables.values()), [])
    columns = columns_of(rows)
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(columns)
    for row in rows:
        out.writerow(cell(row.get(column)) for column in columns)
    response = Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
    secure(response.headers)
    return response


def _text(message: str, status_code: int) -> Response:
    response = Response(message, status_code, media_type="text/plain; charset=utf-8")
    secure(response.headers)
    return response


@router.get("/reports/{name}")
async def report_page(
    request: Request, name: Annotated[str, Path(pattern=NAME_PATTERN)]
) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    report = report_routes(request.app).get(name)
    if report is None:
        return page(
            "report.html",
            404,
            **base_values(session, "reports", request),
            report=None,
            error=f"no report named {name!r}",
        )
    params = _report_params(request, report)
    answer = await api(request, session, REPORTS_PREFIX + name, params)
    fields, tables = tables_of(answer.json()) if answer.ok else ({}, {})
    return page(
        "report.html",
        200 if answer.ok else answer.status,
        **base_values(session, "reports", request),
        report=report,
        values=dict(params),
        fields=fields,
        tables={key: (columns_of(rows), rows, chart_of(key, rows)) for key, rows in tables.items()},
        cell=cell,
        query=request.url.query,
        error=None if answer.ok else answer.detail(),
    )


@router.post("/reports/drafts/{order_id}/confirm")
async def confirm_draft(
    request: Request, order_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Response:
    session, _ = await writer(request)
    answer = await api(
        request, session, f"/api/v1/replenishment/drafts/{order_id}/confirm", method="POST"
    )
    if answer.ok:
        notice = f"Purchase order {answer.json()['number']} confirmed: it is now open."
    else:
        notice = f"Not confirmed: {answer.detail()}"
    return back_to("/reports", notice)
