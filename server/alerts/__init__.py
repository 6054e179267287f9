"""Alerts: their rows and change log, the sweeps that raise them, and their delivery."""
