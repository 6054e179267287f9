"""The board's facts read from a sysfs tree laid out like a Raspberry Pi's (and a PC's)."""

from __future__ import annotations

from pathlib import Path

from edge.host import THROTTLED_FILE, HostProbe, throttle_flags


def _zone(sys_root: Path, index: int, kind: str, millidegrees: str) -> None:
    zone = sys_root / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(f"{kind}\n")
    (zone / "temp").write_text(f"{millidegrees}\n")


def test_a_pi_reports_its_cpu_temperature_and_throttling(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "cpu-thermal", "61850")
    throttled = tmp_path / THROTTLED_FILE
    throttled.parent.mkdir(parents=True)
    # Under-voltage now; under-voltage and throttling since boot.
    throttled.write_text("50001\n")
    probe = HostProbe(tmp_path)
    assert probe.cpu_temp_c() == 61.9
    flags = probe.throttling()
    assert flags is not None
    assert flags.now == ["under_voltage"]
    assert flags.since_boot == ["under_voltage", "throttled"]


def test_a_board_without_the_sources_reports_none(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "acpitz", "27800")
    probe = HostProbe(tmp_path)
    assert probe.cpu_temp_c() is None
    assert probe.throttling() is None


def test_the_cpu_zone_is_found_among_others_and_garbage_is_absent(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "acpitz", "27800")
    _zone(tmp_path, 1, "x86_pkg_temp", "not a number")
    _zone(tmp_path, 2, "cpu-thermal", "48000")
    throttled = tmp_path / THROTTLED_FILE
    throttled.parent.mkdir(parents=True)
    throttled.write_text("zz\n")
    probe = HostProbe(tmp_path)
    assert probe.cpu_temp_c() == 48.0
    assert probe.throttling() is None


def test_every_flag_decodes_in_both_halves() -> None:
    everything = throttle_flags(0xF000F)
    assert everything.now == everything.since_boot
    assert len(everything.now) == 4
    assert throttle_flags(0).now == []


def test_free_disk_is_read_for_the_outbox_folder(tmp_path: Path) -> None:
    free = HostProbe.disk_free_bytes(tmp_path / "outbox.db")
    assert free is not None
    assert free > 0
