"""Opening the store: SQLite by file path (the embedded default) or any
SQLAlchemy URL (PostgreSQL via psycopg 3)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from store.schema import metadata

logger = logging.getLogger(__name__)


def store_url(location: str) -> str:
    """Turn a config value into a SQLAlchemy URL: a plain path means SQLite."""
    if "://" in location:
        if location.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver we ship; plain postgresql:// would pick psycopg2.
            return "postgresql+psycopg://" + location.split("://", 1)[1]
        return location
    return "sqlite:///" + str(Path(location).expanduser().resolve())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the gRPC API) run beside the single writer; FULL makes
    # an acknowledged commit durable, which is what "ack after commit" promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(location: str, *, create: bool = True) -> Engine:
    """Create the engine for a store location and, by default, its schema."""
    url = store_url(location)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    if create:
        metadata.create_all(engine)
    logger.info("store opened: %s", engine.url.render_as_string(hide_password=True))
    return engine
