"""A simulated IEC 61968-9 head-end: pushes created events, answers get
requests and writes batch files, with fault injection."""

from simulators.cim.faults import FAULT_KINDS, FaultPlan
from simulators.cim.fleet import Fleet

__all__ = ["FAULT_KINDS", "FaultPlan", "Fleet"]
