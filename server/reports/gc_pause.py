"""Reports that build tens of thousands of books run with Python's cyclic garbage collector
paused.

A report reads every valuation book (``server.reports.book_reads``): some 20,000 ``Book``
objects each with its ``Flow``, lists, dicts and ``Decimal``s, and as many rows. Every 700
new container objects start a collection of the youngest generation, and the survivors
soon start full collections over every object of the process: at 3,000,000 ledger rows a
turnover report took 1.15 s with the collector on and 0.73 s with it paused. None of
these objects form reference cycles (reference counting frees them), so pausing the
collector for the length of a report loses nothing; it runs again when the last report in
progress ends. Reports run on the event loop's thread only, so a count is enough to pause
it once for reports that overlap. The pause is applied around each report's route
(``server.api.report_routes.report_route``), so it covers the report's response models too.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_pausing = 0
"""Reports in progress that paused the collector."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) until the last user leaves."""
    global _pausing
    if _pausing == 0 and not gc.isenabled():
        yield  # paused by someone else: leave it to them
        return
    if _pausing == 0:
        gc.disable()
    _pausing += 1
    try:
        yield
    finally:
        _pausing -= 1
        if _pausing == 0:
            gc.enable()


def without_collector(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``function`` run with the collector paused (``collector_paused``)."""

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with collector_paused():
            return await function(*args, **kwargs)

    return run
