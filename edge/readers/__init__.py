"""Input adapters: one per input kind, sans-I/O codecs apart from the loops that drive them."""
