"""The edge's exception root: every error the edge raises on purpose is an ``EdgeError``.

``ReaderError`` is the root of what a reader or scanner adapter raises (LLRP protocol and
codec errors, serial port trouble, a malformed scan), so a loop that keeps a device
running catches one class, not a tuple of unrelated ones. Errors of the shared plumbing
(``MqttError``) and of the contract (``wire.errors.WireError``) have their own roots.
"""

from __future__ import annotations


class EdgeError(Exception):
    """An error the edge agent raises on purpose (as opposed to a bug)."""


class ReaderError(EdgeError):
    """A reader or scanner adapter's error: the device, its protocol or its input."""
