"""Errors of billing requests; tariff mistakes are :class:`ConfigError`."""

from __future__ import annotations

from gateway.errors import MeterhubError, StatusCode


class BillingError(MeterhubError):
    status = StatusCode.INVALID_ARGUMENT
    reason = "INVALID_BILLING_REQUEST"


class InvalidBillingPeriod(BillingError):
    """Period empty, reversed, too long, naive, or not on interval boundaries."""

    reason = "INVALID_BILLING_PERIOD"


class NoMeterData(BillingError):
    """No meter with an energy channel served the service point in the period."""

    status = StatusCode.FAILED_PRECONDITION
    reason = "NO_METER_DATA"


class UnsupportedIntervalData(BillingError):
    """Interval data the determinants cannot use as given (mixed interval
    lengths, a demand window that is not a whole number of intervals...)."""

    status = StatusCode.FAILED_PRECONDITION
    reason = "UNSUPPORTED_INTERVAL_DATA"
