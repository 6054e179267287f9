"""Ingest: MQTT messages from gateways in, applied once to the ledger, acknowledged."""
