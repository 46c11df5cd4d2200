"""Micro-batching of concurrent updates of different sessions of one model.

Each model has a lane: a queue and one dispatcher task. The dispatcher takes the first waiting update,
then waits up to ``wait_s`` for more to arrive, but only while other updates are already on their way
(:meth:`MicroBatcher.expecting`: being read from the store, not yet queued) and the batch is below
``batch_max``; a lone session therefore never waits. The batch runs in the compute executor (one
thread: onnxruntime and torch each use their own intra-op threads). More than ``queue_limit`` queued
updates in the process is answered 429 (:class:`service.errors.Busy`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from service.engine import UpdateInput, UpdateOutput
from service.errors import Busy
from service.lainr_engine import LainrUpdateInput
from service.runtime import AnyRuntime

Item = UpdateInput | LainrUpdateInput
Compute = Callable[[AnyRuntime, Sequence[Item]], list[UpdateOutput]]


@dataclass
class _Lane:
    runtime: AnyRuntime
    queue: deque[tuple[Item, asyncio.Future[UpdateOutput]]] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class MicroBatcher:
    def __init__(
        self,
        compute: Compute,
        executor: Executor,
        *,
        batch_max: int,
        wait_s: float,
        queue_limit: int,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.compute = compute
        self.executor = executor
        self.batch_max = batch_max
        self.wait_s = wait_s
        self.queue_limit = queue_limit
        self.on_batch = on_batch
        self._lanes: dict[str, _Lane] = {}
        self._queued = 0
        self._expecting = 0

    def _lane(self, runtime: AnyRuntime) -> _Lane:
        lane = self._lanes.get(runtime.name)
        if lane is None or lane.runtime is not runtime:
            lane = self._lanes[runtime.name] = _Lane(runtime)
        return lane

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark an update as on its way (being read and checked), so a forming batch waits for it;
        leave the block before :meth:`submit`."""
        self._expecting += 1
        try:
            yield
        finally:
            self._expecting -= 1
            for lane in self._lanes.values():
                lane.arrived.set()

    async def submit(self, runtime: AnyRuntime, item: Item) -> UpdateOutput:
        if self._queued >= self.queue_limit:
            raise Busy(
                f"the assimilation queue is full ({self.queue_limit} updates waiting); retry after the "
                "Retry-After delay, or add replicas"
            )
        lane = self._lane(runtime)
        future: asyncio.Future[UpdateOutput] = asyncio.get_running_loop().create_future()
        lane.queue.append((item, future))
        self._queued += 1
        lane.arrived.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._dispatch(lane))
        return await future

    async def _dispatch(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while lane.queue:
            deadline = loop.time() + self.wait_s
            while len(lane.queue) < self.batch_max and self._expecting > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                lane.arrived.clear()
                try:
                    await asyncio.wait_for(lane.arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [lane.queue.popleft() for _ in range(min(self.batch_max, len(lane.queue)))]
            self._queued -= len(batch)
            if self.on_batch is not None:
                self.on_batch(lane.runtime.name, len(batch))
            await self._run(lane, batch)

    async def _run(self, lane: _Lane, batch: list[tuple[Item, asyncio.Future[UpdateOutput]]]) -> None:
        """Compute a batch; when it raises, compute its items one by one, so the item that fails gets
        its error and the others (other sessions, other tenants) their results."""
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                self.executor, self.compute, lane.runtime, [item for item, _ in batch]
            )
        except Exception as err:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(err)
                return
            for one in batch:
                await self._run(lane, [one])
            return
        for (_, future), output in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(output)

    async def close(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None and not lane.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
