"""EPCIS 2.0 JSON documents built from ledger rows, and the CBV event hash. Pure: no I/O.

What a ledger row becomes (one ``ObjectEvent`` per row, ``action`` ``OBSERVE``: the objects
exist before and after; stock rows describe where they are and in what state):

==================  =================================  ==========================
ledger row          bizStep                            disposition
==================  =================================  ==========================
receipt             ``receiving``                      ``in_progress``
shipment            ``shipping``                       ``in_transit``
transfer            its reason when that is a CBV step ``sellable_accessible``
                    (``storing``, ``picking``, ...),
                    else ``storing``; into a transit   ``in_transit``
                    location: ``shipping``
count_adjustment    ``cycle_counting``                 ``sellable_accessible`` (in),
                                                       ``unknown`` (out)
loss (reason)       lost: ``cycle_counting``           ``unknown``
                    stolen: ``cycle_counting``         ``stolen``
                    damaged / expired: ``inspecting``  ``damaged`` / ``expired``
                    destroyed: ``destroying``          ``destroyed``
==================  =================================  ==========================

(``LOSS_STEPS``, ``KIND_STEPS``: the table as data.) A reversal (a row that ``reverses``
another) is published the EPCIS way: the original event again, with an
``errorDeclaration`` (``declarationTime`` = the reversal's time, reason
``incorrect_data``), so a partner that holds the original knows it no longer stands.

Identifiers:

- what moved: the unit's EPC URN in ``epcList``; a quantity as ``quantityList`` with the
  item class as a GS1 Digital Link (``https://id.gs1.org/01/<GTIN-14>``), or
  ``urn:stockgate:sku:<SKU>`` (percent-escaped) for an item without a GTIN.
- ``readPoint`` and ``bizLocation``: the location's SGLN (``locations.sgln``, location
  master data) where one is known; else ``urn:stockgate:loc:<location id>``. A read point
  takes the SGLN of the location with its own id (``wh1.dock.1``), else
  ``urn:stockgate:readpoint:<id>``; a row with no read point (API operations) reads at its
  location. Shipments and losses have no ``bizLocation`` (the goods are no longer there).
- ``eventID``: the CBV 2.0 event hash (``ni:///sha-256;<hex>?ver=CBV2.0``) of the event as
  published (``event_hash``), plus the ledger row id as the extension
  ``stockgate:ledgerRow`` so two rows of equal content keep apart. The hash follows the
  CBV 2.0 section 8.9 pre-hash string for the fields this module writes (event type, time
  in UTC with milliseconds, offset, EPCs and classes as canonical Digital Link URIs, action,
  CBV step and disposition URIs, read point, business location, business transactions,
  error declaration, extensions); fields we never write are not canonicalised. It is a
  stable, content-derived id; it has not been checked against another implementation
  (the eventIDs in the standard's example documents do not come out of this string, and
  those examples may carry illustrative ids), so a partner should not rely on recomputing
  it.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from epcpy import ConvertException, epc_pure_identity_to_scheme

from wire.cbv import CBV_STEPS

EPCIS_CONTEXT: Final = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
STOCKGATE_NS: Final = "urn:stockgate:epcis:"
"""JSON-LD namespace of our extension fields (``stockgate:ledgerRow``)."""
CONTEXT: Final[list[Any]] = [EPCIS_CONTEXT, {"stockgate": STOCKGATE_NS}]
SCHEMA_VERSION: Final = "2.0"
CBV_STEP: Final = "https://ref.gs1.org/cbv/BizStep-"
CBV_DISPOSITION: Final = "https://ref.gs1.org/cbv/Disp-"
CBV_BTT: Final = "https://ref.gs1.org/cbv/BTT-"
CBV_ER: Final = "https://ref.gs1.org/cbv/ER-"
DIGITAL_LINK: Final = "https://id.gs1.org"
LOCATION_URI: Final = "urn:stockgate:loc:"
READ_POINT_URI: Final = "urn:stockgate:readpoint:"
SKU_URI: Final = "urn:stockgate:sku:"
HASH_VERSION: Final = "?ver=CBV2.0"


@dataclass(frozen=True, slots=True)
class StepRule:
    """How one kind of ledger row reads in EPCIS."""

    biz_step: str
    disposition: str
    at_destination: bool
    """Whether ``bizLocation`` is where the row put the goods (else: none)."""


KIND_STEPS: Final[Mapping[str, StepRule]] = {
    "receipt": StepRule("receiving", "in_progress", at_destination=True),
    "shipment": StepRule("shipping", "in_transit", at_destination=False),
    "transfer": StepRule("storing", "sellable_accessible", at_destination=True),
    "count_adjustment": StepRule("cycle_counting", "sellable_accessible", at_destination=True),
}
LOSS_STEPS: Final[Mapping[str, StepRule]] = {
    "lost": StepRule("cycle_counting", "unknown", at_destination=False),
    "stolen": StepRule("cycle_counting", "stolen", at_destination=False),
    "damaged": StepRule("inspecting", "damaged", at_destination=False),
    "expired": StepRule("inspecting", "expired", at_destination=False),
    "destroyed": StepRule("destroying", "destroyed", at_destination=False),
}
"""Adjustments out of stock by reason, with the CBV disposition that says why."""
TRANSIT_STEP: Final = StepRule("shipping", "in_transit", at_destination=False)
COUNTED_OUT: Final = StepRule("cycle_counting", "unknown", at_destination=False)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """The columns of one ledger row an EPCIS event is made of."""

    id: int
    event_time: datetime
    kind: str
    reason: str | None
    epc: str | None
    gtin: str | None
    sku: str
    quantity: int
    from_location: str | None
    to_location: str | None
    read_point: str | None
    reverses: int | None = None


def step_of(row: LedgerEvent) -> StepRule:
    """The business step and disposition of ``row`` (module docstring table)."""
    if row.kind == "loss":
        return LOSS_STEPS.get(row.reason or "lost", LOSS_STEPS["lost"])
    if row.kind == "count_adjustment" and row.to_location is None:
        return COUNTED_OUT
    if row.kind == "transfer":
        if row.to_location is not None and row.to_location.startswith("transit."):
            return TRANSIT_STEP
        if row.reason in CBV_STEPS:
            return StepRule(row.reason, "sellable_accessible", at_destination=True)
    return KIND_STEPS.get(row.kind, StepRule("other", "unknown", at_destination=True))


def location_uri(location: str, sglns: Mapping[str, str]) -> str:
    """The SGLN of ``location`` when the master data has one, else our URN for it."""
    return sglns.get(location) or LOCATION_URI + urllib.parse.quote(location, safe=".")


def read_point_uri(read_point: str, sglns: Mapping[str, str]) -> str:
    """The SGLN of the location named like the read point, else our read point URN."""
    return sglns.get(read_point) or READ_POINT_URI + urllib.parse.quote(read_point, safe=".")


def item_class_uri(gtin: str | None, sku: str) -> str:
    """An item class: its GTIN as a Digital Link, or our URN for its SKU."""
    if gtin is not None:
        return f"{DIGITAL_LINK}/01/{gtin.zfill(14)}"
    return SKU_URI + urllib.parse.quote(sku, safe="")


def _utc_text(moment: datetime) -> str:
    """``2005-04-04T02:33:31.116Z``: UTC with milliseconds, as EPCIS and the hash write it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def object_event(
    row: LedgerEvent,
    sglns: Mapping[str, str],
    *,
    original: LedgerEvent | None = None,
) -> dict[str, Any]:
    """The ``ObjectEvent`` of one ledger row (a reversal: its original, declared in error).

    Args:
        row: the ledger row.
        sglns: location id -> SGLN, for the locations the row names.
        original: the row ``row`` reverses, when it is a reversal.
    """
    shown = original if original is not None else row
    rule = step_of(shown)
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": _utc_text(shown.event_time),
        "eventTimeZoneOffset": "+00:00",
    }
    if shown.epc is not None:
        event["epcList"] = [shown.epc]
    else:
        event["quantityList"] = [
            {"epcClass": item_class_uri(shown.gtin, shown.sku), "quantity": shown.quantity}
        ]
    event["action"] = "OBSERVE"
    event["bizStep"] = rule.biz_step
    event["disposition"] = rule.disposition
    here = shown.to_location if rule.at_destination else shown.from_location
    here = here or shown.to_location or shown.from_location
    if shown.read_point is not None:
        event["readPoint"] = {"id": read_point_uri(shown.read_point, sglns)}
    elif here is not None:
        event["readPoint"] = {"id": location_uri(here, sglns)}
    if rule.at_destination and shown.to_location is not None:
        event["bizLocation"] = {"id": location_uri(shown.to_location, sglns)}
    if original is not None:
        event["errorDeclaration"] = {
            "declarationTime": _utc_text(row.event_time),
            "reason": "incorrect_data",
        }
    event["stockgate:ledgerRow"] = row.id
    event["eventID"] = event_hash(event)
    return event


