"""Merging concurrent requests into batches on an asyncio event loop.

``BatchQueue`` is what ``eedge serve``'s in-process batcher
(``eedge.split.kserve_tail.Batcher``) and its Ray Serve dispatcher
(``eedge.split.ray_tail.RayDispatch``) share: ``submit`` queues a checked request
and awaits its rows of the outputs; ``_gather`` waits for pending requests, then up
to ``max_delay`` for ``max_batch`` rows, and pops a batch of whole requests;
``_compute`` merges a batch, runs it and hands each request its rows (or the
error). Subclasses say in ``_serve`` what is done with each batch. Only asyncio and
numpy here, so Ray workers importing ``ray_tail`` do not load KServe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np


class BatchQueue:
    """Requests waiting (on the server's event loop) to be merged into batches."""

    task_name = "eedge-batcher"

    def __init__(self, max_batch: int, max_delay_ms: float) -> None:
        self.max_batch, self.max_delay = max_batch, max_delay_ms / 1e3
        self.batches = 0          # batches run so far
        self.rows = 0             # rows they covered
        self._pending: deque[tuple[dict[str, np.ndarray], int, asyncio.Future]] = deque()
        self._pending_rows = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def _on_start(self) -> None:
        """Per-loop state a subclass needs before its ``_serve`` task starts."""

    async def submit(self, arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._wakeup = loop, asyncio.Event()
            self._on_start()
            self._task = loop.create_task(self._serve(), name=self.task_name)
        future: asyncio.Future = loop.create_future()
        self._pending.append((arrays, rows, future))
        self._pending_rows += rows
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def _serve(self) -> None:
        raise NotImplementedError

    async def _gather(self, loop: asyncio.AbstractEventLoop, wakeup: asyncio.Event,
                      ready: Callable[[], Awaitable[Any]] | None = None) -> list[Any]:
        """The next batch (``loop`` and ``wakeup`` as the ``_serve`` task started with):
        wait for a pending request, then for ``ready()`` (if given), then up to
        ``max_delay`` for ``max_batch`` rows; pop whole requests up to ``max_batch``
        rows (at least one)."""
        while not self._pending:
            wakeup.clear()
            await wakeup.wait()
        if ready is not None:
            await ready()
        deadline = loop.time() + self.max_delay
        while self._pending_rows < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch, rows = [], 0
        while self._pending and (not batch or rows + self._pending[0][1] <= self.max_batch):
            item = self._pending.popleft()
            self._pending_rows -= item[1]
            batch.append(item)
            rows += item[1]
        return batch

    async def _compute(self, batch: list[Any],
                       run: Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]]
                       ) -> None:
        """Merge the requests of ``batch`` still waiting, ``await run(merged)``, and give
        each its rows of the outputs (or, if ``run`` raised, the exception)."""
        live = [b for b in batch if not b[2].done()]  # a client that went away was cancelled
        if not live:
            return
        names = list(live[0][0])
        merged = {n: np.concatenate([b[0][n] for b in live]) for n in names}
        try:
            outputs = await run(merged)
        except Exception as exc:  # every waiting request learns about the failure
            for *_, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.rows += sum(b[1] for b in live)
        start = 0
        for _, rows, future in live:
            if not future.done():
                future.set_result({k: v[start:start + rows] for k, v in outputs.items()})
            start += rows
