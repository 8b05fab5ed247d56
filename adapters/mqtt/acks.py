"""Acknowledgement order for QoS 1 deliveries. Pure state machine, no I/O.

The adapter handles several messages at once (the store batches commits), but
MQTT 3.1.1 and 5 both require a client to send PUBACKs in the order in which
the PUBLISH packets were received [MQTT-4.6.0-2]. A message is therefore
acknowledged only when it and every message received before it on the same
connection are finished (committed or dead-lettered). Packet ids are only
meaningful on the connection that delivered them: a new connection starts a
new ``InOrderAcks``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class _Delivery:
    mid: int
    qos: int
    finished: bool = False


class InOrderAcks:
    """Tracks deliveries by arrival order and releases acks as a prefix."""

    def __init__(self) -> None:
        self._first_seq = 0
        self._deliveries: deque[_Delivery] = deque()

    def received(self, mid: int, qos: int) -> int:
        """Register a delivery; returns its sequence number for ``finished``."""
        self._deliveries.append(_Delivery(mid, qos))
        return self._first_seq + len(self._deliveries) - 1

    def finished(self, seq: int) -> list[tuple[int, int]]:
        """Mark a delivery finished; returns the (mid, qos) pairs to acknowledge
        now, in arrival order (empty while an earlier one is still running)."""
        index = seq - self._first_seq
        if not 0 <= index < len(self._deliveries) or self._deliveries[index].finished:
            raise ValueError(f"delivery {seq} is not outstanding")
        self._deliveries[index].finished = True
        ready: list[tuple[int, int]] = []
        while self._deliveries and self._deliveries[0].finished:
            delivery = self._deliveries.popleft()
            self._first_seq += 1
            if delivery.qos > 0:
                ready.append((delivery.mid, delivery.qos))
        return ready

    @property
    def outstanding(self) -> int:
        """Deliveries received and not yet acknowledged."""
        return len(self._deliveries)
