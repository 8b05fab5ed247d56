"""Bulk row loading per dialect: COPY on PostgreSQL, executemany elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (tuples in ``columns`` order) in one round trip per dialect."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        column_list = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
            f'COPY "{table.name}" ({column_list}) FROM STDIN'
        ) as copy:
            for row in rows:
                copy.write_row(row)
        return
    # SQLite: one executemany of plain tuples on the driver (a dict per row
    # through the ORM layer costs more than the insert itself).
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns)) if conn.dialect.paramstyle == "qmark" else ", ".join(["%s"] * len(columns))
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})',  # noqa: S608 - our own names
                         [tuple(row) for row in rows])
