"""Bulk I/O between DataFrames and the store.

On PostgreSQL rows move with ``COPY`` in CSV form, written and parsed by Arrow in large chunks
(never one Python call per row); on SQLite, the embedded default, with ``executemany``.

* :func:`copy_frame` appends a frame's rows to a table (:func:`copy_frames`, frames made one at
  a time); :func:`indexes_rebuilt_after` defers index upkeep over a large append, and
  :func:`vacuum_after_load` settles the tables after it.
* :func:`upsert_frame` inserts or replaces rows by the table's primary key.
* :func:`read_frame` runs a query into a typed frame (``COPY (query) TO STDOUT`` on PostgreSQL).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import ClientCursor, pq
from psycopg import errors as psycopg_errors
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    Text,
    TextClause,
    bindparam,
    insert,
    text,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Executable

from fwa_pipeline.compute.shards import bucket_of
from fwa_pipeline.store.models import Base

# Rows per COPY chunk: about 10 MB of CSV for a claims row.
COPY_CHUNK_ROWS = 100_000
# SQLite's executemany batches.
SQLITE_CHUNK_ROWS = 20_000
# indexes_rebuilt_after drops and rebuilds a table's secondary indexes when the rows appended
# are at least this many times the rows already there. Building a btree by sorting costs far
# less per row than inserting rows one by one into it (PostgreSQL 15, 650,000 claims into an
# empty medical_claims: 2.9-3.9 s of COPY + 3.4-3.9 s of index builds, against 22-28 s of COPY
# through its four indexes), but a rebuild also sorts every row already there. The per-row gap
# measured 1.5x to 5x (more under load), putting the break-even between half and four times the
# batch: 1 keeps to the safe side.
REBUILD_INDEXES_RATIO = 1.0
# A table's statistics are refreshed when the rows added or changed since they were gathered are
# at least this share of the rows the planner counted then (statistics_stale).
ANALYZE_SHARE = 0.2


def _table(table: str | Table) -> Table:
    return Base.metadata.tables[table] if isinstance(table, str) else table


def _psycopg(connection: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy one (same transaction)."""
    return connection.connection.driver_connection


def _arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


# --------------------------------------------------------------------------- writing


def wire_table(table: Table, json_columns: Iterable[str], omit: Iterable[str] = ()) -> Table:
    """``table`` as :func:`copy_frame` writes it when ``json_columns`` come already serialised:
    COPY hands PostgreSQL JSON text for its jsonb columns and SQLite stores the text its JSON
    columns read back (no second encoding). ``omit``: columns left to the database (ids)."""
    as_text, left = set(json_columns), set(omit)
    return Table(
        table.name,
        MetaData(),
        *(
            Column(c.name, Text() if c.name in as_text else c.type)
            for c in table.columns
            if c.name not in left
        ),
    )


def copy_frame(connection: Connection, table: str | Table, df: pd.DataFrame) -> int:
    """Append ``df``'s rows to ``table`` (columns by name) in the connection's transaction.

    NULLs are missing values (None/NaN/NA); the frame's columns must exist in the table, and
    columns it lacks get the model's constant default (``member_bucket``: its member's bucket).
    Values must be scalars (a JSON column takes JSON text through a Text-typed ``Table``).
    Returns the number of rows written.
    """
    return copy_frames(connection, table, [df])


def copy_frames(connection: Connection, table: str | Table, frames: Iterable[pd.DataFrame]) -> int:
    """:func:`copy_frame` for frames made one at a time, all with the first one's columns, in
    one COPY: each goes to the server as soon as it is made, so making the next one overlaps
    the server's work on it."""
    target = _table(table)
    chunks = (_with_member_bucket(target, frame) for frame in frames if not frame.empty)
    first = next(chunks, None)
    if first is None:
        return 0
    chained = itertools.chain([first], chunks)
    if connection.dialect.name == "postgresql":
        filled = (_with_defaults(target, frame) for frame in chained)
        return _copy_in(connection, target.name, filled)
    return sum(_executemany(connection, insert(target), frame) for frame in chained)


