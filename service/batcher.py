"""Micro-batching of concurrent updates of different sessions of one model.

Each model has a lane per size class: a queue and one dispatcher task. The dispatcher takes the first
waiting update, then waits up to ``wait_s`` for more to arrive, but only while other updates are
already on their way (:meth:`MicroBatcher.expecting`: being read from the store, not yet queued) and
the batch is below ``batch_max``; a lone session therefore never waits. Updates whose cost (ensemble
members x observations) reaches ``large_cost`` go to lanes of their own on a second executor, so a
large LAINR post does not hold up the small ones. Each executor is one thread (onnxruntime and torch
each use their own intra-op threads).

Overload is shed by the wait an update would have: the batches ahead of it on its executor (the one
running, and each lane's queue in batches of ``batch_max``) times the measured seconds per batch. At
saturation batches are full, so the batches measured are the ones waited for. Over ``max_wait_s`` (or
more than ``queue_limit`` queued updates in the process) the answer is 429 (:class:`service.errors.Busy`)
with that wait as Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
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


def update_cost(item: Item) -> int:
    """What an update costs, in member evaluations: LD-EnSF one per member, LAINR one per member and
    observation (the decoder runs at every observed point for every member)."""
    members = int(item.ensemble.shape[0])
    if isinstance(item, LainrUpdateInput):
        return members * max(1, int(item.observations.values.size))
    return members


@dataclass
class _Load:
    """One executor and what waits for it."""

    executor: Executor
    running: int = 0  # batches
    seconds_per_batch: float | None = None  # moving average over the batches run

    def measured(self, seconds: float) -> None:
        previous = self.seconds_per_batch
        self.seconds_per_batch = seconds if previous is None else 0.8 * previous + 0.2 * seconds


@dataclass
class _Lane:
    runtime: AnyRuntime
    load: _Load
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
        max_wait_s: float = math.inf,
        large_executor: Executor | None = None,
        large_cost: float = math.inf,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.compute = compute
        self.batch_max = batch_max
        self.wait_s = wait_s
        self.queue_limit = queue_limit
        self.max_wait_s = max_wait_s
        self.large_cost = large_cost
        self.on_batch = on_batch
        small = _Load(executor)
        self._loads = {"small": small, "large": _Load(large_executor) if large_executor else small}
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._queued = 0
        self._expecting = 0

    def _lane(self, runtime: AnyRuntime, size: str) -> _Lane:
        lane = self._lanes.get((runtime.name, size))
        if lane is None or lane.runtime is not runtime:
            lane = self._lanes[(runtime.name, size)] = _Lane(runtime, self._loads[size])
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

    def _predicted_wait(self, load: _Load) -> float:
        if load.seconds_per_batch is None:
            return 0.0
        queued = sum(
            math.ceil(len(lane.queue) / self.batch_max) for lane in self._lanes.values() if lane.load is load
        )
        return (load.running + queued) * load.seconds_per_batch

    async def submit(self, runtime: AnyRuntime, item: Item) -> UpdateOutput:
        size = "large" if update_cost(item) >= self.large_cost else "small"
        load = self._loads[size]
        wait = self._predicted_wait(load)
        retry = {"Retry-After": str(max(1, math.ceil(wait)))}
        if self._queued >= self.queue_limit:
            raise Busy(
                f"the assimilation queue is full ({self.queue_limit} updates waiting); retry after the "
                "Retry-After delay, or add replicas",
                headers=retry,
            )
        if wait > self.max_wait_s:
            raise Busy(
                f"the service is saturated: this update would wait about {wait * 1e3:.0f} ms, over this "
                f"server's budget of {self.max_wait_s * 1e3:.0f} ms (LDENSF_MAX_QUEUE_WAIT_MS); retry "
                "after the Retry-After delay, or add replicas",
                headers=retry,
            )
        lane = self._lane(runtime, size)
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
            lane.load.running += 1
            try:
                await self._run(lane, batch)
            finally:
                lane.load.running -= 1

    async def _run(self, lane: _Lane, batch: list[tuple[Item, asyncio.Future[UpdateOutput]]]) -> None:
        """Compute a batch; when it raises, compute its items one by one, so the item that fails gets
        its error and the others (other sessions, other tenants) their results."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(
                lane.load.executor, self.compute, lane.runtime, [item for item, _ in batch]
            )
            lane.load.measured(time.perf_counter() - started)
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
