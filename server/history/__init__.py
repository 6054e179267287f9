"""The time-series history: ledger followers, SQL rollups, InfluxDB, and their checks."""
