"""Bill-cycle export as CSV and JSON, streamed: one service point (or one
interval record) at a time, never the whole cycle in memory.

Numbers are exact strings: Wh as a fraction ("1234" or "7403/3" when
prorating splits intervals), kWh / kW as decimals (rounded to 6 places only
when a fraction has no finite decimal form).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from gateway.billing.determinants import CycleFailure, Demand, Determinants, IntervalCounts
from gateway.billing.records import BillingIntervalRecord

CYCLE_CSV_COLUMNS = (
    "service_point_id", "tariff", "period_start", "period_end", "meter_ids", "rate_period",
    "delivered_kwh", "received_kwh", "net_kwh", "max_demand_kw", "max_demand_time",
    "expected", "actual", "estimated", "edited", "missing", "suspect",
    "completeness_ppm", "billable", "not_billable_reasons", "error",
)
TOTAL_ROW = "TOTAL"

INTERVAL_CSV_COLUMNS = (
    "meter_id", "interval_start", "interval_end", "flow", "value_wh", "vee_status", "rate_period", "quality",
)


def _iso(d: Any) -> str:
    return str(d.isoformat().replace("+00:00", "Z"))


def _demand_cells(demand: Demand | None) -> list[str]:
    return ["", ""] if demand is None else [str(demand.kw), _iso(demand.interval_end)]


def _counts_cells(c: IntervalCounts) -> list[str]:
    return [str(c.expected), str(c.actual), str(c.estimated), str(c.edited), str(c.missing), str(c.suspect)]


class CycleCsvWriter:
    """Rows per service point: one per TOU period, then a TOTAL row.

    Period rows carry that period's maximum demand; the TOTAL row the overall
    maximum. Counts and billability repeat on every row of the service point,
    so any row stands alone. A failed service point is one row with ``error``.
    """

    def __init__(self, out: TextIO, *, header: bool = True) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        if header:
            self._writer.writerow(CYCLE_CSV_COLUMNS)

    def write(self, item: Determinants | CycleFailure) -> None:
        if isinstance(item, CycleFailure):
            row = [item.service_point_id] + [""] * (len(CYCLE_CSV_COLUMNS) - 2) + [f"{item.reason}: {item.message}"]
            self._writer.writerow(row)
            return
        head = [item.service_point_id, item.tariff, _iso(item.period.start), _iso(item.period.end),
                " ".join(item.meter_ids)]
        tail = [*_counts_cells(item.counts), str(item.completeness_ppm), "true" if item.billable else "false",
                "; ".join(item.not_billable_reasons), ""]
        by_period = {d.period: d for d in item.max_demand_by_period}
        for b in item.buckets:
            self._writer.writerow([*head, b.period, str(b.delivered_kwh), str(b.received_kwh), str(b.net_kwh),
                                   *_demand_cells(by_period.get(b.period)), *tail])
        self._writer.writerow([*head, TOTAL_ROW, str(item.total_delivered_kwh), str(item.total_received_kwh),
                               str(item.total_net_kwh), *_demand_cells(item.max_demand), *tail])


def _demand_json(d: Demand | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"watts": str(d.watts), "kw": str(d.kw), "interval_end": _iso(d.interval_end),
            "interval_end_local": d.interval_end_local.isoformat(), "period": d.period, "method": d.method}


def determinants_json(item: Determinants | CycleFailure) -> dict[str, Any]:
    """A JSON-ready dict of one service point's determinants (or failure)."""
    if isinstance(item, CycleFailure):
        return {"service_point_id": item.service_point_id, "error": {"reason": item.reason, "message": item.message}}
    c = item.counts
    return {
        "service_point_id": item.service_point_id,
        "tariff": item.tariff,
        "period": {"start": _iso(item.period.start), "end": _iso(item.period.end)},
        "meter_ids": list(item.meter_ids),
        "interval_seconds": item.interval_seconds,
        "net_metered": item.net_metered,
        "buckets": [
            {"period": b.period, "delivered_wh": str(b.delivered_wh), "received_wh": str(b.received_wh),
             "net_wh": str(b.net_wh), "delivered_kwh": str(b.delivered_kwh), "received_kwh": str(b.received_kwh),
             "net_kwh": str(b.net_kwh)}
            for b in item.buckets
        ],
        "total_delivered_wh": str(item.total_delivered_wh),
        "total_received_wh": str(item.total_received_wh),
        "total_net_wh": str(item.total_net_wh),
        "total_delivered_kwh": str(item.total_delivered_kwh),
        "total_received_kwh": str(item.total_received_kwh),
        "total_net_kwh": str(item.total_net_kwh),
        "max_demand": _demand_json(item.max_demand),
        "max_demand_by_period": [_demand_json(d) for d in item.max_demand_by_period],
        "counts": {"expected": c.expected, "actual": c.actual, "estimated": c.estimated, "edited": c.edited,
                   "missing": c.missing, "suspect": c.suspect, "billing_valid": c.billing_valid},
        "completeness": str(item.completeness),
        "completeness_ppm": item.completeness_ppm,
        "billable": item.billable,
        "not_billable_reasons": list(item.not_billable_reasons),
    }


def write_cycle_csv(items: Iterable[Determinants | CycleFailure], out: TextIO) -> int:
    """Streams a cycle as CSV; returns the number of service points written."""
    writer = CycleCsvWriter(out)
    n = 0
    for item in items:
        writer.write(item)
        n += 1
    return n


def _write_json_array(objects: Iterable[dict[str, Any]], out: TextIO) -> int:
    # One valid JSON array, written element by element.
    n = 0
    out.write("[")
    for obj in objects:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(obj, separators=(",", ":")))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def write_cycle_json(items: Iterable[Determinants | CycleFailure], out: TextIO) -> int:
    """Streams a cycle as one JSON array; returns the number of service points."""
    return _write_json_array((determinants_json(i) for i in items), out)


def interval_json(record: BillingIntervalRecord) -> dict[str, Any]:
    return {"meter_id": record.meter_id, "interval_start": _iso(record.interval_start),
            "interval_end": _iso(record.interval_end), "flow": record.flow, "value_wh": str(record.value_wh),
            "vee_status": record.vee_status.value, "rate_period": record.rate_period, "quality": record.quality}


def write_intervals_csv(records: Iterable[BillingIntervalRecord], out: TextIO, *, header: bool = True) -> int:
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(INTERVAL_CSV_COLUMNS)
    n = 0
    for r in records:
        writer.writerow([r.meter_id, _iso(r.interval_start), _iso(r.interval_end), r.flow, str(r.value_wh),
                         r.vee_status.value, r.rate_period, r.quality])
        n += 1
    return n


def write_intervals_json(records: Iterable[BillingIntervalRecord], out: TextIO) -> int:
    return _write_json_array((interval_json(r) for r in records), out)
