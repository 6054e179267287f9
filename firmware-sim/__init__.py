"""Simulators that speak the real protocols, and the scenarios that drive them.

* ``reader.ReaderSimulator``: an LLRP 1.0.1 reader on TCP (an Impinj R420 look-alike),
  one ``session.Session`` per client, ROSpecs run by ``inventory``, triggers read by
  ``llrp_triggers``, faults from ``faults``, recorded reports replayed from ``replay``.
* ``portal``: the physical model of what a reader sees (a ``TagField``), staged pallets
  and shelves; ``portal_rf`` read chance and RSSI, ``portal_door`` a dock door's
  geometry, ``portal_motion`` pallets passing (photo-eyes, stops, shielding).
* ``scanner.ScannerSimulator``: a barcode scanner on a pseudo-terminal (the line format
  is ``wire.barcodes``).
* ``scenario``: declarative TOML scenarios; ``truth``: their ground truth.
* ``probe.LlrpProbe``: a minimal conformant LLRP client to drive and observe a reader.
"""
