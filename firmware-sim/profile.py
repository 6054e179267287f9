"""What a simulated reader says it is: identity, tables and limits, as data.

The default profile models an Impinj Speedway R420 (firmware 5.14, FCC region) as it
answers GET_READER_CAPABILITIES: the values come from a recorded R420 response
(``edgex-GetReaderCapabilitiesResponse-000`` in the shared captures). The antenna count
is not part of the profile; each simulator sets it (1..8).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RfMode:
    """One UHFC1G2RFModeTableEntry (LLRP 1.0.1 §15.2.1.1.2.1)."""

    mode_id: int
    dr_64_3: bool
    """Divide ratio 64/3 (True) or 8 (False)."""
    epc_hag_tc_conformance: bool
    modulation: int
    """0 FM0, 1 Miller-2, 2 Miller-4, 3 Miller-8."""
    forward_link_modulation: int
    spectral_mask: int
    bdr_bps: int
    pie: int
    min_tari_ns: int
    max_tari_ns: int
    step_tari_ns: int


R420_RF_MODES: tuple[RfMode, ...] = (
    RfMode(0, True, False, 0, 2, 2, 640_000, 1500, 6250, 6250, 0),
    RfMode(1, True, False, 1, 2, 2, 640_000, 1500, 6250, 6250, 0),
    RfMode(2, True, False, 2, 0, 3, 274_000, 2000, 20000, 20000, 0),
    RfMode(3, True, False, 3, 0, 3, 170_600, 2000, 20000, 20000, 0),
    RfMode(4, True, False, 2, 0, 2, 640_000, 1500, 7140, 7140, 0),
    # Impinj "AutoSet" modes: placeholders the reader resolves itself.
    RfMode(1000, False, False, 0, 0, 0, 40_000, 1500, 6250, 6250, 0),
    RfMode(1002, False, False, 0, 0, 0, 40_000, 1500, 6250, 6250, 0),
    RfMode(1003, False, False, 0, 0, 0, 40_000, 1500, 6250, 6250, 0),
    RfMode(1004, False, False, 0, 0, 0, 40_000, 1500, 6250, 6250, 0),
    RfMode(1005, False, False, 0, 0, 0, 40_000, 1500, 6250, 6250, 0),
)


R420_FCC_HOP_TABLE: tuple[int, ...] = (
    # FCC part 15: the 50 channels 902.75..927.25 MHz (kHz), in the pseudo-random order
    # the recorded R420 reports its hop table.
    909250, 908250, 925750, 911250, 910750, 926750, 917750, 905250, 927250, 921250,
    925250, 919250, 924750, 916250, 919750, 913250, 926250, 916750, 918750, 914250,
    909750, 917250, 908750, 902750, 921750, 913750, 915750, 923750, 904250, 903750,
    903250, 907750, 915250, 924250, 912750, 918250, 912250, 910250, 922250, 905750,
    906750, 920750, 923250, 906250, 914750, 911750, 920250, 907250, 922750, 904750,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReaderProfile:
    """Identity and capability tables a simulated reader reports."""

    manufacturer: int = 25882
    """IANA private enterprise number; 25882 is Impinj."""
    model: int = 2001002
    """Impinj's model number for the Speedway R420."""
    firmware: str = "5.14.0.240"
    country_code: int = 840
    communications_standard: int = 1
    """1 = US FCC part 15."""
    gpis: int = 4
    gpos: int = 4
    tx_power_centi_dbm: tuple[int, ...] = tuple(range(1000, 3001, 25))
    """Transmit power table, 10.00..30.00 dBm; reported with indexes 1..n."""
    receive_sensitivity_db: tuple[int, ...] = (0, *range(10, 51))
    """Receive sensitivity table: dB below the best sensitivity, reported with indexes 1..n."""
    best_sensitivity_dbm: int = -84
    """The weakest answer the reader hears at its most sensitive (an R420's datasheet value)."""
    hop_table_khz: tuple[int, ...] = R420_FCC_HOP_TABLE
    rf_modes: tuple[RfMode, ...] = R420_RF_MODES
    max_rospecs: int = 1
    max_specs_per_rospec: int = 32
    max_access_specs: int = 1508
    max_opspecs_per_access_spec: int = 8
    max_select_filters: int = 2
    antenna_gain_centi_dbi: int = 0


R420 = ReaderProfile()
"""The default profile: an Impinj Speedway R420."""
