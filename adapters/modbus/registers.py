"""Register maps and register-word decoding (pure: no I/O).

A register map lists points: where a value lives (function, address, data
type, word order), how to scale it (a fixed power of ten or a SunSpec scale
factor register) and what it measures (a :class:`Quantity`). ``plan_reads``
merges the points into as few read requests as possible; ``decode_points``
turns the words of those requests into exact integer values.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from adapters.modbus.errors import ModbusProtocolError

# Modbus allows at most 125 registers in one read-holding/input-registers request.
MAX_REGISTERS_PER_READ = 125
MAX_ADDRESS = 0xFFFF
# A SunSpec scale factor outside this range is garbage, not a unit prefix.
MAX_SCALE_FACTOR = 10


class DataType(enum.Enum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    # SunSpec accumulators: unsigned counters that roll over.
    ACC32 = "acc32"
    ACC64 = "acc64"
    FLOAT32 = "float32"
    # SunSpec scale factor: int16 power of ten, 0x8000 when not implemented.
    SUNSSF = "sunssf"

    @property
    def words(self) -> int:
        return _WORDS[self]

    @property
    def rollover_modulus(self) -> int | None:
        """Counters of these types wrap to zero past their maximum."""
        return _ROLLOVER.get(self)


_WORDS = {DataType.INT16: 1, DataType.UINT16: 1, DataType.SUNSSF: 1, DataType.INT32: 2, DataType.UINT32: 2,
          DataType.ACC32: 2, DataType.FLOAT32: 2, DataType.ACC64: 4}
_ROLLOVER = {DataType.ACC32: 1 << 32, DataType.UINT32: 1 << 32, DataType.ACC64: 1 << 64}
# SunSpec "not implemented" values, by type.
_NOT_IMPLEMENTED = {DataType.INT16: 0x8000, DataType.UINT16: 0xFFFF, DataType.SUNSSF: 0x8000,
                    DataType.INT32: 0x80000000, DataType.UINT32: 0xFFFFFFFF}


class WordOrder(enum.Enum):
    # High word first (Modbus convention, SunSpec).
    BIG = "big"
    # Low word first ("word swapped" devices).
    LITTLE = "little"


class Function(enum.Enum):
    HOLDING = 3
    INPUT = 4


class Quantity(enum.Enum):
    """What a point measures; normalize.py maps each to a ReadingType."""

    ENERGY_DELIVERED = "energy_delivered"
    ENERGY_RECEIVED = "energy_received"
    POWER = "power"
    VOLTAGE = "voltage"
    CURRENT = "current"
    FREQUENCY = "frequency"
    POWER_FACTOR = "power_factor"
    DEMAND = "demand"
    DEMAND_MAX = "demand_max"
    # A SunSpec scale factor register, read only to scale other points.
    SCALE_FACTOR = "scale_factor"

    @property
    def is_energy(self) -> bool:
        return self in (Quantity.ENERGY_DELIVERED, Quantity.ENERGY_RECEIVED)


@dataclass(frozen=True, slots=True)
class Point:
    """One value in a device's register space.

    The register holds the quantity in 10^``unit_exponent`` base units (3 for kWh
    when the base unit is Wh). Integer types count 10^``scale`` register units, or
    10^(value of the ``scale_register`` point); a float32 is turned into an exact
    integer count of 10^``scale`` register units (rounded half to even).
    """

    name: str
    address: int
    data_type: DataType
    quantity: Quantity
    function: Function = Function.HOLDING
    word_order: WordOrder = WordOrder.BIG
    scale: int = 0
    scale_register: str | None = None
    unit_exponent: int = 0

    @property
    def end(self) -> int:
        return self.address + self.data_type.words


@dataclass(frozen=True, slots=True)
class ReadRange:
    """One read request: ``count`` registers from ``address``."""

    function: Function
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A device layout: its points, validated so every scale register exists."""

    name: str
    points: tuple[Point, ...]
    # SunSpec sentinels (0x8000, 0xFFFF...) mean "not implemented".
    sunspec_sentinels: bool = False

    def __post_init__(self) -> None:
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError(f"map {self.name}: duplicate point names")
        by_name = {p.name: p for p in self.points}
        for point in self.points:
            if point.address < 0 or point.end - 1 > MAX_ADDRESS:
                raise ValueError(f"map {self.name}: point {point.name} address {point.address} out of range")
            if point.scale_register is not None:
                target = by_name.get(point.scale_register)
                if target is None or target.data_type is not DataType.SUNSSF:
                    raise ValueError(f"map {self.name}: point {point.name} names scale register "
                                     f"{point.scale_register!r}, which is not a sunssf point of the map")
            if point.data_type is DataType.SUNSSF and point.quantity is not Quantity.SCALE_FACTOR:
                raise ValueError(f"map {self.name}: sunssf point {point.name} must have quantity scale_factor")

    @property
    def value_points(self) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.quantity is not Quantity.SCALE_FACTOR)


