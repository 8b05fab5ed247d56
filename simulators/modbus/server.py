"""A fleet of simulated Modbus TCP meters: pymodbus servers on loopback ports,
each answering for many unit ids with the adapter's register maps, values
computed from (meter id, time) at every request, and injectable faults."""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from adapters.modbus.maps import (
    SUNSPEC_BASE_ADDRESS,
    SUNSPEC_COMMON_LENGTH,
    SUNSPEC_METER_MODEL_ADDRESS,
    SUNSPEC_METER_MODEL_LENGTH,
    builtin_maps,
)
from adapters.modbus.registers import Point, RegisterMap, encode_raw
from simulators.modbus.model import MeterModel, energy_count

logger = logging.getLogger(__name__)

METER_ID_PREFIX = "MODBUS-"
MAX_UNITS_PER_SERVER = 247


class MeterClock(Protocol):
    def now_us(self) -> int: ...


class Fault(enum.Enum):
    NONE = "none"
    # The unit never answers (the client times out).
    NO_RESPONSE = "no_response"
    # The unit answers every read with a Modbus exception (``exception_code``).
    EXCEPTION = "exception"
    # Energy counters stop advancing.
    FROZEN = "frozen"
    # Energy counters are offset to wrap past 2^32 soon.
    ROLLOVER = "rollover"


@dataclass
class SimMeter:
    """One simulated meter; tests and the CLI change its fault fields at run time."""

    meter_id: str
    host: str
    server: int
    unit: int
    map_name: str
    model: MeterModel
    energy_sf: int = 0
    fault: Fault = Fault.NONE
    exception_code: int = int(ExcCodes.DEVICE_FAILURE)
    frozen_at_us: int | None = None
    # Added to the raw energy counters before they wrap (acc32): set by roll_over_in().
    counter_offset: int = 0
    requests: int = 0
    # The TCP port of its server, known once the server is listening.
    port: int = 0

    def energy_raw(self, t_us: int) -> tuple[int, int]:
        """(delivered, received) energy counters in 10^energy_sf Wh, before wrapping."""
        if self.frozen_at_us is not None:
            t_us = min(t_us, self.frozen_at_us)
        return (energy_count(self.model.import_wus(t_us), self.energy_sf) + self.counter_offset,
                energy_count(self.model.export_wus(t_us), self.energy_sf) + self.counter_offset)

    def roll_over_in(self, counts: int, now_us: int) -> None:
        """Offset the counters so the delivered counter wraps past 2^32 after ``counts`` more counts."""
        self.counter_offset = 0
        delivered, _ = self.energy_raw(now_us)
        self.counter_offset = (1 << 32) - counts - delivered % (1 << 32)
        self.fault = Fault.ROLLOVER

    def freeze(self, now_us: int) -> None:
        self.frozen_at_us = now_us
        self.fault = Fault.FROZEN

    def clear_fault(self) -> None:
        self.fault = Fault.NONE
        self.frozen_at_us = None


