"""CPU use per thread, as the server benchmark reads it from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.cpu import child_processes, machine_cpu_seconds, run_queue_seconds, thread_cpu_seconds

SPIN_S = 0.3


def test_thread_cpu_seconds_charges_the_thread_that_worked() -> None:
    spun, release = threading.Event(), threading.Event()
    worker_ids: list[int] = []

    def spin() -> None:
        worker_ids.append(threading.get_native_id())
        until = time.thread_time() + SPIN_S
        while time.thread_time() < until:
            pass
        spun.set()
        release.wait(10)  # alive (and in /proc) until it has been read

    before = thread_cpu_seconds(os.getpid())
    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert spun.wait(10)
        after = thread_cpu_seconds(os.getpid())
    finally:
        release.set()
        worker.join()
    [worker_id] = worker_ids
    main_id = threading.get_native_id()
    assert worker_id not in before
    # Clock ticks (1/100 s) round each figure down.
    assert after[worker_id] >= SPIN_S - 0.05
    assert after[main_id] - before[main_id] < SPIN_S / 2


def test_thread_cpu_seconds_of_no_process_is_empty() -> None:
    assert thread_cpu_seconds(2**22 + 12345) == {}


def test_child_processes_lists_the_processes_started_while_they_run() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in child_processes(os.getpid())
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.pid not in child_processes(os.getpid())
    assert child_processes(2**22 + 12345) == []


def test_machine_cpu_seconds_counts_the_machine_and_the_processes_named() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time\nuntil = time.process_time() + {SPIN_S}\n"
            "while time.process_time() < until: pass\ntime.sleep(30)",
        ]
    )
    try:
        name = Path(f"/proc/{child.pid}/stat").read_text().partition("(")[2].rpartition(")")[0]
        before = machine_cpu_seconds([name, "no-such-command"])
        time.sleep(SPIN_S * 2)
        after = machine_cpu_seconds([name, "no-such-command"])
    finally:
        child.kill()
        child.wait(timeout=10)
    # The spinning child (and anything else named alike) worked; so did the machine.
    assert after[name] - before[name] >= SPIN_S / 2
    assert after["busy"] - before["busy"] >= after[name] - before[name] - 0.05
    assert after["no-such-command"] == before["no-such-command"] == 0.0


def test_run_queue_seconds_grows_only_while_a_thread_waits_for_a_cpu() -> None:
    assert run_queue_seconds(2**22 + 12345) == 0.0
    waited = run_queue_seconds(os.getpid())
    time.sleep(0.05)
    assert run_queue_seconds(os.getpid()) >= waited