def plan_reads(points: Sequence[Point], *, max_gap: int = 0,
               max_count: int = MAX_REGISTERS_PER_READ) -> tuple[ReadRange, ...]:
    """Merge the points' registers into few requests: registers of one function that
    are contiguous (or separated by at most ``max_gap`` unused registers) share a
    request of at most ``max_count`` registers."""
    ranges: list[ReadRange] = []
    for function in Function:
        spans = sorted((p.address, p.end) for p in points if p.function is function)
        current: list[int] | None = None
        for start, end in spans:
            if current is not None and start - current[1] <= max_gap and max(end, current[1]) - current[0] <= max_count:
                current[1] = max(current[1], end)
                continue
            if current is not None:
                ranges.append(ReadRange(function, current[0], current[1] - current[0]))
            current = [start, end]
        if current is not None:
            ranges.append(ReadRange(function, current[0], current[1] - current[0]))
    return tuple(ranges)


def _word_value(words: Sequence[int], order: WordOrder) -> int:
    """Unsigned integer from 16-bit words in the given word order."""
    seq = words if order is WordOrder.BIG else list(reversed(words))
    value = 0
    for word in seq:
        value = (value << 16) | word
    return value


def decode_raw(point: Point, words: Sequence[int], *, sunspec_sentinels: bool) -> int | float | None:
    """The raw register value of a point (int, or float for float32), or None when
    the device marks it not implemented."""
    if len(words) != point.data_type.words:
        raise ModbusProtocolError(f"point {point.name}: expected {point.data_type.words} words, got {len(words)}")
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise ModbusProtocolError(f"point {point.name}: register value {word!r} is not a 16-bit word")
    unsigned = _word_value(words, point.word_order)
    dtype = point.data_type
    if sunspec_sentinels and _NOT_IMPLEMENTED.get(dtype) == unsigned:
        return None
    if dtype is DataType.FLOAT32:
        value = float(struct.unpack(">f", unsigned.to_bytes(4, "big"))[0])
        return None if math.isnan(value) or math.isinf(value) else value
    if dtype in (DataType.INT16, DataType.SUNSSF):
        return unsigned - (1 << 16) if unsigned & 0x8000 else unsigned
    if dtype is DataType.INT32:
        return unsigned - (1 << 32) if unsigned & 0x80000000 else unsigned
    return unsigned


def encode_raw(point: Point, value: int | float | None) -> list[int]:
    """Register words of a raw value (the inverse of :func:`decode_raw`); None writes
    the SunSpec not-implemented value. Unsigned types wrap, as counters do."""
    dtype = point.data_type
    width = 16 * dtype.words
    if value is None:
        unsigned = _NOT_IMPLEMENTED.get(dtype, 0) if dtype is not DataType.FLOAT32 else 0x7FC00000
    elif dtype is DataType.FLOAT32:
        unsigned = int.from_bytes(struct.pack(">f", float(value)), "big")
    else:
        unsigned = int(value) % (1 << width)
    words = [(unsigned >> (16 * i)) & 0xFFFF for i in reversed(range(dtype.words))]
    return words if point.word_order is WordOrder.BIG else list(reversed(words))


@dataclass(frozen=True, slots=True)
class PointValue:
    """An exact value: ``value`` counts of 10^``exponent`` of the quantity's unit
    (for integer types, the register integer itself, so counters roll over on it)."""

    point: Point
    value: int
    exponent: int


def float_to_count(value: float, exponent: int) -> int:
    """Exact integer count of 10^exponent units nearest to a float register value."""
    quantum = Decimal(value).scaleb(-exponent)
    return int(quantum.to_integral_value(rounding=ROUND_HALF_EVEN))


def decode_points(register_map: RegisterMap, blocks: Mapping[ReadRange, Sequence[int]]) -> dict[str, PointValue]:
    """Decode every implemented value point from the words of the planned reads."""
    words_at: dict[tuple[Function, int], int] = {}
    for read, words in blocks.items():
        if len(words) != read.count:
            raise ModbusProtocolError(f"read of {read.count} registers at {read.address} returned {len(words)}")
        for i, word in enumerate(words):
            words_at[(read.function, read.address + i)] = word

    def words_of(point: Point) -> list[int]:
        try:
            return [words_at[(point.function, point.address + i)] for i in range(point.data_type.words)]
        except KeyError as exc:
            raise ModbusProtocolError(f"point {point.name} was not read") from exc

    sentinels = register_map.sunspec_sentinels
    factors: dict[str, int | None] = {}
    for point in register_map.points:
        if point.data_type is DataType.SUNSSF:
            raw = decode_raw(point, words_of(point), sunspec_sentinels=True)
            if raw is not None and (not isinstance(raw, int) or abs(raw) > MAX_SCALE_FACTOR):
                raise ModbusProtocolError(f"scale factor {point.name}={raw} out of range", remote=True)
            factors[point.name] = raw if isinstance(raw, int) else None
    out: dict[str, PointValue] = {}
    for point in register_map.value_points:
        raw = decode_raw(point, words_of(point), sunspec_sentinels=sentinels)
        if raw is None:
            continue
        if isinstance(raw, float):
            out[point.name] = PointValue(point, float_to_count(raw, point.scale), point.scale + point.unit_exponent)
            continue
        if point.scale_register is not None:
            factor = factors.get(point.scale_register)
            if factor is None:
                continue
            out[point.name] = PointValue(point, raw, factor + point.unit_exponent)
        else:
            out[point.name] = PointValue(point, raw, point.scale + point.unit_exponent)
    return out
