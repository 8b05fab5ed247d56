"""The batched cycle path (matrices over many service points) equals the
one-point path, point by point, on random fleets and every tariff shape."""

from __future__ import annotations

import datetime as dt

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
    bundled_tariff,
    compute_cycle,
    compute_determinants,
    parse_tariff,
)
from tests.unit.billing.builders import (
    APPROVED,
    EDITED,
    INTERPOLATED,
    MISSING,
    SUSPECT,
    VALIDATED,
    channel,
    utc,
)

PERIOD = BillingPeriod(utc(2026, 3, 1, 5), utc(2026, 3, 15, 4))  # holds the March DST change
FIRST_DAY = dt.date(2026, 2, 28)
DAYS = 16
PRORATE_ROLLING = parse_tariff({
    "name": "prorate_rolling", "time_zone": "America/Chicago", "periods": ["peak", "off"], "default_period": "off",
    "boundary": {"policy": "prorate"}, "demand": {"window_minutes": 30, "rolling": True},
    "tou": [{"period": "peak", "day_types": ["weekday"], "hours": [["16:10", "19:50"]]}],
})
BLOCK_DEMAND = parse_tariff({
    "name": "block", "time_zone": "UTC", "periods": ["peak", "off"], "default_period": "off",
    "demand": {"window_minutes": 60, "rolling": False},
    "tou": [{"period": "peak", "day_types": ["weekday", "holiday"], "hours": [["08:00", "20:00"]]}],
})


def random_channel(rng: np.random.Generator, *, interval: int = 900, scale: int = 500) -> object:
    ch = channel(FIRST_DAY, DAYS, interval=interval)
    ch.values[:] = rng.integers(0, scale, size=ch.values.shape)
    flags = rng.choice([VALIDATED, VALIDATED, VALIDATED, MISSING, SUSPECT | VALIDATED, INTERPOLATED | VALIDATED,
                        EDITED | APPROVED, 0], size=ch.values.shape, p=[0.7, 0.1, 0.05, 0.03, 0.03, 0.04, 0.03, 0.02])
    ch.qualities[:] = flags
    if rng.random() < 0.3:
        ch.qualities[:] = VALIDATED  # some points complete and billable
    return ch


def fleet(rng: np.random.Generator, count: int, *, interval: int = 900) -> list[ServicePointData]:
    points = []
    for i in range(count):
        net = i % 3 == 0
        exchange = i % 5 == 1
        long_ago = utc(2025, 1, 1)
        if exchange:
            at = utc(2026, 3, 7, 13, 7 if i % 2 else 0)
            segs = (MeterSegment(f"M{i}a", long_ago, at, delivered=random_channel(rng, interval=interval),  # type: ignore[arg-type]
                                 received=random_channel(rng, interval=interval, scale=60) if net else None),  # type: ignore[arg-type]
                    MeterSegment(f"M{i}b", at, None, net=random_channel(rng, interval=interval)))  # type: ignore[arg-type]
        else:
            segs = (MeterSegment(f"M{i}", long_ago, None, delivered=random_channel(rng, interval=interval),  # type: ignore[arg-type]
                                 received=random_channel(rng, interval=interval, scale=60) if net else None),)  # type: ignore[arg-type]
        points.append(ServicePointData(f"SP{i}", "t", segs, net_metered=net))
    points.append(ServicePointData("SP-NONE", "t", ()))
    points.append(ServicePointData("SP-TARIFF", "unknown", points[0].segments))
    return points


@pytest.mark.parametrize("tariff", [bundled_tariff("residential_tou"), bundled_tariff("commercial_demand"),
                                    PRORATE_ROLLING, BLOCK_DEMAND], ids=lambda t: t.name)
@pytest.mark.parametrize("interval", [900, 300])
@pytest.mark.parametrize("estimates_billable", [False, True])
def test_batched_cycle_equals_point_by_point(tariff: object, interval: int, estimates_billable: bool) -> None:
    rng = np.random.default_rng(interval + estimates_billable)
    calendar = TariffCalendar(tariff)  # type: ignore[arg-type]
    points = fleet(rng, 40, interval=interval)
    cpp = {"t": [dt.date(2026, 3, 10)]}
    policy = BillingPolicy(estimates_billable=estimates_billable)
    batched = list(compute_cycle(points, PERIOD, {"t": calendar}, critical_peak_days=cpp, policy=policy))
    assert [r.service_point_id for r in batched] == [p.service_point_id for p in points]
    for point, result in zip(points, batched, strict=True):
        if point.tariff != "t":
            assert isinstance(result, CycleFailure) and result.reason == "UNKNOWN_TARIFF"
            continue
        if not point.segments:
            assert isinstance(result, CycleFailure) and result.reason == "NO_METER_DATA"
            continue
        single = compute_determinants(point.service_point_id, PERIOD, point.segments, calendar,
                                      net_metered=point.net_metered, critical_peak_days=cpp["t"], policy=policy)
        assert isinstance(result, Determinants)
        assert result == single
    assert any(isinstance(r, Determinants) and r.billable for r in batched)
    assert any(isinstance(r, Determinants) and not r.billable for r in batched)
