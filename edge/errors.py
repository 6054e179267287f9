"""The edge's exception root: every error the edge raises on purpose is an ``EdgeError``.

``ReaderError`` is the root of what a reader or scanner adapter raises (LLRP protocol and
codec errors, serial port trouble, a malformed scan), so a loop that keeps a device
running catches one class, not a tuple of unrelated ones. Errors of the shared plumbing
(``MqttError``) and of the contract (``wire.errors.WireError``) have their own roots.

The tree (each class is defined next to what raises it)::

    EdgeError
    ├── ReaderError
    │   ├── LlrpError                 readers/llrp_reports: a protocol error
    │   │   ├── LlrpStatusError           a response that is not Success
    │   │   ├── LlrpReportError           a report of a shape sllurp should not give
    │   │   ├── LlrpConfigError           readers/llrp_rospec: settings the reader cannot take
    │   │   ├── LlrpHandshakeError        readers/llrp_handshake: refused, or no answer
    │   │   ├── LlrpConnectionLost        readers/llrp_link: closed or reset
    │   │   └── LlrpWatchdogError         readers/llrp_link: silence past the watchdog
    │   ├── LlrpCodecError            readers/llrp_codec: the bytes themselves
    │   │   ├── LlrpFramingError          an impossible header: the stream is lost
    │   │   └── LlrpDecodeError           one message sllurp cannot decode
    │   ├── ScannerError              readers/serial_scanner
    │   │   ├── ScannerUnavailable        the port cannot be opened
    │   │   └── ScannerDisconnected       the port went away
    │   └── MalformedScan             readers/barcode: a line that is no scan
    ├── OutboxError                   buffer/errors: the outbox file
    │   ├── OutboxLocked                  another process has it open
    │   └── OutboxFull                    a new event refused (full, or commits failing)
    └── RemoteConfigError             remote_config: a configuration the edge refuses

``tests/edge/test_errors.py`` checks that no exception class of the edge is outside it.
"""

from __future__ import annotations


class EdgeError(Exception):
    """An error the edge agent raises on purpose (as opposed to a bug)."""


class ReaderError(EdgeError):
    """A reader or scanner adapter's error: the device, its protocol or its input."""
