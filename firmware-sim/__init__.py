"""Simulators that speak the real protocols, and the scenarios that drive them.

* ``reader.ReaderSimulator``: an LLRP 1.0.1 reader on TCP (an Impinj R420 look-alike).
  Each client gets a ``session.Session`` (the socket, timers, output faults) feeding
  ``reader_protocol.ReaderProtocol`` (the answer to each request; ROSpecs and
  AccessSpecs in ``specs``, the running one in ``inventory_host``, its rounds and
  reports in ``inventory``). Faults from ``faults`` (waiting in ``armed_faults``),
  recorded reports replayed from ``replay``, counts in ``counters``.
* The LLRP both ways, sans-I/O: ``llrp_types`` (numbers and values), ``llrp_encode`` and
  ``report_encoder`` (reader to client), ``llrp_requests``, ``llrp_rospec``,
  ``llrp_params`` and ``llrp_triggers`` (client to reader).
* ``portal``: the physical model of what a reader sees (a ``TagField``), staged pallets
  and shelves; ``portal_rf`` read chance and RSSI, ``portal_door`` a dock door's
  geometry, ``portal_motion`` pallets passing (photo-eyes, stops, shielding).
* ``scanner.ScannerSimulator``: a barcode scanner on a pseudo-terminal; what it reads
  and the line each scan makes in ``barcode_symbols`` (the format is ``wire.barcodes``).
* ``scenario``: declarative TOML scenarios, validated and planned (the file format in
  ``scenario_model`` and ``scenario_tables``, planning in ``scenario_plan`` and the
  modules it names); ``scenario_run`` plays them; ``truth``: their ground truth.
* ``probe.LlrpProbe``: a minimal conformant LLRP client to drive and observe a reader;
  ``fake_reader.FakeLlrpReader``: a scripted LLRP reader to drive and observe a client.
"""
