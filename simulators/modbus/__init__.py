"""Simulated Modbus TCP meters (SunSpec 201-204, float32 sub-meter) with fault
injection: ``meterhub sim modbus``. See docs/modbus.md."""

from simulators.modbus.model import MeterModel
from simulators.modbus.server import Fault, ModbusSimFleet, SimMeter, point_values

__all__ = ["Fault", "MeterModel", "ModbusSimFleet", "SimMeter", "point_values"]
