"""An EPCIS document as capture reads it: bounded, validated, its events typed.

The body must be JSON, ``type`` ``EPCISDocument`` (or ``EPCISQueryDocument``, whose
``queryResults`` events are read), ``schemaVersion`` 2.x, with an event list of at most
``[epcis] max_capture_events`` events and ``max_capture_epcs`` EPCs in all; each event must
have a ``type`` and a valid ``eventTime``. A document breaking any of these is refused whole
(``CaptureRefused``, naming the event index and field). Extension fields are kept out of the
way, not refused (EPCIS allows them). ``server.epcis.capture`` says what capture does with
the events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.config.epcis import EpcisSettings
from server.epcis.documents import event_hash
from server.errors import ServerError
from server.store.schema.core import MAX_EVENT_ID

DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")


class CaptureRefused(ServerError, ValueError):
    """The document is not one capture takes; the message says what is wrong."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class BizTransaction(_Open):
    type: str | None = Field(default=None, max_length=1000)
    bizTransaction: str = Field(min_length=1, max_length=1000)


class CapturedEvent(_Open):
    """The parts of an EPCIS event capture reads (the rest is allowed and ignored)."""

    type: str = Field(min_length=1, max_length=64)
    eventTime: datetime
    eventID: str | None = Field(default=None, min_length=1, max_length=MAX_EVENT_ID)
    action: str | None = Field(default=None, max_length=16)
    bizStep: str | None = Field(default=None, max_length=1000)
    epcList: list[str] = Field(default_factory=list)
    parentID: str | None = Field(default=None, max_length=1000)
    childEPCs: list[str] = Field(default_factory=list)
    childQuantityList: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    bizTransactionList: list[BizTransaction] = Field(default_factory=list, max_length=100)


class CaptureBody(_Open):
    eventList: list[dict[str, Any]]


class QueryResultsBody(_Open):
    resultsBody: CaptureBody


class QueryBody(_Open):
    queryResults: QueryResultsBody


class CaptureDocument(_Open):
    type: Literal["EPCISDocument"]
    schemaVersion: str = Field(pattern=r"^2(\.\d+)*$")
    epcisBody: CaptureBody


class QueryDocument(_Open):
    """Query results a partner forwards (same events, one level deeper)."""

    type: Literal["EPCISQueryDocument"]
    schemaVersion: str = Field(pattern=r"^2(\.\d+)*$")
    epcisBody: QueryBody


def digest_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_document(
    body: bytes, settings: EpcisSettings
) -> tuple[list[CapturedEvent], dict[str, str]]:
    """The document's events and its JSON-LD prefixes, or ``CaptureRefused`` saying why."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaptureRefused(f"the body is not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CaptureRefused("an EPCIS document is a JSON object")
    kind = raw.get("type")
    if kind not in DOCUMENT_TYPES:
        raise CaptureRefused(f"type must be one of {list(DOCUMENT_TYPES)}, not {kind!r}")
    try:
        if kind == "EPCISDocument":
            listed = CaptureDocument.model_validate(raw).epcisBody.eventList
        else:
            listed = QueryDocument.model_validate(raw).epcisBody.queryResults.resultsBody.eventList
    except ValidationError as err:
        raise CaptureRefused(_first_error(err, "document")) from err
    if len(listed) > settings.max_capture_events:
        raise CaptureRefused(
            f"epcisBody.eventList holds {len(listed)} events; at most "
            f"{settings.max_capture_events} per document"
        )
    events: list[CapturedEvent] = []
    epcs = 0
    for index, entry in enumerate(listed):
        try:
            event = CapturedEvent.model_validate(entry)
        except ValidationError as err:
            raise CaptureRefused(_first_error(err, f"eventList[{index}]")) from err
        epcs += len(event.epcList) + len(event.childEPCs)
        if epcs > settings.max_capture_epcs:
            raise CaptureRefused(
                f"the document lists more than {settings.max_capture_epcs} EPCs "
                f"(reached at eventList[{index}])"
            )
        events.append(event)
    return events, _prefixes(raw.get("@context"))


def _first_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    return f"{where}.{path}: {first['msg']}" if path else f"{where}: {first['msg']}"


def _prefixes(context: Any) -> dict[str, str]:
    """JSON-LD prefixes of the document's ``@context`` (for hashing extension fields)."""
    found: dict[str, str] = {}
    entries = context if isinstance(context, list) else [context]
    for entry in entries:
        if isinstance(entry, Mapping):
            found.update({k: v for k, v in entry.items() if isinstance(v, str)})
    return found


def content_id(event: CapturedEvent, prefixes: Mapping[str, str]) -> str:
    """An id for an event that has none: our CBV hash of it, or (when a field the hash reads
    is malformed, e.g. a ``quantityList`` entry without ``epcClass``) the SHA-256 of its
    canonical JSON; either way the same event gives the same id."""
    content = event.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    try:
        return event_hash(content, prefixes)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return "ni:///sha-256;" + hashlib.sha256(text.encode()).hexdigest() + "?ver=stockgate"
