"""``plumbing.records.record``: values by their fields at run time, frozen to mypy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mypy import api as mypy_api

from plumbing.records import record


@record
class _Pair:
    name: str
    count: int = 0


def test_a_record_is_a_value_by_its_fields() -> None:
    pair = _Pair("a", 2)
    assert pair == _Pair("a", 2)
    assert pair != _Pair("a", 3)
    assert hash(pair) == hash(_Pair("a", 2))
    assert {pair, _Pair("a", 2)} == {pair}
    assert dataclasses.replace(pair, count=3) == _Pair("a", 3)
    assert not hasattr(pair, "__dict__"), "a record has slots"


def test_mypy_refuses_assigning_to_a_field(tmp_path: Path) -> None:
    snippet = tmp_path / "mutates.py"
    snippet.write_text(
        "from plumbing.records import record\n\n\n"
        "@record\nclass Pair:\n    name: str\n\n\n"
        "Pair('a').name = 'b'\n",
        encoding="utf-8",
    )
    out, _, status = mypy_api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    assert status == 1, out
    assert 'Property "name" defined in "Pair" is read-only' in out
