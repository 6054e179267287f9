"""The business steps of GS1's Core Business Vocabulary (CBV 2.0), as bare names.

What an EPCIS event's ``bizStep`` may say (``https://ref.gs1.org/cbv/BizStep-<name>``): the
server writes them into its EPCIS documents and checks subscription and query filters
against them.
"""

from __future__ import annotations

from typing import Final

CBV_STEPS: Final = frozenset(
    {
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
        "sensor_reporting",
        "sampling",
    }
)
"""The CBV 2.0 business steps (bare words in EPCIS 2.0 JSON)."""
