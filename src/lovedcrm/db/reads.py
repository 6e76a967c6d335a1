"""Hot read statements run on the session's own connection, without SQLAlchemy's work per
execution.

A request's hot reads (the API key's look-up, a page of leads) are the same few statements
run thousands of times. Through ``session.execute`` each run pays for the statement's cache
key (a walk of the whole expression), the ORM's or Core's execution context, the greenlet
hand-off and a ``Row`` per row: on this kind of machine about a millisecond per statement,
more than PostgreSQL spends on it. :func:`prepare` compiles a statement once for the engine's
dialect; :func:`fetch` runs it on the driver connection under the session's transaction (same
connection, same tenant settings, same row-level security), binding values by name as
SQLAlchemy would and returning rows with the same attribute names and values. The engine's
``before_cursor_execute`` and ``after_cursor_execute`` listeners are told of each statement,
as SQLAlchemy tells them.

Values are converted both ways as SQLAlchemy would (its bind and result processors for the
dialect). A statement this cannot run the same way (an expanding ``IN``, two result columns
of one name) is not prepared (:func:`prepare` answers None) and the caller executes it as
usual. See
``docs/decisions/0014-lean-hot-reads.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import ClauseElement, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine


@dataclass(frozen=True)
class Prepared:
    """A compiled read: its SQL in the driver's parameter style, the compiled form that binds
    values by name, and the conversion of each bound value that has one."""

    sql: str
    compiled: SQLCompiler
    processors: Mapping[str, Callable[[Any], Any]]
    types: tuple[TypeEngine[Any], ...]
    # The result columns' conversions by the types PostgreSQL answered with (SQLAlchemy
    # chooses some by them: a NUMERIC read as float, a float read as Decimal).
    conversions: dict[tuple[int, ...], tuple[Callable[[Any], Any] | None, ...]] = field(
        default_factory=dict, compare=False
    )


def prepare(statement: Executable, dialect: Dialect) -> Prepared | None:
    """``statement`` compiled for ``dialect``'s driver, or None when only SQLAlchemy can run
    it the same way (see the module's doc)."""
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or dialect.paramstyle != "pyformat":
        return None
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None  # rendered per execution (expanding IN, literal_execute)
    names = [c[0] for c in compiled._result_columns if c[0] is not None]  # None: textual
    if len(set(names)) != len(names):
        return None
    processors = {
        name: fn
        for name, fn in compiled._bind_processors.items()
        if callable(fn) and isinstance(name, str)
    }
    types = tuple(entry.type.dialect_impl(dialect) for entry in compiled._result_columns)
    return Prepared(compiled.string, compiled, processors, types)


_KNOWN: dict[tuple[Executable, str], Prepared | None] = {}


def prepared_for(session: AsyncSession, statement: Executable) -> Prepared | None:
    """``statement`` prepared for the session's database, once per process (for statements
    kept at module level)."""
    dialect = session.get_bind().dialect
    key = (statement, dialect.name)
    if key not in _KNOWN:
        _KNOWN[key] = prepare(statement, dialect)
    return _KNOWN[key]


async def rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any]
) -> list[Any]:
    """Every row of a module-level ``statement`` with ``params``: through :func:`fetch` when
    it can be prepared, else ``session``'s connection. Rows have the columns as attributes."""
    ready = prepared_for(session, statement)
    if ready is not None:
        return await fetch(session, ready, params)
    connection = await session.connection()
    return list((await connection.execute(statement, params)).all())


async def fetch(session: AsyncSession, prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
    """Every row of ``prepared`` with ``params`` (by bind name, as ``session.execute`` takes
    them), in the session's transaction. Rows are named tuples."""
    values = prepared.compiled.construct_params(params)
    for name, processor in prepared.processors.items():
        if values.get(name) is not None:
            values[name] = processor(values[name])
    connection = await session.connection()  # checked out, in the session's transaction
    sync = connection.sync_connection
    assert sync is not None
    driver = sync.connection.driver_connection
    assert driver is not None
    async with driver.cursor(row_factory=namedtuple_row) as cursor:
        told = sync._has_events or sync.engine._has_events
        if told:
            # Listeners of the engine's statements (the query-plan guard, tracing) see
            # these too, before and after, as SQLAlchemy would show them.
            sync.dispatch.before_cursor_execute(sync, cursor, prepared.sql, values, None, False)
        await cursor.execute(prepared.sql, values, binary=True)
        if told:
            sync.dispatch.after_cursor_execute(sync, cursor, prepared.sql, values, None, False)
        found: list[Any] = await cursor.fetchall()
        result = cursor.pgresult  # the column types, without building a description
        codes = tuple(result.ftype(i) for i in range(result.nfields)) if result else ()
    conversions = prepared.conversions.get(codes)
    if conversions is None:
        conversions = _conversions(prepared, codes, session.get_bind().dialect)
    if not any(conversions):
        return found
    return [
        row._make(
            v if f is None or v is None else f(v) for f, v in zip(conversions, row, strict=True)
        )
        for row in found
    ]


def _conversions(
    prepared: Prepared, codes: tuple[int, ...], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    """What SQLAlchemy would do to each value of a row with these column types (nothing for
    a textual statement, whose columns it does not know)."""
    if len(prepared.types) != len(codes):
        found: tuple[Callable[[Any], Any] | None, ...] = (None,) * len(codes)
    else:
        found = tuple(
            kind.result_processor(dialect, code)
            for kind, code in zip(prepared.types, codes, strict=True)
        )
    prepared.conversions[codes] = found
    return found