@contextmanager
def indexes_rebuilt_after(
    connection: Connection, rows: Mapping[str | Table, int]
) -> Iterator[list[str]]:
    """For a block appending ``rows[table]`` rows to each table: on PostgreSQL, the secondary
    indexes of each table holding at most ``rows / REBUILD_INDEXES_RATIO`` rows are dropped
    first and built again when the block ends, in the caller's transaction (a rollback
    restores them). Yields the names of the tables concerned.

    Dropping an index takes the table's exclusive lock until the transaction ends, so a table
    that another transaction is using keeps its indexes. Elsewhere this does nothing.
    """
    appended = [(_table(t), n) for t, n in rows.items()]
    tables = [
        t
        for t, n in appended
        if connection.dialect.name == "postgresql"
        and n
        and _is_small_next_to(connection, t, n)
        and _locked_if_unused(connection, t)
    ]
    definitions = [d for t in tables for d in _drop_secondary_indexes(connection, t)]
    yield [t.name for t in tables]
    for definition in definitions:
        connection.exec_driver_sql(definition)


def statistics_stale(changed: int, counted: float) -> bool:
    """Whether ``changed`` rows leave behind the planner's statistics of a table it last counted
    at ``counted`` rows (``pg_class.reltuples``; -1: never): they are ``ANALYZE_SHARE`` of it.
    Shared by the loader's VACUUM and a run's ANALYZE (``store.results``)."""
    return bool(changed) and changed >= ANALYZE_SHARE * max(counted, 0.0)


def vacuum_after_load(engine: Engine, rows: Mapping[str | Table, int]) -> list[str]:
    """After a committed load of ``rows[table]`` rows into each table, on PostgreSQL:
    ``VACUUM (ANALYZE)`` each table that grew by at least ``ANALYZE_SHARE`` of the rows it held.
    Returns the tables vacuumed.

    The next pipeline run reads every new row. Without this, that read sets each new row's
    commit hint bits (writing the pages again) and plans with statistics from before the load:
    on a million claims, the first run took a second longer than the VACUUM costs (0.45 s).
    Autovacuum would get there too, but not before a run that a sensor starts at once. A table
    another VACUUM or ANALYZE holds is skipped, not waited for. Elsewhere this does nothing."""
    if engine.dialect.name != "postgresql":
        return []
    vacuumed = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table, added in rows.items():
            name = _table(table).name
            # reltuples: the rows counted by the last VACUUM or ANALYZE (-1: never).
            counted = connection.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
                {"table": name},
            ).scalar_one()
            if statistics_stale(added, float(counted)):
                connection.exec_driver_sql(f"VACUUM (ANALYZE, SKIP_LOCKED) {name}")
                vacuumed.append(name)
    return vacuumed


