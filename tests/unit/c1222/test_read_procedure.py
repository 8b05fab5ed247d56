"""The per-meter read procedure (transport.MeterReader.read_tables) over a scripted meter:
crafted C12.19 table bytes in, an LpRead or one of our TableErrors out, never anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.c1222.codec import ApTitle, FullRead, Logon, PartialReadOffset, Request, Response, TableData
from adapters.c1222.config import MeterEndpoint, parse_config
from adapters.c1222.errors import TABLES_CONTENT_TYPE, C1222Error, TableError
from adapters.c1222.normalize import MeterRead, to_batch
from adapters.c1222.tables import (
    ST_ACT_LP,
    ST_CLOCK,
    ST_GEN_CONFIG,
    ST_LP_CTRL,
    ST_LP_DATA_SET1,
    ST_LP_STATUS,
    LpSetStatusFlag,
    LpStatus,
    NibbleMapping,
    TableRead,
    decode_table_reads,
    encode_table_reads,
)
from adapters.c1222.transport import MeterReader

# One set: 2 blocks of 4 fifteen-minute intervals, 1 channel of UINT16 with extended status,
# scalar/divisor present; little-endian tables, STIME as UINT32 seconds (TM_FORMAT 4).
ST0 = bytes.fromhex("021c8800000000020000000200000000000000")
ST61 = bytes.fromhex("00000000" "4004" "00" "0200" "0400" "01" "0f")
ST62 = bytes.fromhex("000000" "02" "0100" "0100")
ST52 = bytes.fromhex("8c76e265" "00" "16")  # 2024-03-02T00:45:00Z
# ST63: flags, NBR_VALID_BLOCKS 2, LAST_BLOCK_ELEMENT 1, LAST_BLOCK_SEQ_NUM 1, NBR_UNREAD_BLOCKS 2, NBR_VALID_INT 3
ST63 = bytes.fromhex("24" "0200" "0100" "01000000" "0200" "0300")
# ST64: block 0 ends 2024-03-02T00:00Z with values 1..4; block 1 (the newest) ends 00:45Z, 3 valid: 5, 6, 7.
# Each interval is one extended status byte and a UINT16.
ST64 = bytes.fromhex("006ce265" "000100" "000200" "000300" "000400"
                     "8c76e265" "000500" "000600" "000700" "000000")
BLOCK_BYTES = 16

METER = MeterEndpoint("M1", "127.0.0.1", 1153, ApTitle((7, 1), relative=True))
NOW = datetime(2024, 3, 2, 0, 50, tzinfo=UTC)
CONFIG = parse_config({"type": "c1222", "meters": [{"meter_id": "M1", "ap_title": ".7.1"}], "read_registers": False,
                       "channels": [{}], "lookback_days": 2})


class ScriptedMeter:
    """Answers full reads from ``tables`` and ST64 partial reads from ``st64``, zero-filled past its end
    (a meter with more memory than it admits) and cut to ``short`` bytes when set."""

    def __init__(self, tables: dict[int, bytes], st64: bytes, *, short: int | None = None) -> None:
        self.tables = tables
        self.st64 = st64
        self.short = short
        self.requests: list[Request] = []

    async def request(self, requests: Sequence[Request]) -> tuple[Response, ...]:
        self.requests.extend(requests)
        out: list[Response] = []
        for r in requests:
            if isinstance(r, FullRead):
                out.append(TableData(self.tables[r.table]))
            elif isinstance(r, PartialReadOffset):
                data = self.st64[r.offset:r.offset + r.count].ljust(r.count, b"\x00")
                out.append(TableData(data[:self.short] if self.short is not None else data))
            else:
                assert isinstance(r, Logon)
                out.append(TableData(b""))  # answered, and ignored by the read procedure
        return tuple(out)


def meter(st63: bytes = ST63, st64: bytes = ST64, *, st0: bytes = ST0, st52: bytes = ST52,
          short: int | None = None) -> ScriptedMeter:
    return ScriptedMeter({ST_GEN_CONFIG: st0, ST_ACT_LP: ST61, ST_LP_STATUS: st63, ST_CLOCK: st52, ST_LP_CTRL: ST62},
                         st64, short=short)


async def nothing_stored(interval_seconds: int, divisors: tuple[int, ...]) -> datetime | None:
    return None


async def read(scripted: ScriptedMeter) -> MeterRead:
    return await MeterReader(CONFIG).read_tables(scripted, METER, nothing_stored, NOW)


async def test_crafted_tables_read_every_valid_interval_once() -> None:
    result = await read(meter())
    assert result.lp is not None
    first_end = datetime(2024, 3, 1, 23, 15, tzinfo=UTC)
    assert [datetime.fromtimestamp(int(t), UTC) for t in result.lp.ends] == [
        first_end + timedelta(minutes=15 * i) for i in range(7)]
    assert result.lp.values[:, 0].tolist() == [1, 2, 3, 4, 5, 6, 7]
    # The newest block is read only up to NBR_VALID_INT: header + 3 intervals.
    assert PartialReadOffset(ST_LP_DATA_SET1, BLOCK_BYTES, 4 + 3 * 3) in meter_requests(result)
    assert [r.table for r in result.tables] == [ST_GEN_CONFIG, ST_ACT_LP, ST_LP_STATUS, ST_CLOCK, ST_LP_CTRL,
                                                ST_LP_DATA_SET1, ST_LP_DATA_SET1]


def meter_requests(result: MeterRead) -> list[PartialReadOffset]:
    return [PartialReadOffset(r.table, r.offset, len(r.data)) for r in result.tables if r.table == ST_LP_DATA_SET1]


# NBR_VALID_INT 20: header + 20 intervals is 64 bytes, four whole blocks, so before the check the newest
# "block" decoded as four and indexing 20 interval ends against its 4 values raised IndexError.
ST63_OVERFULL = bytes.fromhex("24" "0200" "0100" "01000000" "0200" "1400")


@pytest.mark.parametrize(("st63", "message"), [
    (ST63_OVERFULL, "ST63 NBR_VALID_INT 20 exceeds the 4 intervals of a block (ST61 NBR_BLK_INTS_SET1)"),
    (bytes.fromhex("24" "0300" "0100" "01000000" "0200" "0300"),
     "ST63 NBR_VALID_BLOCKS 3 exceeds the 2 blocks of the set (ST61 NBR_BLKS_SET1)"),
    (bytes.fromhex("24" "0200" "0200" "01000000" "0200" "0300"),
     "ST63 LAST_BLOCK_ELEMENT 2 is outside the 2 blocks of the set (ST61 NBR_BLKS_SET1)"),
])
async def test_status_pointing_outside_the_profile_is_a_table_error(st63: bytes, message: str) -> None:
    scripted = meter(st63, ST64 * 3)
    with pytest.raises(TableError) as info:
        await read(scripted)
    assert info.value.message == message
    assert info.value.reason == "C1219_TABLE_ERROR"
    assert not [r for r in scripted.requests if isinstance(r, PartialReadOffset)]  # refused before reading ST64
    # The error keeps the table bytes read so far, for the dead-letter store.
    assert info.value.raw_content_type == TABLES_CONTENT_TYPE
    assert decode_table_reads(info.value.raw) == [
        TableRead(ST_GEN_CONFIG, 0, ST0), TableRead(ST_ACT_LP, 0, ST61), TableRead(ST_LP_STATUS, 0, st63),
        TableRead(ST_CLOCK, 0, ST52)]


async def test_a_short_partial_read_is_a_table_error_not_zero_data() -> None:
    with pytest.raises(TableError, match=r"ST64 partial read at offset 16 returned 7 of the 13 bytes asked"):
        await read(meter(short=7))


async def test_indivisible_data_is_a_table_error_naming_the_channel() -> None:
    result = await read(meter())
    assert result.lp is not None
    lying = MeterRead(result.meter_id, type(result.lp)(result.lp.interval_seconds, result.lp.ends, result.lp.values,
                                                       result.lp.status, (1,), (3,)), None, result.tables)
    with pytest.raises(TableError, match=r"^LP channel 1: ST62 divisor 3 does not divide the interval data exactly: "
                                         r"1 x scalar 1 is not a multiple of 3 \(5 of 7 intervals\)$"):
        to_batch(lying, CONFIG.channels, NibbleMapping.FIRST_IN_COMMON_BYTE)


def test_table_reads_round_trip_and_layout() -> None:
    reads = [TableRead(ST_LP_STATUS, 0, ST63), TableRead(ST_LP_DATA_SET1, 16, ST64[16:29])]
    raw = encode_table_reads(reads)
    assert raw[:7] == bytes.fromhex("003f" "000000" "000d")  # table 63, offset 0, 13 bytes, as in a partial read
    assert decode_table_reads(raw) == reads
    with pytest.raises(TableError):
        decode_table_reads(raw[:-1])


u16 = st.integers(0, 0xFFFF)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=st.integers(0, 0x7F), valid_blocks=u16, last_element=u16, last_seq=st.integers(0, 0xFFFFFFFF),
       valid_intervals=u16, st64=st.binary(max_size=96), short=st.none() | st.integers(0, 20),
       lookback=st.sampled_from([timedelta(days=2), timedelta(days=20000)]), time_format=st.integers(0, 7),
       st52=st.just(ST52) | st.binary(max_size=8))
async def test_any_status_and_block_bytes_end_in_our_errors(flags: int, valid_blocks: int, last_element: int,
                                                            last_seq: int, valid_intervals: int, st64: bytes,
                                                            short: int | None, lookback: timedelta,
                                                            time_format: int, st52: bytes) -> None:
    """Whatever ST63 claims, ST64 holds and the time format is: an LpRead that normalises, or a
    C1222Error with the table bytes."""
    st63 = LpStatus(LpSetStatusFlag(flags), valid_blocks, last_element, last_seq, 0, valid_intervals).encode("little")
    st0 = ST0[:1] + bytes([ST0[1] & 0xF8 | time_format]) + ST0[2:]

    async def since(interval_seconds: int, divisors: tuple[int, ...]) -> datetime | None:
        return NOW - lookback

    outcome: MeterRead | C1222Error
    try:
        outcome = await MeterReader(CONFIG).read_tables(meter(st63, st64, st0=st0, st52=st52, short=short), METER,
                                                        since, NOW)
    except C1222Error as exc:
        outcome = exc
    if isinstance(outcome, C1222Error):
        assert outcome.raw, "an undecodable read must keep the bytes it could not decode"
        return
    with contextlib.suppress(C1222Error):  # the adapter dead-letters outcome.tables then
        to_batch(outcome, CONFIG.channels, NibbleMapping.FIRST_IN_COMMON_BYTE)
