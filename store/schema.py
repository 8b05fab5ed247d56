"""The storage schema (DESIGN §4).

Interval data lives in channel-day blocks: one row per (channel, UTC day) with
the day's values and qualities packed as little-endian arrays and a version
number. Superseded versions move to history. Instants are stored as integer
microseconds since the Unix epoch (UTC): exact, sortable and identical on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# One MetaData per process is fine: it is immutable after import, not state.
metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
IdType = BigInteger().with_variant(Integer(), "sqlite")

meters = Table(
    "meters",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("meter_id", String(128), nullable=False, unique=True),
    Column("status", SmallInteger, nullable=False),
    Column("multiplier", BigInteger, nullable=False),
    Column("meter_class", String(64), nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

channels = Table(
    "channels",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("meter_pk", ForeignKey("meters.id"), nullable=False),
    # commodity.kind.unit.flow.accumulation: the identity of a channel, without resolution.
    Column("reading_type_key", String(64), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("commodity", SmallInteger, nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("unit", SmallInteger, nullable=False),
    Column("flow_direction", SmallInteger, nullable=False),
    Column("accumulation", SmallInteger, nullable=False),
    Column("power_of_ten_multiplier", Integer, nullable=False),
    Column("cim_code", String(64), nullable=False),
    Column("device_channel", String(64), nullable=False),
    UniqueConstraint("meter_pk", "reading_type_key", "interval_seconds", name="uq_channel_identity"),
)

interval_blocks = Table(
    "interval_blocks",
    metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    # Days since 1970-01-01 (UTC) of the intervals' START times.
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    # int64 little-endian, one per slot of the day.
    Column("values", LargeBinary, nullable=False),
    # int32 little-endian QualityFlag bit sets, one per slot.
    Column("qualities", LargeBinary, nullable=False),
    Column("head_end", String(128), nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

interval_block_history = Table(
    "interval_block_history",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Column("qualities", LargeBinary, nullable=False),
    Column("head_end", String(128), nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Column("superseded_time_us", BigInteger, nullable=False),
    # Who caused the new version (head-end name or an authenticated editor) and why.
    Column("superseded_by", String(128), nullable=False),
    Column("reason", String(256), nullable=False),
    Index("ix_block_history_channel_day", "channel_id", "day"),
)

register_reads = Table(
    "register_reads",
    metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("read_time_us", BigInteger, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
    Column("quality", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("head_end", String(128), nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

register_read_history = Table(
    "register_read_history",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", BigInteger, nullable=False),
    Column("read_time_us", BigInteger, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("quality", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("superseded_time_us", BigInteger, nullable=False),
    Column("superseded_by", String(128), nullable=False),
)

meter_events = Table(
    "meter_events",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("meter_pk", BigInteger, nullable=False),
    Column("event_time_us", BigInteger, nullable=False),
    Column("event_type", SmallInteger, nullable=False),
    Column("cim_code", String(64), nullable=False),
    Column("details", Text, nullable=False),
    Column("head_end", String(128), nullable=False),
    UniqueConstraint("meter_pk", "event_time_us", "event_type", name="uq_meter_event"),
)

ingested_batches = Table(
    "ingested_batches",
    metadata,
    Column("idempotency_key", String(256), primary_key=True),
    Column("head_end", String(128), nullable=False),
    Column("commit_time_us", BigInteger, nullable=False),
    # The IngestOutcome of the first commit, as JSON, returned again on redelivery.
    Column("outcome", Text, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("head_end", String(128), nullable=False),
    Column("adapter_type", String(64), nullable=False),
    Column("receive_time_us", BigInteger, nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_dead_letters_head_end", "head_end", "id"),
)

source_stats = Table(
    "source_stats",
    metadata,
    Column("head_end", String(128), primary_key=True),
    Column("adapter_type", String(64), nullable=False),
    Column("batches_committed", BigInteger, nullable=False),
    Column("batches_rejected", BigInteger, nullable=False),
    Column("reads_committed", BigInteger, nullable=False),
    Column("dead_letters", BigInteger, nullable=False),
    Column("last_commit_time_us", BigInteger, nullable=False),
    Column("last_interval_end_us", BigInteger, nullable=False),
)

# The feed behind ReadingService.SubscribeIntervalBlocks: one row per committed
# new or changed channel-day, in commit order; seq is the resume cursor.
block_changes = Table(
    "block_changes",
    metadata,
    Column("seq", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("commit_time_us", BigInteger, nullable=False),
    # Who made the change (head-end name, "vee", or an authenticated editor),
    # what kind of change (SOURCE, SOURCE_REVISION, EDIT, APPROVE, REVALIDATE) and why.
    Column("actor", String(128), nullable=False, server_default=""),
    Column("action", String(32), nullable=False, server_default="SOURCE"),
    Column("reason", String(256), nullable=False, server_default=""),
    Index("ix_block_changes_channel_day", "channel_id", "day"),
)

vee_exceptions = Table(
    "vee_exceptions",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("channel_id", BigInteger, nullable=False),
    Column("meter_id", String(128), nullable=False),
    Column("start_time_us", BigInteger, nullable=False),
    Column("end_time_us", BigInteger, nullable=False),
    Column("severity", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("message", Text, nullable=False),
    Column("assignee", String(128), nullable=False, server_default=""),
    Column("resolution", Text, nullable=False, server_default=""),
    Column("resolved_by", String(128), nullable=False, server_default=""),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    # An open item is not opened twice for the same rule, channel and range.
    UniqueConstraint("rule", "channel_id", "start_time_us", "end_time_us", name="uq_vee_exception"),
    Index("ix_vee_exceptions_state", "state", "id"),
    Index("ix_vee_exceptions_channel", "channel_id", "start_time_us"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("active", SmallInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

service_points = Table(
    "service_points",
    metadata,
    Column("service_point_id", String(128), primary_key=True),
    Column("account_id", String(128), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("tariff", String(64), nullable=False),
    Column("net_metered", SmallInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

meter_installs = Table(
    "meter_installs",
    metadata,
    Column("meter_id", String(128), primary_key=True),
    Column("install_time_us", BigInteger, primary_key=True, autoincrement=False),
    Column("service_point_id", String(128), nullable=False),
    # 0 while installed.
    Column("remove_time_us", BigInteger, nullable=False),
    Column("start_read_wh", BigInteger, nullable=False),
    Column("final_read_wh", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Index("ix_meter_installs_service_point", "service_point_id"),
)

critical_peak_events = Table(
    "critical_peak_events",
    metadata,
    Column("tariff", String(64), primary_key=True),
    Column("event_date", String(10), primary_key=True),
)

# Where each outbound sink is in the change feed (block_changes.seq).
outbound_cursors = Table(
    "outbound_cursors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
