"""VEE: validation, estimation and editing rules over channel-day arrays.

Pure: no I/O. The gateway loads what a run needs from the store and calls::

    engine = VeeEngine(parse_vee_toml(text))          # or default_config()
    request = engine.history_request(batch)            # which stored days help
    result = engine.run(batch, VeeContext(history=..., registers=..., day_types=...))
"""

from vee.batch import History, RegisterSpans, VeeBatch, VeeContext
from vee.blocks import (
    DayComparison,
    ReadDuplicates,
    TimingProblem,
    check_block_timing,
    compare_with_stored,
    conflict_items,
    find_duplicate_reads,
    timing_item,
)
from vee.config import (
    RULE_NAMES,
    RuleSet,
    VeeConfig,
    default_config,
    default_config_text,
    parse_vee_config,
    parse_vee_toml,
)
from vee.engine import HistoryRequest, VeeEngine, VeeResult
from vee.estimation import interpolate_gap, late_actual_replaces
from vee.items import ExceptionItem, Severity
from vee.localtime import DayType, DayTypeCalendar, LocalDaySlots, gather_local_day, local_day_slots, scatter_local_day
from vee.longest import long_estimation_items

__all__ = [
    "RULE_NAMES",
    "DayComparison",
    "DayType",
    "DayTypeCalendar",
    "ExceptionItem",
    "History",
    "HistoryRequest",
    "LocalDaySlots",
    "ReadDuplicates",
    "RegisterSpans",
    "RuleSet",
    "Severity",
    "TimingProblem",
    "VeeBatch",
    "VeeConfig",
    "VeeContext",
    "VeeEngine",
    "VeeResult",
    "check_block_timing",
    "compare_with_stored",
    "conflict_items",
    "default_config",
    "default_config_text",
    "find_duplicate_reads",
    "gather_local_day",
    "interpolate_gap",
    "late_actual_replaces",
    "local_day_slots",
    "long_estimation_items",
    "parse_vee_config",
    "parse_vee_toml",
    "scatter_local_day",
    "timing_item",
]
