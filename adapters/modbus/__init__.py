"""Modbus TCP meters (SunSpec meter models 201-204 and configurable register
maps), polled with pymodbus. See docs/modbus.md."""

from adapters.modbus.adapter import ModbusAdapter, create_adapter
from adapters.modbus.clock import PollClock, ScaledClock, SystemClock
from adapters.modbus.config import ModbusConfig, parse_config
from adapters.modbus.maps import builtin_maps, float_submeter_map, map_from_mapping, sunspec_meter_map
from adapters.modbus.registers import DataType, Point, Quantity, RegisterMap

__all__ = [
    "DataType",
    "ModbusAdapter",
    "ModbusConfig",
    "Point",
    "PollClock",
    "Quantity",
    "RegisterMap",
    "ScaledClock",
    "SystemClock",
    "builtin_maps",
    "create_adapter",
    "float_submeter_map",
    "map_from_mapping",
    "parse_config",
    "sunspec_meter_map",
]
