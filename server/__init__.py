"""The central server: ingest, stock rules, the ledger store, alerts and the HTTP API."""