def query_document(
    events: Sequence[dict[str, Any]],
    created: datetime,
    *,
    subscription: str | None = None,
) -> dict[str, Any]:
    """An ``EPCISQueryDocument`` holding ``events`` (the answer of a SimpleEventQuery)."""
    results: dict[str, Any] = {"queryName": "SimpleEventQuery"}
    if subscription is not None:
        results["subscriptionID"] = subscription
    results["resultsBody"] = {"eventList": list(events)}
    return {
        "@context": CONTEXT,
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _utc_text(created),
        "epcisBody": {"queryResults": results},
    }


# --- the CBV 2.0 event hash ---------------------------------------------------------------

_HASH_ORDER: Final = (
    "eventTime",
    "eventTimeZoneOffset",
    "epcList",
    "quantityList",
    "action",
    "bizStep",
    "disposition",
    "readPoint",
    "bizLocation",
    "bizTransactionList",
    "sourceList",
    "destinationList",
)
"""Standard fields in the order of the CBV pre-hash string (of those we canonicalise)."""
_SKIPPED: Final = frozenset({"type", "eventID", "@context", "recordTime", "errorDeclaration"})


def canonical_id(value: str) -> str:
    """An identifier as the hash reads it: EPC URNs of GS1 keys as Digital Link URIs.

    SGTIN, SSCC, SGLN, GRAI, ... pure identities become ``https://id.gs1.org/<AI>/...``
    (through epcpy's GS1 element string); a ``(254)`` extension of ``0`` is dropped, as
    the Digital Link form of a GLN without extension has none. Anything else is kept.
    """
    if not value.startswith("urn:epc:id:"):
        return value
    try:
        element_string = epc_pure_identity_to_scheme(value).gs1_element_string()
    except (ConvertException, AttributeError, ValueError, KeyError, IndexError, TypeError):
        return value
    parts: list[str] = []
    for chunk in str(element_string).split("(")[1:]:
        ai, _, data = chunk.partition(")")
        if ai == "254" and data == "0":
            continue
        parts.extend((ai, urllib.parse.quote(data, safe="")))
    return "/".join([DIGITAL_LINK, *parts])


