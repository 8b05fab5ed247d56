# mypy: disable-error-code="comparison-overlap"
# (Fractions and Decimals are compared with the ints of hand-computed values.)
"""Acceptance: one month, determinants computed by hand.

Month: November 2026 in America/New_York, billed from local midnight
2026-11-01 (EDT, 04:00Z) to local midnight 2026-12-01 (EST, 05:00Z).
It holds a DST change (Sunday Nov 1, 02:00 EDT -> 01:00 EST: a 100-interval
day), a holiday (Thanksgiving, Thursday Nov 26), a critical-peak event day
(Wednesday Nov 18), an estimated gap, a meter exchange and a net-metered
solar customer.

Intervals in the month (15 min): 29 days x 96 + 100 = 2884.

Calendar of November 2026: Nov 1 is a Sunday.
  weekdays: 2-6, 9-13, 16-20, 23-27, 30 = 21, minus Thanksgiving (26) = 20
  weekend days: 1, 7, 8, 14, 15, 21, 22, 28, 29 = 9; holiday: 1 (26)

Tariff (below): super_off_peak 00:00-06:00 every day; on_peak 17:00-21:00 on
weekdays; on the event day critical_peak 14:00-18:00 overrides; the rest off_peak.

Intervals per TOU period, by hand:
  super_off_peak: 24 per day x 29 days + 28 on Nov 1 (01:00-02:00 happens
                  twice, so 00:00-06:00 local lasts 7 hours)   = 696 + 28 = 724
  critical_peak:  Nov 18 14:00-18:00 = 4 h x 4                    = 16
  on_peak:        20 weekdays x 16 = 320, minus Nov 18 17:00-18:00
                  (now critical) 4                                = 316
  off_peak:       2884 - 724 - 16 - 316                           = 1828
    (check: 10 weekend/holiday days x 72 = 720; 20 weekdays x 56 = 1120;
     Nov 18 loses 14:00-17:00 = 12 to critical_peak; 720 + 1120 - 12 = 1828)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from gateway.billing import (
    BillingPeriod,
    BillingPolicy,
    CycleFailure,
    Determinants,
    MeterSegment,
    ServicePointData,
    TariffCalendar,
    billing_intervals,
    compute_cycle,
    compute_determinants,
    parse_tariff,
    write_cycle_csv,
    write_cycle_json,
)
from tests.unit.billing.builders import (
    EDITED,
    ESTIMATED,
    INTERPOLATED,
    VALIDATED,
    channel,
    set_interval,
    starts_of,
    utc,
)

TARIFF_TOML = {
    "name": "acceptance_tou",
    "time_zone": "America/New_York",
    "periods": ["on_peak", "off_peak", "super_off_peak", "critical_peak"],
    "default_period": "off_peak",
    "holidays": [{"name": "Thanksgiving", "month": "nov", "weekday": "thu", "nth": 4}],
    "tou": [
        {"period": "super_off_peak", "day_types": ["weekday", "weekend", "holiday"], "hours": [["00:00", "06:00"]]},
        {"period": "on_peak", "day_types": ["weekday"], "hours": [["17:00", "21:00"]]},
        {"period": "critical_peak", "day_types": ["critical_peak"], "hours": [["14:00", "18:00"]]},
    ],
}
EVENT_DAYS = frozenset({dt.date(2026, 11, 18)})
NEW_YORK = TariffCalendar(parse_tariff(TARIFF_TOML)).zone
PERIOD = BillingPeriod.from_local_dates(dt.date(2026, 11, 1), dt.date(2026, 12, 1), NEW_YORK)
FIRST_ROW = dt.date(2026, 10, 31)  # store rows Oct 31 .. Dec 1 (UTC days)
ROWS = 32

# Meter exchange on Monday Nov 16 at 10:00 EST = 15:00Z, on an interval boundary.
EXCHANGE = utc(2026, 11, 16, 15, 0)


def sp1_segments() -> list[MeterSegment]:
    """Consumption customer. Meter A reads 100 Wh per interval until the
    exchange, meter B 200 Wh after. Both keep junk outside their install
    (A reports 999 after removal, B 555 before install): stitching must
    ignore it. On meter B:
      - a 1000 Wh spike ending Nov 18 23:00Z (18:00 EST, critical peak);
      - an estimated gap: 4 intervals ending Nov 20 22:15Z..23:00Z
        (Fri 17:00-18:00 EST, on_peak), estimated at 150 Wh, not validated;
      - one edited interval ending Nov 25 08:15Z (03:00-03:15 EST,
        super_off_peak), value 200, edited and re-validated.
    """
    a = channel(FIRST_ROW, ROWS, value=100)
    a.values[starts_of(a) >= int(EXCHANGE.timestamp())] = 999
    b = channel(FIRST_ROW, ROWS, value=200)
    b.values[starts_of(b) < int(EXCHANGE.timestamp())] = 555
    set_interval(b, utc(2026, 11, 18, 23, 0), 1000)
    for minute in (15, 30, 45):
        set_interval(b, utc(2026, 11, 20, 22, minute), 150, ESTIMATED | INTERPOLATED)
    set_interval(b, utc(2026, 11, 20, 23, 0), 150, ESTIMATED | INTERPOLATED)
    set_interval(b, utc(2026, 11, 25, 8, 15), 200, EDITED | VALIDATED)
    return [
        MeterSegment("MTR-A", utc(2025, 1, 1), EXCHANGE, delivered=a, start_read_wh=0, final_read_wh=148_400),
        MeterSegment("MTR-B", EXCHANGE, None, delivered=b, start_read_wh=0),
    ]


def sp2_segments() -> list[MeterSegment]:
    """Net-metered solar customer, one meter. Every day 10:00-14:00 EST
    (15:00-19:00Z, 16 intervals) it exports 300 Wh per interval and imports
    nothing; the rest of the time it imports 50 Wh per interval."""
    delivered = channel(FIRST_ROW, ROWS, value=50)
    received = channel(FIRST_ROW, ROWS, value=0)
    solar = (starts_of(delivered) % 86_400 >= 15 * 3600) & (starts_of(delivered) % 86_400 < 19 * 3600)
    delivered.values[solar] = 0
    received.values[solar] = 300
    return [MeterSegment("MTR-S", utc(2025, 1, 1), None, delivered=delivered, received=received)]


@pytest.fixture(scope="module")
def calendar() -> TariffCalendar:
    return TariffCalendar(parse_tariff(TARIFF_TOML))


def sp1(calendar: TariffCalendar, policy: BillingPolicy | None = None) -> Determinants:
    return compute_determinants("SP-1", PERIOD, sp1_segments(), calendar, critical_peak_days=EVENT_DAYS,
                                policy=policy or BillingPolicy())


def sp2(calendar: TariffCalendar) -> Determinants:
    return compute_determinants("SP-2", PERIOD, sp2_segments(), calendar, net_metered=True,
                                critical_peak_days=EVENT_DAYS)


def test_period_is_the_local_month() -> None:
    assert PERIOD.start == utc(2026, 11, 1, 4, 0)
    assert PERIOD.end == utc(2026, 12, 1, 5, 0)
    assert (PERIOD.end_s - PERIOD.start_s) // 900 == 2884


def test_exchange_estimated_gap_holiday_and_dst(calendar: TariffCalendar) -> None:
    d = sp1(calendar)
    # Meter A covers Nov 1 00:00 EDT .. Nov 16 10:00 EST:
    #   15 days (Nov 1-15) = 14 x 96 + 100 = 1444, plus Nov 16 00:00-10:00 = 40 -> 1484.
    #   Meter B covers the other 2884 - 1484 = 1400.
    # Meter A by period (Nov 1-15: 10 weekdays, 5 weekend days incl. Nov 1):
    #   super_off_peak 14 x 24 + 28 (Nov 1) + 24 (Nov 16)       = 388
    #   on_peak        10 x 16                                  = 160
    #   off_peak       5 x 72 + 10 x 56 + 16 (Nov 16 06:00-10:00) = 936   (388+160+936 = 1484)
    # Meter B = month - A: super_off_peak 724-388 = 336, on_peak 316-160 = 156,
    #   critical 16, off_peak 1828-936 = 892                       (336+156+16+892 = 1400)
    # Energy (A 100 Wh, B 200 Wh), then the spike (+800) and the estimate (4 x -50):
    #   super_off_peak 388 x 100 + 336 x 200        = 38 800 + 67 200  = 106 000
    #   on_peak        160 x 100 + 156 x 200 - 200  = 16 000 + 31 200 - 200 = 47 000
    #   critical_peak  16 x 200 + 800                                  = 4 000
    #   off_peak       936 x 100 + 892 x 200        = 93 600 + 178 400 = 272 000
    #   total 1484 x 100 + 1400 x 200 + 800 - 200 = 148 400 + 280 000 + 600 = 429 000
    assert d.meter_ids == ("MTR-A", "MTR-B")
    assert d.interval_seconds == 900
    assert [(b.period, b.delivered_wh, b.received_wh) for b in d.buckets] == [
        ("on_peak", 47_000, 0),
        ("off_peak", 272_000, 0),
        ("super_off_peak", 106_000, 0),
        ("critical_peak", 4_000, 0),
    ]
    assert d.total_delivered_wh == 429_000
    assert d.total_delivered_kwh == Decimal("429")
    assert d.total_received_wh == 0
    assert d.total_net_wh == 429_000
    assert all(isinstance(b.delivered_wh, Fraction) for b in d.buckets)

    # Demand: 15-min Wh x 4. Spike 1000 Wh -> 4000 W, ending 18:00 EST, critical.
    assert d.max_demand is not None
    assert d.max_demand.watts == 4000
    assert d.max_demand.kw == Decimal("4")
    assert d.max_demand.interval_end == utc(2026, 11, 18, 23, 0)
    assert d.max_demand.interval_end_local.isoformat() == "2026-11-18T18:00:00-05:00"
    assert d.max_demand.period == "critical_peak"
    assert d.max_demand.method == "15min"
    # Per period the earliest maximum; meter B's 200 Wh (800 W) beats A's 100:
    #   on_peak: first B on-peak interval Mon Nov 16 17:00-17:15 EST -> 22:15Z
    #   off_peak: B's first interval 10:00-10:15 EST -> 15:15Z
    #   super_off_peak: Tue Nov 17 00:00-00:15 EST -> 05:15Z
    assert [(m.period, m.watts, m.interval_end) for m in d.max_demand_by_period] == [
        ("on_peak", 800, utc(2026, 11, 16, 22, 15)),
        ("off_peak", 800, utc(2026, 11, 16, 15, 15)),
        ("super_off_peak", 800, utc(2026, 11, 17, 5, 15)),
        ("critical_peak", 4000, utc(2026, 11, 18, 23, 0)),
    ]

    # Counts: 2884 delivered intervals; 4 estimated, 1 edited, the rest actual.
    c = d.counts
    assert (c.expected, c.actual, c.estimated, c.edited, c.missing, c.suspect) == (2884, 2879, 4, 1, 0, 0)
    assert d.completeness == 1
    assert d.completeness_ppm == 1_000_000
    # Complete, but the 4 estimates are neither validated nor approved.
    assert not d.billable
    assert d.not_billable_reasons == ("4 channel-intervals not validated or approved",)
    assert sp1(calendar, BillingPolicy(estimates_billable=True)).billable


def test_net_metered_solar_customer(calendar: TariffCalendar) -> None:
    d = sp2(calendar)
    # Exports 10:00-14:00 EST every day: 30 x 16 = 480 intervals, all off_peak
    # (the event-day window starts at 14:00). Received = 480 x 300 = 144 000.
    # Imports 50 Wh in the other 2884 - 480 = 2404 intervals = 120 200:
    #   super_off_peak 724 x 50 = 36 200; on_peak 316 x 50 = 15 800;
    #   critical_peak 16 x 50 = 800; off_peak (1828 - 480) x 50 = 67 400.
    # Net = 120 200 - 144 000 = -23 800; off_peak net 67 400 - 144 000 = -76 600.
    assert [(b.period, b.delivered_wh, b.received_wh, b.net_wh) for b in d.buckets] == [
        ("on_peak", 15_800, 0, 15_800),
        ("off_peak", 67_400, 144_000, -76_600),
        ("super_off_peak", 36_200, 0, 36_200),
        ("critical_peak", 800, 0, 800),
    ]
    assert (d.total_delivered_wh, d.total_received_wh, d.total_net_wh) == (120_200, 144_000, -23_800)
    assert d.total_net_kwh == Decimal("-23.8")
    assert d.net_metered
    # Both channels count: 2 x 2884 = 5768 channel-intervals, all actual and validated.
    assert d.counts.expected == 5768
    assert d.counts.actual == 5768
    assert dict(d.counts_by_flow)["received"].expected == 2884
    assert d.billable
    assert d.not_billable_reasons == ()
    # Demand on delivered: 50 Wh -> 200 W, first at 00:15 EDT Nov 1 = 04:15Z.
    assert d.max_demand is not None
    assert (d.max_demand.watts, d.max_demand.interval_end, d.max_demand.period) == (
        200, utc(2026, 11, 1, 4, 15), "super_off_peak")


def test_prorate_policy_agrees_when_boundaries_are_aligned(calendar: TariffCalendar) -> None:
    prorating = TariffCalendar(parse_tariff({**TARIFF_TOML, "boundary": {"policy": "prorate"}}))
    a, b = sp1(calendar), sp1(prorating)
    assert a.buckets == b.buckets
    assert a.max_demand == b.max_demand


def test_billing_interval_records(calendar: TariffCalendar) -> None:
    records = list(billing_intervals(PERIOD, sp1_segments(), calendar, critical_peak_days=EVENT_DAYS))
    assert len(records) == 2884
    assert Counter(r.meter_id for r in records) == {"MTR-A": 1484, "MTR-B": 1400}
    assert all(r.meter_id == "MTR-A" for r in records[:1484])
    assert records[1483].interval_end == EXCHANGE
    assert records[1484].interval_start == EXCHANGE
    assert Counter(r.rate_period for r in records) == {
        "off_peak": 1828, "super_off_peak": 724, "on_peak": 316, "critical_peak": 16}
    assert Counter(r.vee_status.value for r in records) == {"actual": 2879, "estimated": 4, "edited": 1}
    assert sum(r.value_wh for r in records) == 429_000
    # The fall-back day: 100 intervals start on local date Nov 1.
    nov1 = [r for r in records if r.interval_start.astimezone(NEW_YORK).date() == dt.date(2026, 11, 1)]
    assert len(nov1) == 100
    spike = next(r for r in records if r.interval_end == utc(2026, 11, 18, 23, 0))
    assert (spike.meter_id, spike.value_wh, spike.rate_period, spike.flow) == ("MTR-B", 1000, "critical_peak",
                                                                               "delivered")
    ends = np.array([r.interval_end.timestamp() for r in records])
    assert np.all(np.diff(ends) == 900)


def cycle(calendar: TariffCalendar) -> list[Determinants | CycleFailure]:
    points = [
        ServicePointData("SP-1", "acceptance_tou", tuple(sp1_segments())),
        ServicePointData("SP-2", "acceptance_tou", tuple(sp2_segments()), net_metered=True),
        ServicePointData("SP-3", "no_such_tariff", tuple(sp2_segments())),
    ]
    return list(compute_cycle(points, PERIOD, {"acceptance_tou": calendar},
                              critical_peak_days={"acceptance_tou": EVENT_DAYS}))


def test_cycle_exports_as_csv(calendar: TariffCalendar) -> None:
    out = io.StringIO()
    assert write_cycle_csv(cycle(calendar), out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    by_key = {(r["service_point_id"], r["rate_period"]): r for r in rows}
    total1 = by_key[("SP-1", "TOTAL")]
    assert total1["delivered_kwh"] == "429"
    assert total1["max_demand_kw"] == "4"
    assert total1["max_demand_time"] == "2026-11-18T23:00:00Z"
    assert total1["billable"] == "false"
    assert total1["estimated"] == "4"
    assert total1["meter_ids"] == "MTR-A MTR-B"
    assert by_key[("SP-1", "on_peak")]["delivered_kwh"] == "47"
    assert by_key[("SP-2", "off_peak")]["net_kwh"] == "-76.6"
    assert by_key[("SP-2", "TOTAL")]["net_kwh"] == "-23.8"
    assert by_key[("SP-2", "TOTAL")]["billable"] == "true"
    assert by_key[("SP-3", "")]["error"] == "UNKNOWN_TARIFF: tariff 'no_such_tariff' is not configured"
    assert len(rows) == 5 + 5 + 1


def test_cycle_exports_as_json(calendar: TariffCalendar) -> None:
    out = io.StringIO()
    assert write_cycle_json(cycle(calendar), out) == 3
    doc = json.loads(out.getvalue())
    assert [d["service_point_id"] for d in doc] == ["SP-1", "SP-2", "SP-3"]
    assert doc[0]["total_delivered_wh"] == "429000"
    assert doc[0]["buckets"][3] == {"period": "critical_peak", "delivered_wh": "4000", "received_wh": "0",
                                    "net_wh": "4000", "delivered_kwh": "4", "received_kwh": "0", "net_kwh": "4"}
    assert doc[0]["max_demand"]["interval_end_local"] == "2026-11-18T18:00:00-05:00"
    assert doc[0]["counts"] == {"expected": 2884, "actual": 2879, "estimated": 4, "edited": 1, "missing": 0,
                                "suspect": 0, "billing_valid": 2880}
    assert doc[1]["total_net_wh"] == "-23800"
    assert doc[1]["billable"] is True
    assert doc[2]["error"]["reason"] == "UNKNOWN_TARIFF"
