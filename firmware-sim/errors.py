"""The simulator package's exception tree.

``SimError`` is the root; callers that only want to know "the simulator could not do
that" catch it. Foreign errors (pydantic, TOML, sockets) are wrapped at the boundary
with ``raise ... from err``.
"""

from __future__ import annotations


class SimError(Exception):
    """Base of every error raised by ``firmware_sim``."""


class SimConfigError(SimError, ValueError):
    """A simulator, portal or reader was set up with values it cannot work with."""


class ScenarioError(SimError, ValueError):
    """A scenario file is missing, unreadable or invalid; the message names the key."""


class EncodeError(SimError, ValueError):
    """A value cannot be put into an LLRP message (out of range, not hex, too long)."""


class ProbeError(SimError):
    """The probe client got something other than what a conformant reader sends."""