def upsert_frame(connection: Connection, table: str | Table, df: pd.DataFrame) -> int:
    """Insert ``df``'s rows into ``table``, replacing rows with the same primary key.

    Every primary-key column must be in ``df`` and each key must appear once in it (PostgreSQL
    cannot update one row twice in a statement). Columns of the table not in ``df`` keep their
    value on replaced rows and get the model's constant default on new ones (``member_bucket``:
    its member's bucket, on every row).
    """
    target = _table(table)
    if df.empty:
        return 0
    df = _with_member_bucket(target, df)
    key = [c.name for c in target.primary_key.columns]
    updated = [c for c in df.columns if c not in key]
    if connection.dialect.name == "postgresql":
        prepare = connection.dialect.identifier_preparer
        staging = f"_fwa_upsert_{target.name}_{secrets.token_hex(4)}"
        # New rows get the model's defaults; replaced rows keep what the frame does not set.
        filled = _with_defaults(target, df)
        columns = ", ".join(prepare.quote(c) for c in filled.columns)
        assignments = ", ".join(
            f"{prepare.quote(c)} = EXCLUDED.{prepare.quote(c)}" for c in updated
        )
        conflict = "DO NOTHING" if not updated else f"DO UPDATE SET {assignments}"
        # Staged through COPY: a temporary copy of the table's shape, dropped at commit.
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE {staging} (LIKE {prepare.format_table(target)} "
            "INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        _copy_in(connection, staging, [filled])
        connection.exec_driver_sql(
            f"INSERT INTO {prepare.format_table(target)} ({columns}) "
            f"SELECT {columns} FROM {staging} "
            f"ON CONFLICT ({', '.join(prepare.quote(c) for c in key)}) {conflict}"
        )
        connection.exec_driver_sql(f"DROP TABLE {staging}")
    else:
        statement = sqlite_insert(target)
        statement = statement.on_conflict_do_update(
            index_elements=key, set_={c: statement.excluded[c] for c in updated}
        )
        _executemany(connection, statement, df)
    return len(df)


def _with_member_bucket(target: Table, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its rows' ``member_bucket`` where ``target`` keeps one and ``df`` lacks it:
    computed for the whole frame at once, not by the model's per-row default (which COPY
    skips, and which costs a pandas call per row on SQLite's executemany)."""
    if "member_bucket" not in target.c or "member_bucket" in df.columns:
        return df
    # No member_id column: every row's member is missing, which is bucket 0.
    members = df["member_id"] if "member_id" in df.columns else pd.Series(None, index=df.index)
    return df.assign(member_bucket=bucket_of(members))


def _with_defaults(target: Table, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus the table's constant column defaults it lacks (flags...).
    SQLAlchemy applies these to its own inserts (the SQLite path); COPY must be given them."""
    missing = {
        column.name: column.default.arg
        for column in target.columns
        if column.name not in df.columns and column.default is not None and column.default.is_scalar
    }
    return df.assign(**missing) if missing else df


def _is_small_next_to(connection: Connection, target: Table, rows: int) -> bool:
    """Whether ``target`` holds at most ``rows / REBUILD_INDEXES_RATIO`` rows (counted only up
    to just past that bound: the check costs a fraction of the load it decides on)."""
    bound = int(rows / REBUILD_INDEXES_RATIO)
    prepare = connection.dialect.identifier_preparer
    existing = connection.execute(
        text(f"SELECT count(*) FROM (SELECT FROM {prepare.format_table(target)} LIMIT :n) AS t"),
        {"n": bound + 1},
    ).scalar_one()
    return bool(existing <= bound)


def _locked_if_unused(connection: Connection, target: Table) -> bool:
    """Take ``target``'s exclusive lock, held until the transaction ends, unless another
    transaction holds any lock on it (then False, nothing locked). Waiting for it instead
    would queue every later reader of the table behind this load."""
    table = connection.dialect.identifier_preparer.format_table(target)
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE NOWAIT")
    except OperationalError as exc:
        if isinstance(exc.orig, psycopg_errors.LockNotAvailable):
            return False
        raise
    return True


def _drop_secondary_indexes(connection: Connection, target: Table) -> list[str]:
    """Drop ``target``'s indexes other than its constraints' (primary key, unique); return
    their definitions."""
    indexes = connection.execute(
        text(
            "SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid) "
            "FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE i.indrelid = CAST(:table AS regclass) AND NOT EXISTS "
            "(SELECT FROM pg_constraint AS k WHERE k.conindid = i.indexrelid) "
            "ORDER BY c.relname"
        ),
        {"table": connection.dialect.identifier_preparer.format_table(target)},
    ).all()
    for name, _ in indexes:
        connection.exec_driver_sql(f"DROP INDEX {name}")
    return [definition for _, definition in indexes]


def _copy_in(connection: Connection, table: str, frames: Iterable[pd.DataFrame]) -> int:
    """COPY ``frames`` (the first one's columns) into ``table``; the number of rows."""
    chunks = iter(frames)
    first = next(chunks)
    prepare = connection.dialect.identifier_preparer
    columns = ", ".join(prepare.quote(c) for c in first.columns)
    # Arrow quotes every string, so "\." and empty strings stay data; nulls are written as
    # nothing, which COPY's CSV format reads as NULL.
    options = pa_csv.WriteOptions(include_header=False)
    sql = f"COPY {prepare.quote(table)} ({columns}) FROM STDIN (FORMAT csv)"
    rows = 0
    try:
        with _psycopg(connection).cursor() as cursor, cursor.copy(sql) as copy:
            for df in itertools.chain([first], chunks):
                for batch in _arrow(df[first.columns]).to_batches(max_chunksize=COPY_CHUNK_ROWS):
                    sink = pa.BufferOutputStream()
                    pa_csv.write_csv(batch, sink, options)
                    copy.write(memoryview(sink.getvalue()))
                rows += len(df)
    except psycopg_errors.Error as exc:
        # Raised as SQLAlchemy raises a failed statement (IntegrityError, OperationalError...),
        # so callers handle a failed COPY like any other.
        raise DBAPIError.instance(sql, None, exc, psycopg_errors.Error) from exc
    return rows


def _executemany(connection: Connection, statement: Executable, df: pd.DataFrame) -> int:
    arrow = _arrow(df)
    for batch in arrow.to_batches(max_chunksize=SQLITE_CHUNK_ROWS):
        connection.execute(statement, batch.to_pylist())
    return len(df)


# --------------------------------------------------------------------------- reading

# PostgreSQL type OIDs of the result columns a frame gets typed from; others are strings.
_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}

# SQLite declared types (their affinity prefix) of the same.
_SQLITE_TYPES: tuple[tuple[str, pa.DataType], ...] = (
    ("BOOLEAN", pa.bool_()),
    ("DATETIME", pa.timestamp("us", tz="UTC")),
    ("TIMESTAMP", pa.timestamp("us", tz="UTC")),
    ("DATE", pa.date32()),
    ("INT", pa.int64()),
    ("BIGINT", pa.int64()),
    ("SMALLINT", pa.int64()),
    ("FLOAT", pa.float64()),
    ("REAL", pa.float64()),
    ("DOUBLE", pa.float64()),
    ("NUMERIC", pa.float64()),
    ("DECIMAL", pa.float64()),
)


def read_frame(
    source: Engine | Connection,
    query: str | Executable,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run ``query`` (SQL text with ``:name`` parameters, or a SQLAlchemy statement) into a
    DataFrame typed from the result columns' database types, the same on both engines:

    integers ``Int64``, booleans ``boolean``, numeric and float ``float64``, dates
    ``datetime64[us]``, timestamps with time zone ``datetime64[us, UTC]``, anything else
    ``str`` (NULL is ``<NA>``/``NaN``/``NaT``). A list or tuple parameter expands for ``IN :name``.

    On PostgreSQL the rows stream through ``COPY (query) TO STDOUT`` and Arrow's CSV reader.
    """
    with connection_of(source) as connection:
        sql = _literal_sql(connection, query, params or {})
        if connection.dialect.name == "postgresql":
            table = _read_postgres(connection, sql)
        else:
            table = _read_sqlite(connection, sql)
    return _to_pandas(table)


@contextmanager
def connection_of(source: Engine | Connection) -> Iterator[Connection]:
    """The caller's connection, or one of its own from the engine (reads: no transaction is
    begun, and the caller's is left as it is)."""
    if isinstance(source, Connection):
        yield source
    else:
        with source.connect() as connection:
            yield connection


def _literal_sql(connection: Connection, query: str | Executable, params: Mapping[str, Any]) -> str:
    """The statement with its parameters rendered as literals by the driver's own quoting
    (``COPY`` and view definitions take no bound parameters)."""
    # A trailing semicolon would end the subquery or view the SQL is wrapped in.
    statement: Any = text(query.strip().rstrip(";")) if isinstance(query, str) else query
    if isinstance(statement, TextClause):
        statement = statement.bindparams(
            *(
                bindparam(k, value=v, expanding=isinstance(v, list | tuple))
                for k, v in params.items()
            )
        )
    elif params:
        statement = statement.params(params)
    if connection.dialect.name == "postgresql":
        compiled = statement.compile(
            dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
        )
        return ClientCursor(_psycopg(connection)).mogrify(compiled.string, compiled.params)
    return str(
        statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    )


def _read_postgres(connection: Connection, sql: str) -> pa.Table:
    with _psycopg(connection).cursor() as cursor:
        # The result's column types, without running the query.
        cursor.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
        types = {d.name: _PG_TYPES.get(d.type_code, pa.string()) for d in cursor.description}
        if len(types) != len(cursor.description):
            raise ValueError("read_frame: the query returns two columns of the same name")
    data = _copy_out(connection, f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER true)")
    # Timestamps carry their UTC offset, which Arrow applies.
    return pa_csv.read_csv(
        pa.py_buffer(data),
        convert_options=pa_csv.ConvertOptions(
            column_types=types,
            true_values=["t"],
            false_values=["f"],
            # COPY writes NULL as an empty unquoted field and an empty string as "".
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
    )


def _copy_out(connection: Connection, copy_sql: str) -> bytearray:
    """The output of a ``COPY ... TO STDOUT`` statement, read straight from libpq: psycopg's
    ``Copy`` object spends seconds of Python per million rows (a generator round per row),
    this loop a fraction of one. Runs in the connection's transaction, which it leaves idle."""
    driver = _psycopg(connection)
    pgconn = driver.pgconn
    pgconn.send_query(copy_sql.encode(driver.info.encoding))
    started = pgconn.get_result()
    if started.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise psycopg_errors.error_from_result(started, encoding=driver.info.encoding)
    # Appended to one buffer: a million row objects kept alive cost more than copying them.
    data = bytearray()
    read = pgconn.get_copy_data
    try:
        # Blocking reads of one row each; -1 ends the data (-2, an error, raises).
        while (row := read(0))[0] >= 0:
            data += row[1]
        finished = pgconn.get_result()
    finally:
        _drain(pgconn)
    if finished.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg_errors.error_from_result(finished, encoding=driver.info.encoding)
    return data


def _drain(pgconn: Any) -> None:
    """Read what is left of a statement's data and results, so the connection is usable."""
    with suppress(psycopg_errors.OperationalError):
        while pgconn.get_copy_data(0)[0] >= 0:
            pass
    while pgconn.get_result() is not None:
        pass


def _read_sqlite(connection: Connection, sql: str) -> pa.Table:
    # A view's columns report their declared types, which type the result as on PostgreSQL
    # (SQLite itself returns dates and timestamps as text and booleans as 0/1).
    view = f"_fwa_read_{secrets.token_hex(4)}"
    connection.exec_driver_sql(f"CREATE TEMP VIEW {view} AS {sql}")
    try:
        declared = connection.exec_driver_sql(f"PRAGMA table_info({view})").all()
        result = connection.exec_driver_sql(f"SELECT * FROM {view}")
        names = list(result.keys())
        rows = result.all()
    finally:
        connection.exec_driver_sql(f"DROP VIEW {view}")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [
        _cast(pa.array(values), _sqlite_type(row[2]))
        for values, row in zip(columns, declared, strict=True)
    ]
    return pa.table(arrays, names=names)


def _sqlite_type(declared: str) -> pa.DataType | None:
    upper = declared.upper()
    if not upper:  # an expression: keep what SQLite returned
        return None
    return next((t for prefix, t in _SQLITE_TYPES if upper.startswith(prefix)), pa.string())


def _cast(array: pa.Array, target: pa.DataType | None) -> pa.Array:
    if target is None or array.type == target:
        return array
    if pa.types.is_timestamp(target) and pa.types.is_string(array.type):
        # SQLite holds timestamps as naive UTC text.
        return pc.cast(pc.cast(array, pa.timestamp(target.unit)), target)
    return pc.cast(array, target)


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Dates become datetime64[us], what pandas itself makes of ISO date strings.
    columns = [
        pc.cast(c, pa.timestamp("us")) if c.type == pa.date32() else c for c in table.columns
    ]
    return pa.table(columns, names=table.column_names).to_pandas(types_mapper=_PANDAS_TYPES.get)