def _string_words(text: str, words: int) -> list[int]:
    data = text.encode()[: words * 2].ljust(words * 2, b"\0")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a map's registers live in a device's register block."""

    start: int
    template: tuple[int, ...]
    points: tuple[tuple[int, Point], ...]


def _sunspec_layout(register_map: RegisterMap, model_id: int) -> _Layout:
    start = SUNSPEC_BASE_ADDRESS
    end_model = SUNSPEC_METER_MODEL_ADDRESS + 2 + SUNSPEC_METER_MODEL_LENGTH
    regs = [0] * (end_model + 2 - start)
    regs[0:2] = [0x5375, 0x6E53]  # "SunS"
    regs[2:4] = [1, SUNSPEC_COMMON_LENGTH]
    regs[4:20] = _string_words("meterhub", 16)
    regs[20:36] = _string_words(f"sim-{model_id}", 16)
    base = SUNSPEC_METER_MODEL_ADDRESS - start
    regs[base:base + 2] = [model_id, SUNSPEC_METER_MODEL_LENGTH]
    # Every point of the model block reads "not implemented" unless the map writes it.
    for offset in range(base + 2, base + 2 + SUNSPEC_METER_MODEL_LENGTH):
        regs[offset] = 0x8000
    for acc_offset in range(38, 54):  # acc32 points: not implemented is 0
        regs[base + acc_offset] = 0
    regs[end_model - start:end_model - start + 2] = [0xFFFF, 0]
    points = tuple((p.address - start, p) for p in register_map.points)
    return _Layout(start, tuple(regs), points)


def _plain_layout(register_map: RegisterMap) -> _Layout:
    start = min(p.address for p in register_map.points)
    end = max(p.end for p in register_map.points)
    points = tuple((p.address - start, p) for p in register_map.points)
    return _Layout(start, tuple([0] * (end - start)), points)


_SF = {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0}
_PHASES = {"sunspec_201": 1, "sunspec_202": 2, "sunspec_203": 3, "sunspec_204": 3, "float_submeter": 3}


def point_values(meter: SimMeter, t_us: int) -> dict[str, int | float | None]:
    """The raw value of every point of the meter's map at ``t_us`` (the simulator's truth)."""
    model = meter.model
    phases = _PHASES.get(meter.map_name, 3)
    net_w = model.power_w(t_us)
    volts_dv = [model.voltage_dv(t_us, i) for i in range(3)]
    amps_ca = [abs(net_w) * 1000 // phases // volts_dv[i] for i in range(3)]
    delivered, received = meter.energy_raw(t_us)
    if meter.map_name == "float_submeter":
        # Whole counts of 10^energy_sf Wh, shown in kWh.
        wh_scale = 10 ** meter.energy_sf
        return {
            "VoltageL1": volts_dv[0] / 10, "VoltageL2": volts_dv[1] / 10, "VoltageL3": volts_dv[2] / 10,
            "CurrentL1": amps_ca[0] / 100, "CurrentL2": amps_ca[1] / 100, "CurrentL3": amps_ca[2] / 100,
            "TotalPower": float(net_w), "Frequency": model.frequency_chz(t_us) / 100,
            "ImportEnergy": delivered * wh_scale / 1000, "ExportEnergy": received * wh_scale / 1000,
            "TotalDemand": float(model.demand_w(t_us)), "MaxTotalDemand": float(model.max_demand_w(t_us)),
        }
    ll_factor = 2000 if phases == 2 else 1732
    values: dict[str, int | float | None] = {
        "A": sum(amps_ca[:phases]), "PhV": sum(volts_dv[:phases]) // phases,
        "PPV": volts_dv[0] * ll_factor // 1000, "Hz": model.frequency_chz(t_us), "W": net_w,
        "TotWhImp": delivered, "TotWhExp": received, "TotWh_SF": meter.energy_sf, **_SF,
    }
    for i, phase in enumerate("ABC"):
        values[f"Aph{phase}"] = amps_ca[i]
        values[f"PhVph{phase}"] = volts_dv[i]
        values[f"Wph{phase}"] = net_w // phases
    for i, pair in enumerate(("AB", "BC", "CA")):
        values[f"PPVph{pair}"] = volts_dv[i] * 1732 // 1000
    return values


class ModbusSimFleet:
    """``servers`` pymodbus TCP servers x ``units_per_server`` unit ids, one meter each
    (``meters`` caps the total). ``map_names`` are assigned round-robin. Use as an
    async context manager."""

    def __init__(self, *, servers: int = 1, units_per_server: int = 10, map_names: Sequence[str] = ("sunspec_203",),
                 clock: MeterClock, host: str = "127.0.0.1", ports: Sequence[int] | None = None,
                 first_number: int = 1, energy_sf: int = 0, meters: int | None = None) -> None:
        if not 1 <= units_per_server <= MAX_UNITS_PER_SERVER:
            raise ValueError(f"units_per_server must be 1..{MAX_UNITS_PER_SERVER}")
        maps = builtin_maps()
        unknown = [m for m in map_names if m not in maps]
        if unknown or not map_names:
            raise ValueError(f"unknown map(s) {unknown}; built-in maps: {sorted(maps)}")
        if ports is not None and len(ports) != servers:
            raise ValueError("give one port per server")
        self.clock = clock
        self.host = host
        self._maps = maps
        self._ports = list(ports) if ports is not None else [0] * servers
        self._servers: list[ModbusTcpServer | None] = [None] * servers
        self._layouts: dict[str, _Layout] = {}
        for name in set(map_names):
            register_map = maps[name]
            self._layouts[name] = (_sunspec_layout(register_map, int(name.rsplit("_", 1)[1]))
                                   if name.startswith("sunspec_") else _plain_layout(register_map))
        self.meters: list[SimMeter] = []
        number = first_number
        total = servers * units_per_server if meters is None else min(meters, servers * units_per_server)
        for server in range(servers):
            for unit in range(1, units_per_server + 1):
                if len(self.meters) == total:
                    break
                meter_id = f"{METER_ID_PREFIX}{number:06d}"
                map_name = map_names[(number - first_number) % len(map_names)]
                self.meters.append(SimMeter(meter_id=meter_id, host=host, server=server, unit=unit, map_name=map_name,
                                            model=MeterModel.for_meter(meter_id), energy_sf=energy_sf))
                number += 1
        self._by_id = {m.meter_id: m for m in self.meters}

    def meter(self, meter_id: str) -> SimMeter:
        return self._by_id[meter_id]

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    async def __aenter__(self) -> ModbusSimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        for index in range(len(self._servers)):
            await self.start_server(index)

    async def start_server(self, index: int) -> None:
        """Start (or restart, on its previous port) server ``index``."""
        if self._servers[index] is not None:
            return
        meters = [m for m in self.meters if m.server == index]
        server = ModbusTcpServer([self._device(m) for m in meters], address=(self.host, self._ports[index]),
                                 ignore_missing_devices=True)
        await server.serve_forever(background=True)
        if self._ports[index] == 0:
            listener: Any = server.transport
            self._ports[index] = int(listener.sockets[0].getsockname()[1])
        for meter in meters:
            meter.port = self._ports[index]
        self._servers[index] = server
        logger.info("modbus simulator serving %d unit(s) on %s:%d", len(meters), self.host, self._ports[index])

    async def stop_server(self, index: int) -> None:
        """Stop server ``index``, dropping its open connections (a meter gateway dying)."""
        server = self._servers[index]
        if server is None:
            return
        self._servers[index] = None
        await server.shutdown()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        for index in range(len(self._servers)):
            await self.stop_server(index)

    def _device(self, meter: SimMeter) -> SimDevice:
        layout = self._layouts[meter.map_name]
        block = SimData(address=layout.start, values=list(layout.template), datatype=SimDataType.REGISTERS)
        return SimDevice(id=meter.unit, simdata=[block], action=functools.partial(self._answer, meter, layout))

    async def _answer(self, meter: SimMeter, layout: _Layout, function_code: int, start_address: int, address: int,
                      count: int, registers: list[int], set_values: Any) -> ExcCodes | None:
        """pymodbus calls this before serving a request: fill in the values for now."""
        meter.requests += 1
        if meter.fault is Fault.NO_RESPONSE:
            # With ignore_missing_devices the server sends nothing at all.
            raise NoSuchIdException(f"unit {meter.unit} does not answer (fault injection)")
        if meter.fault is Fault.EXCEPTION:
            return ExcCodes(meter.exception_code)
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        values = point_values(meter, self.clock.now_us())
        offset0 = layout.start - start_address
        for offset, point in layout.points:
            words = encode_raw(point, values.get(point.name))
            at = offset0 + offset
            registers[at:at + len(words)] = words
        return None

    def adapter_meters(self) -> list[dict[str, Any]]:
        """The ``meters`` array of an adapter config that reads this fleet."""
        return [{"id": m.meter_id, "host": m.host, "port": m.port, "unit": m.unit, "map": m.map_name}
                for m in self.meters]

