"""The ROSpecs and AccessSpecs a client holds on one connection, and the requests on them.

ADD/DELETE/ENABLE/DISABLE/START/STOP_ROSPEC and GET_ROSPECS, the AccessSpec requests
(the simulator keeps AccessSpecs and answers for them, but runs no tag operations), and
the ROSpec start triggers: Immediate (on ENABLE_ROSPEC), Periodic (a timer of the
connection while the ROSpec is enabled) and GPI (a GPI port's edge); Null waits for
START_ROSPEC. Which ROSpec runs, and how, is the ``InventoryHost``'s.

Each handler sends exactly one response and returns True (keep serving); a refusal is a
``RequestError`` carrying the status the reader answers with.
"""

from __future__ import annotations

import time

from firmware_sim.air import air_settings
from firmware_sim.inventory_host import HeldRoSpec, InventoryHost
from firmware_sim.llrp_encode import encode_get_rospecs_response, llrp_status, message
from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_requests import ALL_SPECS, AddAccessSpec, AddRoSpec, Request, SpecIdRequest
from firmware_sim.llrp_rospec import RoSpecState
from firmware_sim.llrp_triggers import GpiTrigger, StartTrigger
from firmware_sim.llrp_types import SUCCESS, MsgType, Status, StatusCode
from firmware_sim.session_context import ClientConfig, Link, ReaderHost, send_ok


