"""How much each benchmark does: the full sizes behind BENCHMARKS.md, and ``--quick``'s.

``QUICK`` runs tiny sizes only to check that every benchmark works; its figures never
replace the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench import edge, llrp_stream, portal, replenishment

DEFAULT_LEDGER_ROWS: Final = 10_000_000


@dataclass(frozen=True, slots=True)
class Sizes:
    """The size of every benchmark in one run (``results.json`` records them)."""

    edge_reads: int
    edge_repeats: int
    edge_crowded_field: int
    edge_warmup_cycles: int
    buffered_events: int
    batches_per_gateway: int
    raw_messages: int
    ledger_rows: int
    api_samples: int
    replenishment_items: int
    fuzz_inputs: int
    portal_seeds: int
    fault_events: int
    ingest_passes: int
    """Passes of each ingest figure and its database floor, taken in turns; the median of
    each is recorded (``bench.groups``)."""


FULL: Final = Sizes(
    edge_reads=200_000,
    edge_repeats=5,
    edge_crowded_field=edge.CROWDED_FIELD,
    edge_warmup_cycles=llrp_stream.WARMUP_CYCLES,
    buffered_events=1_000_000,
    batches_per_gateway=25,
    raw_messages=1_000,
    ledger_rows=DEFAULT_LEDGER_ROWS,
    api_samples=100,
    replenishment_items=replenishment.ITEMS,
    fuzz_inputs=1_000_000,
    portal_seeds=portal.SEEDS,
    fault_events=2_000,
    ingest_passes=3,
)
QUICK: Final = Sizes(
    edge_reads=3_000,
    edge_repeats=1,
    edge_crowded_field=1_000,
    edge_warmup_cycles=2,
    buffered_events=3_000,
    batches_per_gateway=1,
    raw_messages=8,
    ledger_rows=30_000,
    api_samples=5,
    replenishment_items=10,
    fuzz_inputs=2_000,
    portal_seeds=1,
    fault_events=200,
    ingest_passes=1,
)
