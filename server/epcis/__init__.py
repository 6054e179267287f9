"""EPCIS 2.0: capture, documents, queries and subscriptions."""
