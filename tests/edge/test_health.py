"""Health issues, the monitor's rules, process figures and the drain-rate bucket (pure)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edge.config import EdgeSettings
from edge.health import CpuMeter, IssueBoard, rss_bytes
from edge.monitor import HealthMonitor, used_antennas
from edge.ratelimit import TokenBucket
from edge.readers.types import ReaderFault, StateChanged
from wire.models import ReaderStatus, Status, now_utc


def settings(**values: Any) -> EdgeSettings:
    base: dict[str, Any] = {
        "gateway": {"id": "gw-1", "site": "wh1"},
        "buffer": {"max_events": 1000, "alarm_ratio": 0.5, "max_age_s": 60},
        "llrp": [{"name": "dock1", "host": "127.0.0.1"}, {"name": "shelf", "host": "127.0.0.1"}],
        "portals": [
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
            }
        ],
        "zones": [{"read_point": "wh1.shelf.1", "reader": "shelf"}],
    }
    return EdgeSettings(**(base | values))


def reader(name: str, state: str = "connected", down: list[int] | None = None) -> ReaderStatus:
    return ReaderStatus.model_validate(
        {
            "name": name,
            "kind": "llrp",
            "state": state,
            "last_error": None if state == "connected" else "connection refused",
            "antennas_disconnected": down or [],
        }
    )


def test_conditions_last_while_set_and_occurrences_for_their_hold() -> None:
    board = IssueBoard(hold_s=10.0)
    assert board.set("reader_down", "dock1", "critical", "reader dock1 is away")
    assert not board.set("reader_down", "dock1", "critical", "reader dock1 is away still")
    board.note("unread_window", "wh1.dock.1", "warning", "unread", now=0.0)
    board.note("unread_window", "wh1.dock.1", "warning", "unread again", now=5.0)
    issues = {(i.kind, i.subject): i for i in board.issues(6.0)}
    assert issues[("reader_down", "dock1")].message == "reader dock1 is away still"
    assert issues[("unread_window", "wh1.dock.1")].count == 2
    assert [i.kind for i in board.issues(15.0)] == ["reader_down"], "held 10 s after the last"
    assert board.clear("reader_down", "dock1")
    assert not board.clear("reader_down", "dock1")
    assert board.issues(15.0) == []
    # The issues travel in the status as the wire contract says.
    board.set("outbox_full", "outbox", "critical", "full")
    status = Status(
        gateway="gw-1", site="wh1", state="online", at=now_utc(), issues=board.issues(0)
    )
    assert Status.model_validate_json(status.model_dump_json()).issues[0].kind == "outbox_full"


def test_antennas_in_use_per_reader() -> None:
    assert used_antennas(settings()) == {"dock1": frozenset({1, 2}), "shelf": None}


def test_a_reader_is_down_only_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    board = IssueBoard()
    monitor = HealthMonitor(settings(), board, grace_s=10.0)
    monitor.start(["dock1", "shelf"], now=0.0)
    monitor.reader_event(StateChanged("shelf", "connected"), 1.0)
    monitor.evaluate_readers({"dock1": reader("dock1", "connecting")}, 9.0)
    assert board.issues(9.0) == []
    with caplog.at_level(logging.ERROR, logger="edge.monitor"):
        monitor.evaluate_readers({"dock1": reader("dock1", "error")}, 10.0)
        monitor.evaluate_readers({"dock1": reader("dock1", "error")}, 11.0)
    (issue,) = board.issues(11.0)
    assert (issue.kind, issue.subject, issue.severity) == ("reader_down", "dock1", "critical")
    assert "connection refused" in issue.message
    assert len([r for r in caplog.records if "ALARM" in r.message]) == 1, "logged once"
    # Back within a reconnect: cleared; a short drop later raises nothing.
    monitor.reader_event(StateChanged("dock1", "connected"), 12.0)
    monitor.evaluate_readers({"dock1": reader("dock1")}, 12.0)
    monitor.reader_event(StateChanged("dock1", "disconnected"), 13.0)
    monitor.evaluate_readers({"dock1": reader("dock1", "connecting")}, 20.0)
    assert board.issues(20.0) == []


def test_only_antennas_in_use_raise_an_issue_and_exceptions_are_noted() -> None:
    board = IssueBoard()
    monitor = HealthMonitor(settings(), board)
    monitor.start([], now=0.0)
    monitor.evaluate_readers(
        {"dock1": reader("dock1", down=[2, 4]), "shelf": reader("shelf", down=[7])}, 1.0
    )
    subjects = sorted(i.subject for i in board.issues(1.0))
    assert subjects == ["dock1/antenna 2", "shelf/antenna 7"], "port 4 is unused at dock1"
    monitor.evaluate_readers({"dock1": reader("dock1"), "shelf": reader("shelf")}, 2.0)
    assert board.issues(2.0) == []
    monitor.reader_event(ReaderFault("dock1", "PA overheated"), 3.0)
    (issue,) = board.issues(3.0)
    assert (issue.kind, issue.subject) == ("reader_exception", "dock1")
    assert "PA overheated" in issue.message


def test_outbox_alarms_fill_before_full_and_age_without_deleting() -> None:
    board = IssueBoard()
    monitor = HealthMonitor(settings(), board)
    monitor.evaluate_outbox(depth=499, full=False, oldest_age_s=59.0)
    assert board.issues(0) == []
    assert not monitor.backlog_alarm
    monitor.evaluate_outbox(depth=500, full=False, oldest_age_s=61.0)
    assert {i.kind for i in board.issues(0)} == {"outbox_filling", "outbox_backlog_old"}
    assert monitor.backlog_alarm
    monitor.evaluate_outbox(depth=1000, full=True, oldest_age_s=None)
    assert {i.kind for i in board.issues(0)} == {
        "outbox_filling",
        "outbox_full",
        "outbox_backlog_old",
    }, "an unknown age keeps the age alarm as it was"
    monitor.evaluate_outbox(depth=0, full=False, oldest_age_s=None)
    assert board.issues(0) == []
    assert not monitor.backlog_alarm


def test_process_figures_are_plausible() -> None:
    rss = rss_bytes()
    assert rss is not None
    assert 1_000_000 < rss < 100_000_000_000
    meter = CpuMeter()
    sum(i * i for i in range(200_000))
    percent = meter.percent()
    assert percent is not None
    assert percent >= 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_the_rate_and_a_burst_of_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 500.0, clock=clock)
    assert bucket.delay(500) == 0.0, "starts full"
    bucket.take(500)
    assert bucket.delay(100) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.delay(100) == pytest.approx(0.5)
    assert bucket.delay(2000) == pytest.approx(4.5), "a request above capacity waits for it"
    clock.now += 10.0
    assert bucket.delay(500) == 0.0, "refill stops at the capacity"
    bucket.take(500)
    assert bucket.delay(1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="must be > 0"):
        TokenBucket(0, 10)
