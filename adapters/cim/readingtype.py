"""IEC 61968-9 18-field ReadingType codes <-> meterhub.v1.ReadingType.

A code is ``macroPeriod.aggregate.measuringPeriod.accumulation.flowDirection.
commodity.measurementKind.interharmonicNumerator.interharmonicDenominator.
argumentNumerator.argumentDenominator.tou.cpp.consumptionTier.phases.
multiplier.unit.currency``, each field an integer from the 61968-9 enumerations.
Our model keeps fewer dimensions, so the original code travels in
``ReadingType.cim_code`` and is what we send back when present.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cim.errors import BadReadingType
from meterhub.v1 import model_pb2 as pb

FIELD_NAMES = (
    "macro_period", "aggregate", "measuring_period", "accumulation", "flow_direction", "commodity",
    "measurement_kind", "interharmonic_numerator", "interharmonic_denominator", "argument_numerator",
    "argument_denominator", "tou", "cpp", "consumption_tier", "phases", "multiplier", "unit", "currency",
)
MAX_CODE_CHARS = 128

# TimeAttributeKind (measuringPeriod) -> seconds.
MEASURING_PERIOD_SECONDS = {
    1: 600, 2: 900, 3: 60, 4: 86400, 5: 1800, 6: 300, 7: 3600, 10: 120, 14: 180, 31: 1200,
}
SECONDS_MEASURING_PERIOD = {v: k for k, v in MEASURING_PERIOD_SECONDS.items()}
MACRO_PERIOD_DAILY = 11
MACRO_PERIOD_BILLING = 8

# AccumulationKind.
ACC_BULK, ACC_CONTINUOUS_CUMULATIVE, ACC_CUMULATIVE, ACC_DELTA = 1, 2, 3, 4
ACC_INDICATING, ACC_SUMMATION, ACC_INSTANTANEOUS, ACC_LATCHING = 6, 9, 12, 13
# AggregateKind.
AGG_AVERAGE, AGG_MAXIMUM = 2, 8
# FlowDirectionKind.
FLOW_FORWARD, FLOW_NET, FLOW_REVERSE, FLOW_TOTAL = 1, 4, 19, 20
# MeasurementKind.
MK_CURRENT, MK_DEMAND, MK_ENERGY, MK_FREQUENCY, MK_POWER, MK_POWER_FACTOR, MK_VOLTAGE, MK_VOLUME = (
    4, 8, 12, 15, 37, 38, 54, 58)
# UnitSymbol.
U_A, U_V, U_J, U_HZ, U_W, U_M3, U_VA, U_VAR, U_COS, U_VAH, U_WH, U_VARH, U_COUNT = (
    5, 29, 31, 33, 38, 42, 61, 63, 65, 71, 72, 73, 111)

_COMMODITY = {1: pb.COMMODITY_ELECTRICITY, 2: pb.COMMODITY_ELECTRICITY, 7: pb.COMMODITY_GAS,
              8: pb.COMMODITY_GAS, 9: pb.COMMODITY_WATER, 14: pb.COMMODITY_WATER,
              10: pb.COMMODITY_HEAT, 12: pb.COMMODITY_HEAT}
_COMMODITY_CODE = {pb.COMMODITY_ELECTRICITY: 1, pb.COMMODITY_GAS: 7, pb.COMMODITY_WATER: 9,
                   pb.COMMODITY_HEAT: 12, pb.COMMODITY_UNSPECIFIED: 0}
_UNIT = {U_A: pb.UNIT_AMPERE, U_V: pb.UNIT_VOLT, U_J: pb.UNIT_JOULE, U_HZ: pb.UNIT_HERTZ, U_W: pb.UNIT_WATT,
         U_M3: pb.UNIT_CUBIC_METRE, U_VA: pb.UNIT_VOLT_AMPERE, U_VAR: pb.UNIT_VAR, U_COS: pb.UNIT_COS_PHI,
         U_VAH: pb.UNIT_VOLT_AMPERE_HOUR, U_WH: pb.UNIT_WATT_HOUR, U_VARH: pb.UNIT_VAR_HOUR,
         U_COUNT: pb.UNIT_COUNT}
_UNIT_CODE = {v: k for k, v in _UNIT.items()}
_FLOW = {1: pb.FLOW_DIRECTION_DELIVERED, 19: pb.FLOW_DIRECTION_RECEIVED, 4: pb.FLOW_DIRECTION_NET,
         20: pb.FLOW_DIRECTION_TOTAL}
_FLOW_CODE = {v: k for k, v in _FLOW.items()} | {pb.FLOW_DIRECTION_UNSPECIFIED: 0}
# Unit -> the kind it measures when measurementKind is energy / power / absent.
_ENERGY_KIND = {pb.UNIT_WATT_HOUR: pb.MEASUREMENT_KIND_ACTIVE_ENERGY,
                pb.UNIT_VAR_HOUR: pb.MEASUREMENT_KIND_REACTIVE_ENERGY,
                pb.UNIT_VOLT_AMPERE_HOUR: pb.MEASUREMENT_KIND_APPARENT_ENERGY,
                pb.UNIT_JOULE: pb.MEASUREMENT_KIND_ACTIVE_ENERGY}
_POWER_KIND = {pb.UNIT_WATT: pb.MEASUREMENT_KIND_ACTIVE_POWER, pb.UNIT_VAR: pb.MEASUREMENT_KIND_REACTIVE_POWER,
               pb.UNIT_VOLT_AMPERE: pb.MEASUREMENT_KIND_APPARENT_POWER}
_KIND_BY_MK = {MK_VOLTAGE: pb.MEASUREMENT_KIND_VOLTAGE, MK_CURRENT: pb.MEASUREMENT_KIND_CURRENT,
               MK_FREQUENCY: pb.MEASUREMENT_KIND_FREQUENCY, MK_POWER_FACTOR: pb.MEASUREMENT_KIND_POWER_FACTOR,
               MK_VOLUME: pb.MEASUREMENT_KIND_VOLUME, MK_DEMAND: pb.MEASUREMENT_KIND_DEMAND}
_MK_BY_KIND = {v: k for k, v in _KIND_BY_MK.items()} | {
    pb.MEASUREMENT_KIND_ACTIVE_ENERGY: MK_ENERGY, pb.MEASUREMENT_KIND_REACTIVE_ENERGY: MK_ENERGY,
    pb.MEASUREMENT_KIND_APPARENT_ENERGY: MK_ENERGY, pb.MEASUREMENT_KIND_ACTIVE_POWER: MK_POWER,
    pb.MEASUREMENT_KIND_REACTIVE_POWER: MK_POWER, pb.MEASUREMENT_KIND_APPARENT_POWER: MK_POWER,
    pb.MEASUREMENT_KIND_UNSPECIFIED: 0}


@dataclass(frozen=True, slots=True)
class CimReadingType:
    """The 18 integer fields of a ReadingType code, in code order."""

    fields: tuple[int, ...]

    def __getattr__(self, name: str) -> int:
        try:
            return self.fields[FIELD_NAMES.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    @property
    def code(self) -> str:
        return ".".join(str(f) for f in self.fields)

    @property
    def multiplier(self) -> int:
        return self.fields[15]

    @property
    def interval_seconds(self) -> int | None:
        """Length of one interval of a block of this type, None if the code has none."""
        seconds = MEASURING_PERIOD_SECONDS.get(self.fields[2])
        if seconds is None and self.fields[0] == MACRO_PERIOD_DAILY:
            return 86400
        return seconds


def parse_code(code: str) -> CimReadingType:
    """Split and check an 18-field code; every failure is BadReadingType."""
    if len(code) > MAX_CODE_CHARS:
        raise BadReadingType(f"ReadingType code of {len(code)} characters is too long")
    parts = code.strip().split(".")
    if len(parts) != len(FIELD_NAMES):
        raise BadReadingType(f"ReadingType {code!r} has {len(parts)} fields, expected {len(FIELD_NAMES)}")
    fields: list[int] = []
    for name, part in zip(FIELD_NAMES, parts, strict=True):
        text = part[1:] if part.startswith("-") else part
        if not text.isascii() or not text.isdigit() or len(text) > 6:
            raise BadReadingType(f"ReadingType {code!r}: field {name} {part!r} is not an integer")
        value = int(part)
        if value < 0 and name != "multiplier":
            raise BadReadingType(f"ReadingType {code!r}: field {name} {value} is negative")
        fields.append(value)
    if abs(fields[15]) > 24:
        raise BadReadingType(f"ReadingType {code!r}: multiplier 10^{fields[15]} is out of range")
    return CimReadingType(tuple(fields))


def to_reading_type(cim: CimReadingType, *, decimals: int) -> pb.ReadingType:
    """Map a code to our ReadingType. ``power_of_ten_multiplier`` is the code's
    multiplier minus ``decimals`` (the default resolution: kWh with 3 -> Wh)."""
    unit = _UNIT.get(cim.fields[16])
    if unit is None:
        raise BadReadingType(f"ReadingType {cim.code!r}: unit symbol {cim.fields[16]} is not supported")
    mk = cim.fields[6]
    acc, agg = cim.fields[3], cim.fields[1]
    if mk in _KIND_BY_MK:
        kind = _KIND_BY_MK[mk]
    elif mk in (MK_ENERGY, 0) and unit in _ENERGY_KIND:
        kind = _ENERGY_KIND[unit]
    elif mk in (MK_POWER, 0) and unit in _POWER_KIND:
        kind = _POWER_KIND[unit]
    else:
        raise BadReadingType(f"ReadingType {cim.code!r}: measurement kind {mk} with unit "
                             f"{cim.fields[16]} is not supported")
    if agg == AGG_MAXIMUM:
        accumulation = pb.ACCUMULATION_MAXIMUM
    elif acc == ACC_DELTA:
        accumulation = pb.ACCUMULATION_DELTA
    elif acc in (ACC_BULK, ACC_CONTINUOUS_CUMULATIVE, ACC_CUMULATIVE, ACC_SUMMATION):
        accumulation = pb.ACCUMULATION_CUMULATIVE
    elif acc in (ACC_INDICATING, ACC_INSTANTANEOUS, ACC_LATCHING, 0):
        accumulation = pb.ACCUMULATION_INSTANTANEOUS
    else:
        raise BadReadingType(f"ReadingType {cim.code!r}: accumulation {acc} is not supported")
    exponent = cim.multiplier - decimals
    return pb.ReadingType(
        commodity=_COMMODITY.get(cim.fields[5], pb.COMMODITY_UNSPECIFIED),
        kind=kind, unit=unit, flow_direction=_FLOW.get(cim.fields[4], pb.FLOW_DIRECTION_UNSPECIFIED),
        accumulation=accumulation, power_of_ten_multiplier=exponent, cim_code=cim.code,
    )


def code_for(rt: pb.ReadingType, interval_seconds: int | None) -> CimReadingType:
    """The code to send for a ReadingType: its own ``cim_code`` when it has one,
    otherwise one derived from the model (kilo multiplier for energy and power)."""
    if rt.cim_code:
        return parse_code(rt.cim_code)
    unit = _UNIT_CODE.get(rt.unit)
    if unit is None:
        raise BadReadingType(f"reading type with unit {rt.unit} has no CIM unit symbol", remote=False)
    fields = [0] * 18
    if rt.accumulation == pb.ACCUMULATION_MAXIMUM:
        fields[0], fields[1], fields[3] = MACRO_PERIOD_BILLING, AGG_MAXIMUM, ACC_INDICATING
    elif rt.accumulation == pb.ACCUMULATION_DELTA:
        fields[3] = ACC_DELTA
    elif rt.accumulation == pb.ACCUMULATION_CUMULATIVE:
        fields[3] = ACC_SUMMATION
    elif rt.accumulation == pb.ACCUMULATION_INSTANTANEOUS:
        fields[3] = ACC_INDICATING
    if interval_seconds:
        period = SECONDS_MEASURING_PERIOD.get(interval_seconds)
        if period is None:
            raise BadReadingType(f"interval of {interval_seconds} s has no CIM measuring period", remote=False)
        if period == 4 and rt.accumulation == pb.ACCUMULATION_DELTA:
            fields[0] = MACRO_PERIOD_DAILY  # daily consumption is a macro period
        else:
            fields[2] = period
    fields[4] = _FLOW_CODE.get(rt.flow_direction, 0)
    fields[5] = _COMMODITY_CODE.get(rt.commodity, 0)
    fields[6] = _MK_BY_KIND.get(rt.kind, 0)
    fields[15] = 3 if rt.unit in (pb.UNIT_WATT_HOUR, pb.UNIT_WATT, pb.UNIT_VAR_HOUR, pb.UNIT_VAR,
                                  pb.UNIT_VOLT_AMPERE_HOUR, pb.UNIT_VOLT_AMPERE) else 0
    fields[16] = unit
    return CimReadingType(tuple(fields))


# Codes head-ends commonly send, with what they mean in our model; tests check
# that each parses to this and derives back to the same code.
COMMON_CODES: dict[str, tuple[str, int | None]] = {
    "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh delivered, 15-min delta", 900),
    "0.0.2.4.19.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh received, 15-min delta", 900),
    "0.0.2.4.4.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh net, 15-min delta", 900),
    "0.0.5.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh delivered, 30-min delta", 1800),
    "0.0.7.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh delivered, 60-min delta", 3600),
    "11.0.0.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh delivered, daily delta", 86400),
    "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.73.0": ("kVArh delivered, 15-min delta", 900),
    "0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh delivered, bulk register (summation)", None),
    "0.0.0.9.19.1.12.0.0.0.0.0.0.0.0.3.72.0": ("kWh received, bulk register (summation)", None),
    "8.8.0.6.1.1.8.0.0.0.0.0.0.0.0.3.38.0": ("kW delivered, maximum demand in the billing period", None),
    "0.0.2.6.1.1.8.0.0.0.0.0.0.0.0.3.38.0": ("kW delivered, 15-min demand", 900),
    "0.0.2.6.0.1.54.0.0.0.0.0.0.0.0.0.29.0": ("V, 15-min voltage", 900),
    "0.0.0.6.0.1.54.0.0.0.0.0.0.0.0.0.29.0": ("V, voltage now", None),
    "0.0.2.6.0.1.4.0.0.0.0.0.0.0.0.0.5.0": ("A, 15-min current", 900),
    "0.0.2.6.0.1.15.0.0.0.0.0.0.0.0.0.33.0": ("Hz, 15-min frequency", 900),
    "0.0.7.4.1.7.58.0.0.0.0.0.0.0.0.0.42.0": ("m3 gas, hourly delta", 3600),
    "0.0.0.9.1.9.58.0.0.0.0.0.0.0.0.0.42.0": ("m3 water, register", None),
}
