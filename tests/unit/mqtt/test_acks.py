"""PUBACKs leave in the order the PUBLISHes arrived, whatever finishes first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.mqtt.acks import InOrderAcks


def test_later_finish_waits_for_the_earlier_message() -> None:
    acks = InOrderAcks()
    first = acks.received(10, 1)
    second = acks.received(11, 1)
    third = acks.received(12, 1)
    assert acks.finished(third) == []
    assert acks.finished(second) == []
    assert acks.outstanding == 3
    assert acks.finished(first) == [(10, 1), (11, 1), (12, 1)]
    assert acks.outstanding == 0


def test_qos0_deliveries_hold_their_place_but_need_no_ack() -> None:
    acks = InOrderAcks()
    zero = acks.received(0, 0)
    one = acks.received(5, 1)
    assert acks.finished(one) == []
    assert acks.finished(zero) == [(5, 1)]


def test_finishing_twice_or_unknown_is_an_error() -> None:
    acks = InOrderAcks()
    seq = acks.received(1, 1)
    acks.finished(seq)
    with pytest.raises(ValueError, match="not outstanding"):
        acks.finished(seq)
    with pytest.raises(ValueError, match="not outstanding"):
        acks.finished(99)


@given(st.permutations(list(range(30))))
def test_any_finishing_order_acks_each_once_in_arrival_order(order: list[int]) -> None:
    acks = InOrderAcks()
    seqs = [acks.received(1000 + i, 1) for i in range(30)]
    released: list[int] = []
    for index in order:
        released.extend(mid for mid, _ in acks.finished(seqs[index]))
        # Released acks are always a prefix of the arrival order.
        assert released == [1000 + i for i in range(len(released))]
    assert released == [1000 + i for i in range(30)]
