"""Profile generic buffers as whole columns (numpy), both directions.

A load profile buffer is an array of equal structures (clock, status,
channels). When every row has the same fixed-size layout - what meters send -
the whole buffer is decoded with one ``np.frombuffer`` and vectorised checks of
every tag byte; anything else falls back to the generic A-XDR decoder. Both
paths give the same :class:`ProfileColumns`. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adapters.dlms import axdr
from adapters.dlms.axdr import Data, Tag
from adapters.dlms.cosem import DATE_TIME_SIZE, DEVIATION_UNSPECIFIED, date_time_from_data
from adapters.dlms.errors import DlmsProtocolError

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_INT_DTYPES: dict[Tag, str] = {
    Tag.DOUBLE_LONG: ">i4", Tag.DOUBLE_LONG_UNSIGNED: ">u4", Tag.INTEGER: "i1", Tag.LONG: ">i2",
    Tag.UNSIGNED: "u1", Tag.LONG_UNSIGNED: ">u2", Tag.LONG64: ">i8", Tag.ENUM: "u1",
}
# long64-unsigned does not fit int64 in general; it goes through the generic path.


@dataclass(frozen=True, slots=True)
class ProfileColumns:
    """Decoded buffer: one int64 column per capture object. A date-time column holds
    UTC epoch seconds (its clock status bytes are in ``clock_status``); ``present``
    is False where the meter sent null-data."""

    columns: tuple[Int64Array, ...]
    present: tuple[BoolArray, ...]
    clock_status: tuple[Int64Array | None, ...]

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


# ---------------------------------------------------------------- civil dates


def days_from_civil(year: Int64Array, month: Int64Array, day: Int64Array) -> Int64Array:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorised."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.asarray(era * 146097 + doe - 719468, dtype=np.int64)


def civil_from_days(days: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array]:
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year.astype(np.int64), month.astype(np.int64), day.astype(np.int64)


_MONTH_DAYS = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _epoch_seconds(raw: npt.NDArray[np.uint8]) -> tuple[Int64Array, Int64Array]:
    """(UTC epoch seconds, clock status) of an (n, 12) array of COSEM date-times."""
    r = raw.astype(np.int64)
    year = r[:, 0] * 256 + r[:, 1]
    month, day, hour, minute, second = r[:, 2], r[:, 3], r[:, 5], r[:, 6], r[:, 7]
    bad = ((month < 1) | (month > 12) | (day < 1) | (day > _MONTH_DAYS[np.clip(month, 0, 12)])
           | (hour > 23) | (minute > 59) | (second > 59) | (year == 0xFFFF))
    if bad.any():
        row = int(np.argmax(bad))
        raise DlmsProtocolError(f"invalid date-time in buffer row {row + 1}: {bytes(raw[row]).hex()}",
                                reason="DLMS_BAD_VALUE")
    deviation = (r[:, 9] * 256 + r[:, 10]).astype(np.int64)
    deviation = np.where(deviation >= 0x8000, deviation - 0x10000, deviation)
    deviation = np.where(deviation == DEVIATION_UNSPECIFIED, 0, deviation)
    local = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    # Deviation is minutes from local time to UTC (Blue Book 4.1.6.1).
    return local + deviation * 60, r[:, 11]


# ---------------------------------------------------------------- decode


def decode_buffer(raw: bytes) -> ProfileColumns:
    """Decode an encoded profile buffer (array of structures)."""
    if not raw or raw[0] != Tag.ARRAY:
        raise DlmsProtocolError("profile buffer is not an array", reason="DLMS_BAD_VALUE")
    count, pos = axdr.decode_length(raw, 1)
    if count == 0:
        return ProfileColumns((), (), ())
    if count > len(raw) - pos:
        raise DlmsProtocolError(f"buffer claims {count} rows, {len(raw) - pos} bytes remain", reason="DLMS_TRUNCATED")
    fast = _decode_fixed(raw, pos, count)
    return fast if fast is not None else _decode_generic(axdr.decode(raw))


def _row_layout(raw: bytes, pos: int) -> list[tuple[int, Tag, int]] | None:
    """Field layout of the first row (offset of the value, tag, size) if every field
    has a fixed size, else None."""
    first, end = axdr.decode_prefix(raw, pos)
    if first.tag is not Tag.STRUCTURE or not first.items or len(first.items) > 0x7F:
        return None
    layout: list[tuple[int, Tag, int]] = []
    offset = 2  # structure tag + one-byte count
    for item in first.items:
        if item.tag is Tag.OCTET_STRING and len(item.octets) == DATE_TIME_SIZE:
            layout.append((offset + 2, item.tag, DATE_TIME_SIZE))
            offset += 2 + DATE_TIME_SIZE
        elif item.tag is Tag.DATE_TIME:
            layout.append((offset + 1, item.tag, DATE_TIME_SIZE))
            offset += 1 + DATE_TIME_SIZE
        elif item.tag in _INT_DTYPES:
            size = np.dtype(_INT_DTYPES[item.tag]).itemsize
            layout.append((offset + 1, item.tag, size))
            offset += 1 + size
        else:
            return None
    if offset != end - pos:
        return None
    return layout


def _decode_fixed(raw: bytes, pos: int, count: int) -> ProfileColumns | None:
    layout = _row_layout(raw, pos)
    if layout is None:
        return None
    row_size = layout[-1][0] + layout[-1][2]
    if len(raw) - pos != row_size * count:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8, offset=pos).reshape(count, row_size)
    # Every row must repeat the first row's tag bytes exactly.
    header = np.zeros(row_size, dtype=bool)
    header[0:2] = True
    for offset, tag, _size in layout:
        header[offset - (2 if tag is Tag.OCTET_STRING else 1):offset] = True
    if not (rows[:, header] == rows[0, header]).all():
        return None
    columns: list[Int64Array] = []
    statuses: list[Int64Array | None] = []
    for offset, tag, size in layout:
        block = rows[:, offset:offset + size]
        if size == DATE_TIME_SIZE and tag in (Tag.OCTET_STRING, Tag.DATE_TIME):
            seconds, status = _epoch_seconds(block)
            columns.append(seconds)
            statuses.append(status)
        else:
            values = np.ascontiguousarray(block).view(_INT_DTYPES[tag]).reshape(count)
            columns.append(values.astype(np.int64))
            statuses.append(None)
    present = tuple(np.ones(count, dtype=bool) for _ in columns)
    return ProfileColumns(tuple(columns), present, tuple(statuses))


def _decode_generic(buffer: Data) -> ProfileColumns:
    rows = buffer.items
    width = len(rows[0].items)
    values = [[0] * len(rows) for _ in range(width)]
    present = [[True] * len(rows) for _ in range(width)]
    statuses: list[list[int] | None] = [None] * width
    for r, row in enumerate(rows):
        items = row.items
        if row.tag is not Tag.STRUCTURE or len(items) != width:
            raise DlmsProtocolError(f"buffer row {r + 1} has another shape", reason="DLMS_BAD_VALUE")
        for c, item in enumerate(items):
            if item.tag is Tag.NULL:
                present[c][r] = False
            elif item.tag in (Tag.DATE_TIME,) or (item.tag is Tag.OCTET_STRING and len(item.octets) == DATE_TIME_SIZE):
                moment, status = date_time_from_data(item)
                values[c][r] = int(moment.timestamp())
                column_status = statuses[c]
                if column_status is None:
                    column_status = statuses[c] = [0] * len(rows)
                column_status[r] = status
            elif item.tag is Tag.LONG64_UNSIGNED and item.integer > 2**63 - 1:
                raise DlmsProtocolError(f"value {item.integer} in row {r + 1} exceeds int64", reason="DLMS_BAD_VALUE")
            else:
                values[c][r] = item.integer
    return ProfileColumns(
        tuple(np.array(v, dtype=np.int64) for v in values),
        tuple(np.array(p, dtype=bool) for p in present),
        tuple(None if s is None else np.array(s, dtype=np.int64) for s in statuses))


# ---------------------------------------------------------------- encode


def encode_date_times(epoch_seconds: Int64Array, clock_status: int = 0) -> npt.NDArray[np.uint8]:
    """(n, 12) COSEM date-times (UTC, deviation 0) of epoch seconds, vectorised."""
    days = np.floor_divide(epoch_seconds, 86400)
    secs = epoch_seconds - days * 86400
    year, month, day = civil_from_days(days)
    out = np.zeros((len(epoch_seconds), DATE_TIME_SIZE), dtype=np.uint8)
    out[:, 0] = year >> 8
    out[:, 1] = year & 0xFF
    out[:, 2] = month
    out[:, 3] = day
    out[:, 4] = (days + 3) % 7 + 1  # ISO weekday; 1970-01-01 was a Thursday
    out[:, 5] = secs // 3600
    out[:, 6] = (secs // 60) % 60
    out[:, 7] = secs % 60
    out[:, 11] = clock_status
    return out


def encode_buffer(epoch_seconds: Int64Array, status: Int64Array, channels: tuple[Int64Array, ...],
                  channel_tag: Tag = Tag.DOUBLE_LONG_UNSIGNED) -> bytes:
    """Encode rows of (clock as octet-string(12), status as unsigned, channels) at once."""
    count = len(epoch_seconds)
    size = np.dtype(_INT_DTYPES[channel_tag]).itemsize
    fields: list[tuple[str, str | tuple[str, int]]] = [
        ("s", "u1"), ("n", "u1"), ("ct", "u1"), ("cl", "u1"), ("clock", ("u1", 12)), ("st", "u1"), ("status", "u1")]
    for i in range(len(channels)):
        fields += [(f"t{i}", "u1"), (f"v{i}", _INT_DTYPES[channel_tag])]
    rows = np.zeros(count, dtype=np.dtype(fields))
    rows["s"] = Tag.STRUCTURE
    rows["n"] = 2 + len(channels)
    rows["ct"] = Tag.OCTET_STRING
    rows["cl"] = DATE_TIME_SIZE
    rows["clock"] = encode_date_times(epoch_seconds)
    rows["st"] = Tag.UNSIGNED
    rows["status"] = status
    for i, values in enumerate(channels):
        if len(values) and (values.min() < 0 or values.max() >= 1 << (8 * size)):
            raise DlmsProtocolError(f"channel {i} value out of range of {channel_tag.name}", remote=False,
                                    reason="DLMS_BAD_VALUE")
        rows[f"t{i}"] = channel_tag
        rows[f"v{i}"] = values
    return bytes((Tag.ARRAY,)) + axdr.encode_length(count) + rows.tobytes()
