"""The barcode contract between serial scanners (real or simulated) and the edge. No I/O.

A scanner sends one line per scan. On the wire a line is::

    [prefix] [AIM symbology identifier] content [suffix] terminator

``prefix``, ``suffix`` and ``terminator`` are scanner settings (the edge's ``[[scanners]]``
table says what to expect; CR, LF or CRLF by default). The AIM identifier is three
characters, ``]`` + symbology code + modifier, e.g. ``]C1`` for GS1-128. The content is one
of:

- a location label ``LOC:<location id>`` (``LOC:wh1.aisle.3``): the scanner is now there;
- a command ``CMD:RECEIVE``, ``CMD:PICK``, ``CMD:MOVE``, ``CMD:COUNT`` or ``CMD:END``: switch
  the scanner's mode (``END`` closes a count);
- an item or a logistic unit (a pallet): GS1 content, an element string, a bare GTIN or a
  GS1 Digital Link URI, read by ``wire.gs1``. A pallet's contents are what the server
  knows of its SSCC (``server.commands.pallets``).

``parse_barcode`` turns a line's text into one of the typed scans of ``wire.scans``; a scan
that is none of these, or one with a bad value, is a ``BarcodeError`` whose message names
what was wrong. The encoders here (``location_label``, ``command_barcode``, ``scan_line``)
and in ``wire.gs1`` build what a scanner sends; the simulator uses them and every
encoder's output parses back to its input.
"""

from __future__ import annotations

import re
from typing import Final

from wire.gs1 import parse_label
from wire.scans import (
    SYMBOLOGY_LENGTH,
    BarcodeError,
    Command,
    CommandScan,
    LocationScan,
    Scan,
)

MAX_LINE: Final = 512
"""Longest scan line in bytes, terminator excluded. A 2D GS1 code tops out near 100."""
LOCATION_PREFIX: Final = "LOC:"
COMMAND_PREFIX: Final = "CMD:"
DEFAULT_TERMINATOR: Final = "\r"
"""What the simulator ends lines with; the edge accepts CR, LF or CRLF by default."""
ANY_TERMINATORS: Final = (b"\r", b"\n")
"""Line ends accepted when no terminator is configured; CRLF is CR then an empty line."""
_SYMBOLOGY = re.compile(r"\][A-Za-z][0-9A-Za-z]")

LOCATION_PATTERN: Final = r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,7}$"
"""A location id: dotted path from site to bin (the server's location ids)."""
MAX_LOCATION: Final = 128
_LOCATION = re.compile(LOCATION_PATTERN)


# --- parsing ------------------------------------------------------------------------------


def split_symbology(text: str) -> tuple[str | None, str]:
    """The leading AIM symbology identifier (or None) and the content after it."""
    if _SYMBOLOGY.match(text):
        return text[:SYMBOLOGY_LENGTH], text[SYMBOLOGY_LENGTH:]
    return None, text


def parse_barcode(
    text: str,
    *,
    symbology_ids: bool = True,
    location_prefix: str = LOCATION_PREFIX,
    command_prefix: str = COMMAND_PREFIX,
) -> Scan:
    """The typed value of one scan's text (prefix, suffix and terminator already removed).

    Args:
        text: the scan, control characters other than GS already stripped.
        symbology_ids: the scanner sends AIM identifiers; a leading ``]Xm`` is one.
        location_prefix: what starts a location label.
        command_prefix: what starts a command barcode.

    Raises:
        BarcodeError: the text is none of the known kinds, or is one with a bad value.
    """
    symbology, content = split_symbology(text) if symbology_ids else (None, text)
    if not content:
        raise BarcodeError("empty scan" + (f" (symbology {symbology} only)" if symbology else ""))
    if content.startswith(location_prefix):
        return LocationScan(parse_location(content[len(location_prefix) :]))
    if content.startswith(command_prefix):
        name = content[len(command_prefix) :]
        try:
            return CommandScan(Command(name.upper()))
        except ValueError:
            known = ", ".join(c.value for c in Command)
            raise BarcodeError(f"unknown command {name[:40]!r} (known: {known})") from None
    return parse_label(content, symbology)


def parse_location(location: str) -> str:
    """A location id from a label, checked against ``LOCATION_PATTERN``.

    Raises:
        BarcodeError: not a dotted location id of at most ``MAX_LOCATION`` characters.
    """
    if len(location) > MAX_LOCATION or not _LOCATION.match(location):
        raise BarcodeError(
            f"location label {location[:60]!r} is not a dotted location id like 'wh1.aisle.3'"
        )
    return location


# --- encoding (what a scanner sends) -------------------------------------------------------


def location_label(location: str, prefix: str = LOCATION_PREFIX) -> str:
    """The content of a location label.

    Raises:
        BarcodeError: ``location`` is not a location id.
    """
    return prefix + parse_location(location)


def command_barcode(command: Command, prefix: str = COMMAND_PREFIX) -> str:
    """The content of a command barcode."""
    return prefix + command.value


def scan_line(
    content: str,
    *,
    symbology: str | None = None,
    prefix: str = "",
    suffix: str = "",
    terminator: str = DEFAULT_TERMINATOR,
) -> bytes:
    """The bytes a scanner sends for one scan (ASCII).

    Raises:
        BarcodeError: the line is not ASCII or longer than ``MAX_LINE``.
    """
    body = f"{prefix}{symbology or ''}{content}{suffix}"
    if not body.isascii():
        raise BarcodeError("a scan line must be ASCII")
    data = body.encode("ascii")
    if len(data) > MAX_LINE:
        raise BarcodeError(f"a scan line of {len(data)} bytes exceeds {MAX_LINE}")
    return data + terminator.encode("ascii")


__all__ = [
    "ANY_TERMINATORS",
    "COMMAND_PREFIX",
    "DEFAULT_TERMINATOR",
    "LOCATION_PATTERN",
    "LOCATION_PREFIX",
    "MAX_LINE",
    "MAX_LOCATION",
    "command_barcode",
    "location_label",
    "parse_barcode",
    "parse_location",
    "scan_line",
    "split_symbology",
]
