"""The contract's exception root: a value that does not fit the wire contract."""

from __future__ import annotations


class WireError(ValueError):
    """An identifier, barcode, topic or payload value that is not well formed."""
