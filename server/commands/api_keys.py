"""Minting API keys: a random key, shown once, and the ``[[api.keys]]`` entry that holds
only its SHA-256 (``stockgate server mint-key``)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from server.config.settings import ApiKeySettings, Role

KEY_BYTES: Final = 32
"""Random bytes in a minted key (256 bits; printed as 43 URL-safe characters)."""


@dataclass(frozen=True, slots=True)
class MintedKey:
    key: str
    """The key itself: give it to its user; it is not stored anywhere."""
    entry: str
    """The TOML ``[[api.keys]]`` table to paste into server.toml."""


def mint(role: Role, name: str | None = None, sites: Sequence[str] = ()) -> MintedKey:
    """A new random key of ``role`` and its config entry (validated like the file's).

    Raises:
        pydantic.ValidationError: ``name`` or a site is not a valid id.
    """
    key = secrets.token_urlsafe(KEY_BYTES)
    digest = hashlib.sha256(key.encode()).hexdigest()
    ApiKeySettings(key_sha256=digest, role=role, name=name, sites=list(sites))
    lines = ["[[api.keys]]", f'key_sha256 = "{digest}"', f'role = "{role}"']
    if name is not None:
        lines.append(f"name = {json.dumps(name)}")
    if sites:
        lines.append(f"sites = {json.dumps(list(sites))}")
    return MintedKey(key, "\n".join(lines) + "\n")
