"""Prometheus metrics of one server (a registry per instance, never the global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DEAD_LETTER_KINDS = (
    "topic",
    "size",
    "json",
    "envelope",
    "mismatch",
    "event",
    "read_point",
    "status",
)
"""Bounded label values of ``stockgate_dead_letters_total`` (never the free-text reason)."""
BATCH_OUTCOMES = ("applied", "duplicate", "rejected", "failed")
INGEST_STAGES = ("check", "plan", "write")
"""Label values of ``stockgate_ingest_stage_seconds_total`` (``server.ingest.pipeline``)."""


class Metrics:
    """The counters ingest and the API update, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_applied = Counter(
            "stockgate_events_applied",
            "Events applied to the ledger (first delivery).",
            registry=self.registry,
        )
        self.events_duplicate = Counter(
            "stockgate_events_duplicate",
            "Events skipped because their id was applied before (redelivery).",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "stockgate_dead_letters",
            "Messages or events put in the dead-letter table, by kind of problem.",
            ["kind"],
            registry=self.registry,
        )
        self.batches = Counter(
            "stockgate_batches",
            "Event batches handled, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_plans = Counter(
            "stockgate_ingest_plans",
            "Groups of batches applied per site, by where their plan was made: ahead of the "
            "transaction and kept, ahead but made again in it, or in it from the start.",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_stage_seconds = Counter(
            "stockgate_ingest_stage_seconds",
            "Seconds ingest's stages were in progress, by stage: checking event messages "
            "(rejected ones included), planning groups ahead, writing them (transaction, "
            "commit and Acks; summed over the writers). Waits count (for the database, for "
            "the event loop). A stage's increase over an interval, divided by the interval, "
            "is how busy it was: near 1 (per writer), that stage bounds the events per second.",
            ["stage"],
            registry=self.registry,
        )
        self.acks_failed = Counter(
            "stockgate_acks_failed",
            "Acks that could not be published (the edge re-sends; the retry is a duplicate).",
            registry=self.registry,
        )
        self.statuses = Counter(
            "stockgate_gateway_statuses",
            "Gateway status messages recorded.",
            registry=self.registry,
        )
        # Portal passes, per read point (configured, so a bounded label set; an event
        # naming any other read point is dead-lettered before it is counted).
        self.unresolved_passes = Counter(
            "stockgate_unresolved_passes",
            "Portal passes that arrived without a direction and were kept as unresolved.",
            ["read_point"],
            registry=self.registry,
        )
        self.resolved_passes = Counter(
            "stockgate_resolved_passes",
            "Unresolved passes an operator resolved, by the direction given (in/out/ignore).",
            ["read_point", "direction"],
            registry=self.registry,
        )
        self.group_passes = Counter(
            "stockgate_group_direction_passes",
            "Portal passes with a direction that carry a group id (direction decided with "
            "the pallet or cart the tag crossed with), by direction.",
            ["read_point", "direction"],
            registry=self.registry,
        )
        # Ledger rows by site, read point and kind, counted by the rollups follower as it
        # commits them (server.history.follow): every row once, by the instance that holds
        # the follower's lease, whichever instance applied it; sum over instances. Bounded:
        # sites and read points are configured (others are dead-lettered), kinds are five.
        self.ledger_rows = Counter(
            "stockgate_ledger_rows",
            "Ledger rows (movements) by site, read point ('' for API operations) and kind.",
            ["site", "read_point", "kind"],
            registry=self.registry,
        )
        self.ledger_quantity = Counter(
            "stockgate_ledger_quantity",
            "Quantity moved by ledger rows, by site, read point and kind.",
            ["site", "read_point", "kind"],
            registry=self.registry,
        )
        self.history_position = Gauge(
            "stockgate_history_position",
            "The newest ledger id each history follower of this instance has handed over.",
            ["follower"],
            registry=self.registry,
        )
        # Each gateway's last status, re-exported (gateways are configured: bounded).
        self.gateway_online = Gauge(
            "stockgate_gateway_online",
            "1 while the gateway's last status says online, else 0.",
            ["gateway", "site"],
            registry=self.registry,
        )
        self.gateway_outbox_depth = Gauge(
            "stockgate_gateway_outbox_depth",
            "Events in the gateway's outbox not yet acknowledged, from its last status.",
            ["gateway", "site"],
            registry=self.registry,
        )
        self.database_full = Gauge(
            "stockgate_database_full",
            "1 while the database refuses writes for lack of space (ingest sends no Acks; "
            "the gateways keep their events), else 0.",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "stockgate_batch_seconds",
            "Time to validate, apply and commit one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        for kind in DEAD_LETTER_KINDS:
            self.dead_letters.labels(kind=kind)
        for stage in INGEST_STAGES:
            self.ingest_stage_seconds.labels(stage=stage)
        for outcome in BATCH_OUTCOMES:
            self.batches.labels(outcome=outcome)

    def watch_store(self, full: Callable[[], bool]) -> None:
        """Read ``stockgate_database_full`` from ``full`` at each scrape."""
        self.database_full.set_function(lambda: 1.0 if full() else 0.0)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
