"""Correlation of asynchronous reads: InitiateMeterReadingsByMeterID out, notifications back.

A pure state machine: time is passed in, nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.multispeak.errors import ExpiredTransaction, UnknownTransaction


@dataclass(slots=True)
class PendingRead:
    transaction_id: str
    meter_ids: frozenset[str]
    expires: datetime
    notifications: int = 0


@dataclass(slots=True)
class Transactions:
    """Transactions we initiated and still accept callbacks for."""

    # Keep expired ids for a while, to tell "late" from "never ours".
    remember_expired: timedelta = timedelta(hours=1)
    _pending: dict[str, PendingRead] = field(default_factory=dict)
    _expired: dict[str, datetime] = field(default_factory=dict)

    def open(self, transaction_id: str, meter_ids: frozenset[str], now: datetime, ttl: timedelta) -> PendingRead:
        pending = PendingRead(transaction_id, meter_ids, now + ttl)
        self._pending[transaction_id] = pending
        return pending

    def match(self, transaction_id: str | None, now: datetime) -> PendingRead:
        """The pending read a callback belongs to; raises UnknownTransaction / ExpiredTransaction."""
        self.expire(now)
        if not transaction_id:
            raise UnknownTransaction("callback without a transactionID")
        pending = self._pending.get(transaction_id)
        if pending is None:
            if transaction_id in self._expired:
                raise ExpiredTransaction(f"transaction {transaction_id} expired at "
                                         f"{self._expired[transaction_id].isoformat()}",
                                         metadata={"transaction_id": transaction_id})
            raise UnknownTransaction(f"transaction {transaction_id} was not initiated by this hub",
                                     metadata={"transaction_id": transaction_id})
        pending.notifications += 1
        return pending

    def expire(self, now: datetime) -> list[PendingRead]:
        gone = [p for p in self._pending.values() if p.expires <= now]
        for p in gone:
            del self._pending[p.transaction_id]
            self._expired[p.transaction_id] = p.expires
        for tid in [t for t, when in self._expired.items() if when + self.remember_expired <= now]:
            del self._expired[tid]
        return gone

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, transaction_id: object) -> bool:
        return transaction_id in self._pending