def _vocabulary(prefix: str, value: str) -> str:
    return value if ":" in value else prefix + value


def _prehash_field(name: str, value: Any) -> str:
    if name == "epcList":
        return "epcList" + "".join(f"epc={canonical_id(epc)}" for epc in sorted(value))
    if name == "quantityList":
        elements = []
        for element in value:
            text = f"epcClass={canonical_id(element['epcClass'])}"
            if "quantity" in element:
                text += f"quantity={element['quantity']}"
            if "uom" in element:
                text += f"uom={element['uom']}"
            elements.append(text)
        return "quantityList" + "".join(sorted(elements))
    if name == "bizStep":
        return f"bizStep={_vocabulary(CBV_STEP, value)}"
    if name == "disposition":
        return f"disposition={_vocabulary(CBV_DISPOSITION, value)}"
    if name in ("readPoint", "bizLocation"):
        return f"{name}id={canonical_id(value['id'])}"
    if name == "bizTransactionList":
        elements = []
        for element in value:
            text = f"bizTransaction={element['bizTransaction']}"
            if "type" in element:
                text += f"type={_vocabulary(CBV_BTT, element['type'])}"
            elements.append(text)
        return "bizTransactionList" + "".join(sorted(elements))
    if name == "eventTime":
        return f"eventTime={_utc_text(datetime.fromisoformat(value.replace('Z', '+00:00')))}"
    return f"{name}={value}"


def _extension_name(name: str, context: Mapping[str, str]) -> str:
    prefix, _, local = name.partition(":")
    return "{" + context.get(prefix, prefix) + "}" + local


def prehash_string(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 pre-hash string of ``event`` (for the fields listed in ``_HASH_ORDER``).

    Args:
        event: an EPCIS 2.0 JSON event.
        namespaces: JSON-LD prefix -> namespace for extension fields (ours by default).
    """
    context = {"stockgate": STOCKGATE_NS, **(namespaces or {})}
    text = f"eventType={event['type']}"
    for name in _HASH_ORDER:
        if name in event:
            text += _prehash_field(name, event[name])
    extensions = sorted(
        f"{_extension_name(name, context)}={value}"
        for name, value in event.items()
        if ":" in name and name not in _SKIPPED
    )
    return text + "".join(extensions)


def event_hash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of ``event``'s pre-hash string."""
    digest = hashlib.sha256(prehash_string(event, namespaces).encode()).hexdigest()
    return f"ni:///sha-256;{digest}{HASH_VERSION}"


def sglns_needed(rows: Iterable[LedgerEvent]) -> set[str]:
    """The location ids whose SGLN the events of ``rows`` may show."""
    wanted: set[str] = set()
    for row in rows:
        wanted.update(
            place
            for place in (row.from_location, row.to_location, row.read_point)
            if place is not None
        )
    return wanted
