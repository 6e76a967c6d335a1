"""Inbound webhooks: the pieces every provider's receiver shares.

- :class:`Intake` stores verified webhooks together. A request waits until the statement
  holding its item has committed (nothing is acknowledged before it is durable), and one
  statement at a time stores every item that came in while the previous one ran: one at a
  time when they come one at a time, up to ``batch`` in one statement and one commit under a
  burst. An item the database refuses fails its own request only: the others of its statement
  are stored again one by one.
- :class:`TargetCache` keeps what a receiver read about a webhook address (the tenant and its
  decrypted secrets) for a few seconds per process. A signature that fails against a cached
  secret is checked again against a fresh read (``fresh=True``), so a rotated secret works at
  once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database

Item = TypeVar("Item")
Stored = TypeVar("Stored")
Target = TypeVar("Target")

BATCH = 500  # items stored by one statement at most

# Stores a batch in one statement on ``engine`` (AUTOCOMMIT: one transaction each) and returns
# one result per item, in order.
Insert = Callable[[AsyncEngine, Sequence[Item]], Awaitable[list[Stored]]]


class Intake(Generic[Item, Stored]):
    """The items waiting to be stored in one process, and the one task storing them."""

    def __init__(self, engine: AsyncEngine, insert: Insert[Item, Stored], batch: int) -> None:
        self.engine = engine
        self.insert = insert
        self.batch = batch
        self.waiting: list[tuple[Item, asyncio.Future[Stored]]] = []
        self.task: asyncio.Task[None] | None = None

    async def store(self, item: Item) -> Stored:
        """Queue ``item`` for the next statement; its result once that has committed."""
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, done))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self.waiting:
            batch = self.waiting[: self.batch]
            del self.waiting[: self.batch]
            try:
                results = await self.insert(self.engine, [item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                for item, done in batch:  # one bad item must not fail the others
                    try:
                        (one,) = await self.insert(self.engine, [item])
                    except Exception as one_exc:
                        _settle(done, one_exc)
                    else:
                        _settle(done, one)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                _settle(done, result)


def _settle(done: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    if done.done():  # the request went away (the client hung up): nobody to tell
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


# One intake per event loop, engine and insert function (a process has one loop; tests may
# run several).
_intakes: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[int, object], Intake[Any, Any]]
] = weakref.WeakKeyDictionary()


def intake(
    engine: AsyncEngine, insert: Insert[Item, Stored], batch: int = BATCH
) -> Intake[Item, Stored]:
    """This event loop's intake storing with ``insert`` on ``engine``."""
    per_loop = _intakes.setdefault(asyncio.get_running_loop(), {})
    key = (id(engine), insert)
    found = per_loop.get(key)
    if found is None or found.engine is not engine:
        found = per_loop[key] = Intake(engine, insert, batch)
    return found


class TargetCache(Generic[Target]):
    """What ``load`` says about a webhook address, kept ``seconds`` per process (a missing
    address too: None)."""

    def __init__(
        self,
        load: Callable[[Database, Settings, uuid.UUID], Awaitable[Target | None]],
        seconds: float = 10.0,
    ) -> None:
        self.load = load
        self.seconds = seconds
        self._kept: dict[uuid.UUID, tuple[float, Target | None]] = {}

    async def get(
        self, database: Database, settings: Settings, key: uuid.UUID, *, fresh: bool = False
    ) -> Target | None:
        now = time.monotonic()
        hit = self._kept.get(key)
        if hit is not None and not fresh and hit[0] > now:
            return hit[1]
        found = await self.load(database, settings, key)
        self._kept[key] = (now + self.seconds, found)
        return found
