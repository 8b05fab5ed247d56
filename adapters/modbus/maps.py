"""Built-in register maps (SunSpec meter models 201-204, a float32 sub-meter)
and register maps described in TOML.

SunSpec layout (holding registers, 0-based addresses): "SunS" at 40000-40001,
the common model (ID 1, length 65) at 40002, the meter model's ID at 40069 and
its length (105) at 40070. Offsets below count from the meter model's ID
register; models 201-204 share one layout and differ in which phases exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.modbus.registers import DataType, Function, Point, Quantity, RegisterMap, WordOrder
from gateway.errors import ConfigError

SUNSPEC_BASE_ADDRESS = 40000
SUNSPEC_COMMON_LENGTH = 65
SUNSPEC_METER_MODEL_ADDRESS = SUNSPEC_BASE_ADDRESS + 2 + 2 + SUNSPEC_COMMON_LENGTH  # 40069
SUNSPEC_METER_MODEL_LENGTH = 105
SUNSPEC_METER_MODELS = (201, 202, 203, 204)

# Offsets from the model ID register of the integer + scale factor meter models.
_SUNSPEC_OFFSETS: dict[str, tuple[int, DataType, Quantity, str | None]] = {
    "A": (2, DataType.INT16, Quantity.CURRENT, "A_SF"),
    "AphA": (3, DataType.INT16, Quantity.CURRENT, "A_SF"),
    "AphB": (4, DataType.INT16, Quantity.CURRENT, "A_SF"),
    "AphC": (5, DataType.INT16, Quantity.CURRENT, "A_SF"),
    "A_SF": (6, DataType.SUNSSF, Quantity.SCALE_FACTOR, None),
    "PhV": (7, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PhVphA": (8, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PhVphB": (9, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PhVphC": (10, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PPV": (11, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PPVphAB": (12, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PPVphBC": (13, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "PPVphCA": (14, DataType.INT16, Quantity.VOLTAGE, "V_SF"),
    "V_SF": (15, DataType.SUNSSF, Quantity.SCALE_FACTOR, None),
    "Hz": (16, DataType.INT16, Quantity.FREQUENCY, "Hz_SF"),
    "Hz_SF": (17, DataType.SUNSSF, Quantity.SCALE_FACTOR, None),
    "W": (18, DataType.INT16, Quantity.POWER, "W_SF"),
    "WphA": (19, DataType.INT16, Quantity.POWER, "W_SF"),
    "WphB": (20, DataType.INT16, Quantity.POWER, "W_SF"),
    "WphC": (21, DataType.INT16, Quantity.POWER, "W_SF"),
    "W_SF": (22, DataType.SUNSSF, Quantity.SCALE_FACTOR, None),
    # TotWhExp: energy to the grid (received by the utility); TotWhImp: from the grid (delivered).
    "TotWhExp": (38, DataType.ACC32, Quantity.ENERGY_RECEIVED, "TotWh_SF"),
    "TotWhImp": (46, DataType.ACC32, Quantity.ENERGY_DELIVERED, "TotWh_SF"),
    "TotWh_SF": (54, DataType.SUNSSF, Quantity.SCALE_FACTOR, None),
}
_COMMON = ("A", "A_SF", "V_SF", "Hz", "Hz_SF", "W", "W_SF", "TotWhExp", "TotWhImp", "TotWh_SF")
_SUNSPEC_POINTS: dict[int, tuple[str, ...]] = {
    201: (*_COMMON, "AphA", "PhV", "PhVphA", "WphA"),
    202: (*_COMMON, "AphA", "AphB", "PhV", "PhVphA", "PhVphB", "PPV", "WphA", "WphB"),
    203: (*_COMMON, "AphA", "AphB", "AphC", "PhV", "PhVphA", "PhVphB", "PhVphC", "PPV", "WphA", "WphB", "WphC"),
    204: (*_COMMON, "AphA", "AphB", "AphC", "PPV", "PPVphAB", "PPVphBC", "PPVphCA", "WphA", "WphB", "WphC"),
}
SUNSPEC_MODEL_NAMES = {201: "single-phase", 202: "split-phase", 203: "wye three-phase", 204: "delta three-phase"}


def sunspec_meter_map(model: int, model_address: int = SUNSPEC_METER_MODEL_ADDRESS) -> RegisterMap:
    """The map of SunSpec meter model 201-204 whose ID register is at ``model_address``."""
    if model not in _SUNSPEC_POINTS:
        raise ValueError(f"SunSpec meter model {model} is not one of {SUNSPEC_METER_MODELS}")
    points = []
    for name in _SUNSPEC_POINTS[model]:
        offset, dtype, quantity, factor = _SUNSPEC_OFFSETS[name]
        points.append(Point(name=name, address=model_address + offset, data_type=dtype, quantity=quantity,
                            scale_register=factor))
    points.sort(key=lambda p: p.address)
    return RegisterMap(name=f"sunspec_{model}", points=tuple(points), sunspec_sentinels=True)


def sunspec_offset(name: str) -> int:
    """Offset of a meter model point from the model ID register (for the simulator)."""
    return _SUNSPEC_OFFSETS[name][0]


# A float32 input-register layout common to DIN-rail sub-meters: values in SI
# units (energy in kWh), high word first, two registers per value.
def float_submeter_map() -> RegisterMap:
    def point(name: str, address: int, quantity: Quantity, scale: int, unit_exponent: int = 0) -> Point:
        return Point(name=name, address=address, data_type=DataType.FLOAT32, quantity=quantity,
                     function=Function.INPUT, scale=scale, unit_exponent=unit_exponent)

    # scale is the resolution of the exact count in the register's unit: -1 = 0.1 V,
    # -3 = 1 mA; energy is in kWh (unit_exponent 3) counted in 0.01 kWh = 10 Wh.
    return RegisterMap(name="float_submeter", points=(
        point("VoltageL1", 0, Quantity.VOLTAGE, -1),
        point("VoltageL2", 2, Quantity.VOLTAGE, -1),
        point("VoltageL3", 4, Quantity.VOLTAGE, -1),
        point("CurrentL1", 6, Quantity.CURRENT, -3),
        point("CurrentL2", 8, Quantity.CURRENT, -3),
        point("CurrentL3", 10, Quantity.CURRENT, -3),
        point("TotalPower", 52, Quantity.POWER, 0),
        point("Frequency", 70, Quantity.FREQUENCY, -2),
        point("ImportEnergy", 72, Quantity.ENERGY_DELIVERED, -2, 3),
        point("ExportEnergy", 74, Quantity.ENERGY_RECEIVED, -2, 3),
        point("TotalDemand", 84, Quantity.DEMAND, 0),
        point("MaxTotalDemand", 86, Quantity.DEMAND_MAX, 0),
    ))


def builtin_maps() -> dict[str, RegisterMap]:
    maps = {f"sunspec_{m}": sunspec_meter_map(m) for m in SUNSPEC_METER_MODELS}
    maps["float_submeter"] = float_submeter_map()
    return maps


_POINT_KEYS = {"name", "address", "type", "quantity", "function", "word_order", "scale", "scale_register",
               "unit_exponent"}


def map_from_mapping(name: str, table: Mapping[str, Any]) -> RegisterMap:
    """A register map from its TOML table (see docs/modbus.md). Raises ConfigError
    naming the wrong key."""
    unknown = set(table) - {"points", "sunspec_sentinels"}
    if unknown:
        raise ConfigError(f"maps.{name}: unknown key(s) {sorted(unknown)}")
    raw_points = table.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        raise ConfigError(f"maps.{name}.points must be a non-empty array of tables")
    sentinels = table.get("sunspec_sentinels", False)
    if not isinstance(sentinels, bool):
        raise ConfigError(f"maps.{name}.sunspec_sentinels must be true or false")
    points = []
    for i, raw in enumerate(raw_points):
        where = f"maps.{name}.points[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        extra = set(raw) - _POINT_KEYS
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
        points.append(_point_from_mapping(where, raw))
    try:
        return RegisterMap(name=name, points=tuple(points), sunspec_sentinels=sentinels)
    except ValueError as exc:
        raise ConfigError(str(exc), metadata={"key": f"maps.{name}"}) from exc


def _point_from_mapping(where: str, raw: Mapping[str, Any]) -> Point:
    def enum_value(key: str, cls: Any, default: Any) -> Any:
        value = raw.get(key, default.value if default is not None else None)
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in cls)
            raise ConfigError(f"{where}.{key} = {value!r} is not one of {allowed}") from None

    point_name = raw.get("name")
    if not isinstance(point_name, str) or not point_name:
        raise ConfigError(f"{where}.name must be a non-empty string")
    address = raw.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        raise ConfigError(f"{where}.address = {address!r} must be an integer 0..65535")
    if "type" not in raw:
        raise ConfigError(f"{where}.type is required")
    dtype = enum_value("type", DataType, None)
    quantity = Quantity.SCALE_FACTOR if dtype is DataType.SUNSSF else enum_value("quantity", Quantity, None)
    function_name = raw.get("function", "holding")
    if function_name not in ("holding", "input"):
        raise ConfigError(f"{where}.function = {function_name!r} is not one of holding, input")
    function = Function.HOLDING if function_name == "holding" else Function.INPUT
    word_order = enum_value("word_order", WordOrder, WordOrder.BIG)
    scale = raw.get("scale", 0)
    if not isinstance(scale, int) or isinstance(scale, bool) or abs(scale) > 18:
        raise ConfigError(f"{where}.scale = {scale!r} must be an integer power of ten (-18..18)")
    scale_register = raw.get("scale_register")
    if scale_register is not None and not isinstance(scale_register, str):
        raise ConfigError(f"{where}.scale_register must be a point name")
    if scale_register is not None and "scale" in raw:
        raise ConfigError(f"{where}: give scale or scale_register, not both")
    if scale_register is not None and dtype is DataType.FLOAT32:
        raise ConfigError(f"{where}: a float32 point takes a fixed scale, not scale_register")
    unit_exponent = raw.get("unit_exponent", 0)
    if not isinstance(unit_exponent, int) or isinstance(unit_exponent, bool) or abs(unit_exponent) > 18:
        raise ConfigError(f"{where}.unit_exponent = {unit_exponent!r} must be an integer (-18..18)")
    return Point(name=point_name, address=address, data_type=dtype, quantity=quantity, function=function,
                 word_order=word_order, scale=scale, scale_register=scale_register, unit_exponent=unit_exponent)
