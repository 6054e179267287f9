"""Simulators that speak the real protocols, and the scenarios that drive them.

* ``reader.ReaderSimulator``: an LLRP 1.0.1 reader on TCP (an Impinj R420 look-alike).
* ``portal``: the physical model of a dock door, pallets passing, staged pallets, shelves.
* ``scenario``: declarative TOML scenarios with a known ground truth.
* ``probe.LlrpProbe``: a minimal conformant LLRP client to drive and observe a reader.
"""