class Specs:
    """The ROSpecs and AccessSpecs of one connection (a new connection starts empty).

    Args:
        host: the simulator.
        link: the connection.
        config: what the client configured (Impinj extensions, for the RF settings).
        inventory: runs the ROSpec that is Active.
        antennas: the antennas this connection was told about.
    """

    def __init__(
        self,
        host: ReaderHost,
        link: Link,
        config: ClientConfig,
        inventory: InventoryHost,
        antennas: int,
    ) -> None:
        self._host = host
        self._link = link
        self._config = config
        self._inventory = inventory
        self._antennas = antennas
        self._rospecs: dict[int, HeldRoSpec] = {}
        self._access_specs: dict[int, bytes] = {}

    # --- ROSpecs ---------------------------------------------------------------------------

    async def add_rospec(self, request: Request) -> bool:
        assert isinstance(request, AddRoSpec)
        spec = request.rospec
        profile = self._host.profile
        if spec.rospec_id == ALL_SPECS:
            raise RequestError(Status(StatusCode.FIELD_ERROR, "ROSpecID 0 is reserved", 0))
        if spec.current_state is not RoSpecState.DISABLED:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, "a new ROSpec must be Disabled", field_num=2)
            )
        if spec.rospec_id in self._rospecs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpecID {spec.rospec_id} exists", field_num=0)
            )
        if len(self._rospecs) >= profile.max_rospecs:
            limit = profile.max_rospecs
            raise RequestError(
                Status(StatusCode.OVERFLOW_PARAMETER, f"the reader holds at most {limit} ROSpec")
            )
        beyond = [a for a in spec.antennas if a > self._antennas]
        if beyond:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"AntennaID {beyond[0]} outside 1..{self._antennas}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )
        # The RF settings are checked now, so a value the reader lacks fails the ADD_ROSPEC.
        air_settings(spec.antenna_rf, profile, impinj=self._config.impinj)
        self._check_gpi(spec.start.gpi, "ROSpecStartTrigger")
        self._check_gpi(spec.stop.gpi, "ROSpecStopTrigger")
        for aispec in spec.aispecs:
            self._check_gpi(aispec.stop.gpi, "AISpecStopTrigger")
        self._rospecs[spec.rospec_id] = HeldRoSpec(spec, RoSpecState.DISABLED)
        return send_ok(self._link, request)

    async def delete_rospec(self, request: Request) -> bool:
        for spec in await self._stop_and_disarm(request):
            del self._rospecs[spec.spec.rospec_id]
        return send_ok(self._link, request)

    async def enable_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        to_start: HeldRoSpec | None = None
        enabled = []
        for spec in self._specs(request.spec_id):
            if spec.state is RoSpecState.DISABLED:
                spec.state = RoSpecState.INACTIVE
                enabled.append(spec)
                if spec.spec.start_trigger is StartTrigger.IMMEDIATE:
                    to_start = spec
        # The response goes first: a client waits for it before it expects reports.
        send_ok(self._link, request)
        for spec in enabled:
            self._arm(spec)
        if to_start is not None:
            await self._link.drain()
            await self._inventory.start(to_start)
        return True

    async def start_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        spec = self._spec(request.spec_id)
        if spec.state is RoSpecState.DISABLED:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpec {request.spec_id} is Disabled", 0)
            )
        send_ok(self._link, request)
        if spec.state is RoSpecState.INACTIVE:
            await self._link.drain()
            await self._inventory.start(spec)
        return True

    async def stop_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        spec = self._spec(request.spec_id)
        if spec.state is RoSpecState.ACTIVE:
            await self._inventory.stop(flush=True)
        return send_ok(self._link, request)

    async def disable_rospec(self, request: Request) -> bool:
        for spec in await self._stop_and_disarm(request):
            spec.state = RoSpecState.DISABLED
        return send_ok(self._link, request)

    async def _stop_and_disarm(self, request: Request) -> list[HeldRoSpec]:
        """The ROSpecs ``request`` names, their inventory stopped if one of them was
        running, their start triggers disarmed (for a delete or a disable)."""
        assert isinstance(request, SpecIdRequest)
        specs = self._specs(request.spec_id)
        if any(s.state is RoSpecState.ACTIVE for s in specs):
            await self._inventory.stop(flush=True)
        for spec in specs:
            spec.disarm()
        return specs

    async def get_rospecs(self, request: Request) -> bool:
        params = [spec.param() for spec in self._rospecs.values()]
        self._link.send(encode_get_rospecs_response(request.msg_id, params), "response")
        return True

    def _spec(self, spec_id: int) -> HeldRoSpec:
        try:
            return self._rospecs[spec_id]
        except KeyError:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpecID {spec_id}: no such ROSpec", field_num=0)
            ) from None

    def _specs(self, spec_id: int) -> list[HeldRoSpec]:
        return list(self._rospecs.values()) if spec_id == ALL_SPECS else [self._spec(spec_id)]

    def _check_gpi(self, trigger: GpiTrigger | None, what: str) -> None:
        gpis = self._host.profile.gpis
        if trigger is not None and trigger.port > gpis:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"{what} GPIPortNum {trigger.port} outside 1..{gpis}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )

    # --- start triggers --------------------------------------------------------------------

    def gpi_changed(self, port: int, high: bool) -> None:
        """A GPI edge: start the first Inactive ROSpec whose GPI start trigger it is."""
        if not self._link.live:
            return
        for spec in self._rospecs.values():
            gpi = spec.spec.start.gpi
            if (
                spec.state is RoSpecState.INACTIVE
                and spec.spec.start_trigger is StartTrigger.GPI
                and gpi is not None
                and (gpi.port, gpi.event) == (port, high)
            ):
                self._link.spawn(self._inventory.start(spec), "gpi-start")
                break

    def _arm(self, spec: HeldRoSpec) -> None:
        """Start the Periodic start trigger's timer of a ROSpec just enabled."""
        periodic = spec.spec.start.periodic
        if spec.spec.start_trigger is not StartTrigger.PERIODIC or periodic is None:
            return
        now = time.monotonic()
        if periodic.utc_start_us is not None:
            first = now + (periodic.utc_start_us - self._link.utc_us(now)) / 1e6
        else:
            first = now
        first += periodic.offset_ms / 1000

        async def fire() -> None:
            if spec.state is RoSpecState.INACTIVE:
                await self._inventory.start(spec)

        spec.armed = self._link.repeat(first, periodic.period_ms / 1000, fire, "periodic")

    # --- AccessSpecs -----------------------------------------------------------------------

    async def add_access_spec(self, request: Request) -> bool:
        assert isinstance(request, AddAccessSpec)
        if request.access_spec_id in self._access_specs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"AccessSpecID {request.access_spec_id} exists", 0)
            )
        self._access_specs[request.access_spec_id] = request.raw
        return send_ok(self._link, request)

    async def delete_access_spec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        for spec_id in self._access_ids(request.spec_id):
            del self._access_specs[spec_id]
        return send_ok(self._link, request)

    async def toggle_access_spec(self, request: Request) -> bool:
        """ENABLE_ACCESSSPEC and DISABLE_ACCESSSPEC: checked and answered, nothing runs."""
        assert isinstance(request, SpecIdRequest)
        self._access_ids(request.spec_id)
        return send_ok(self._link, request)

    async def get_access_specs(self, request: Request) -> bool:
        body = llrp_status(SUCCESS) + b"".join(self._access_specs.values())
        self._link.send(message(MsgType.GET_ACCESSSPECS_RESPONSE, request.msg_id, body), "response")
        return True

    def _access_ids(self, spec_id: int) -> list[int]:
        if spec_id == ALL_SPECS:
            return list(self._access_specs)
        if spec_id not in self._access_specs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"AccessSpecID {spec_id}: no such AccessSpec", 0)
            )
        return [spec_id]
