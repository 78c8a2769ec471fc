"""Dynamic micro-batching: concurrent requests gathered into one forward pass of one model.

Requests wait in a bounded FIFO queue. A single worker task takes from its head as many requests as fit
the batch budget (texts and characters) and hands them to the model, which runs in one dedicated thread
so the event loop keeps answering. While the model is idle, a batch waits for company as long as requests
keep coming within ``max_wait_s`` of each other (at most 4 x ``max_wait_s``); while it is busy, requests
pile up and the next batch is simply what arrived meanwhile.
A request whose caller gave up (deadline, cancellation) before its turn is dropped, not computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from guardrail.serving.metrics import ServingMetrics
from guardrail.spans import Span

DetectFn = Callable[[list[str], list[str] | None], list[list[Span]]]
"""``(texts, labels) -> spans per text``: the model, called in the worker thread."""


class QueueFull(Exception):
    """The queue holds as many texts as it may; the caller should back off (RESOURCE_EXHAUSTED)."""


class Closed(Exception):
    """The batcher is shutting down and takes no new work (UNAVAILABLE)."""


class Expired(Exception):
    """The request's deadline passed while it waited; it was dropped unread (DEADLINE_EXCEEDED)."""


@dataclass(eq=False)
class _Item:
    texts: list[str]
    labels: tuple[str, ...] | None
    deadline: float | None
    future: asyncio.Future[list[list[Span]]]
    chars: int = field(init=False)

    def __post_init__(self) -> None:
        self.chars = sum(len(t) for t in self.texts)


class Batcher:
    """Gathers concurrent ``detect`` calls into batches for one model (see the module docstring)."""

    def __init__(
        self,
        detect: DetectFn,
        *,
        max_batch_texts: int = 64,
        max_batch_chars: int = 32_768,
        max_wait_s: float = 0.005,
        queue_texts: int = 2048,
        metrics: ServingMetrics | None = None,
    ):
        self._detect = detect
        self.max_batch_texts = max_batch_texts
        self.max_batch_chars = max_batch_chars
        self.max_wait_s = max_wait_s
        self.queue_texts = queue_texts
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._queued_texts = 0
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        # One thread: the model is one instance, and torch already spreads one call over the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrail-model")

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model now."""
        return self._queued_texts

    def start(self) -> None:
        """Start the worker task on the running loop."""
        self._arrived = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="guardrail-batcher")

    async def detect(
        self, texts: Sequence[str], labels: Sequence[str] | None = None, *, timeout: float | None = None
    ) -> list[list[Span]]:
        """Spans per text, computed in some batch; raises QueueFull, Closed or Expired.

        ``timeout`` (seconds) is the caller's remaining deadline: past it the request is dropped from the
        queue (or its result discarded) and :class:`Expired` raised.
        """
        if self._closing or self._worker is None or self._arrived is None:
            raise Closed("the server is shutting down")
        items = list(texts)
        if not items:
            return []
        if self._queued_texts + len(items) > self.queue_texts:
            raise QueueFull(f"{self._queued_texts} texts are queued; the limit is {self.queue_texts}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        item = _Item(items, tuple(labels) if labels is not None else None, deadline, loop.create_future())
        self._queue.append(item)
        self._set_queued(self._queued_texts + len(items))
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout)
        except TimeoutError:
            raise Expired("deadline exceeded while waiting for the model") from None
        finally:
            if not item.future.done():
                item.future.cancel()  # still queued: the worker skips it; running: its result is dropped

    async def close(self) -> None:
        """Take no new work, finish what is queued, stop the worker and its thread."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    def _set_queued(self, n: int) -> None:
        self._queued_texts = n
        if self._metrics is not None:
            self._metrics.queue_texts.set(n)

    def _full(self) -> bool:
        texts = chars = 0
        for it in self._queue:
            texts += len(it.texts)
            chars += it.chars
            if texts >= self.max_batch_texts or chars >= self.max_batch_chars:
                return True
        return False

    def _take(self, now: float) -> list[_Item]:
        """Pop the next batch off the queue's head, dropping abandoned and expired requests."""
        batch: list[_Item] = []
        texts = chars = 0
        while self._queue:
            it = self._queue[0]
            if batch and (
                texts + len(it.texts) > self.max_batch_texts or chars + it.chars > self.max_batch_chars
            ):
                break
            self._queue.popleft()
            self._set_queued(self._queued_texts - len(it.texts))
            if it.future.done():
                continue  # the caller gave up already
            if it.deadline is not None and now >= it.deadline:
                it.future.set_exception(Expired("deadline exceeded while waiting for the model"))
                continue
            batch.append(it)
            texts += len(it.texts)
            chars += it.chars
        return batch

    async def _run(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Idle model: wait for company until the batch is full or no request came for max_wait_s (at
            # most 4 x max_wait_s in all). Answers to a batch come back as a burst of new requests that
            # takes a while to arrive; a fixed wait would cut that burst into small batches.
            first_seen = last_seen = loop.time()
            queued = self._queued_texts
            while not self._closing and not self._full():
                if self._queued_texts != queued:
                    queued, last_seen = self._queued_texts, loop.time()
                left = min(last_seen + self.max_wait_s, first_seen + 4 * self.max_wait_s) - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self._take(loop.time())
            if not batch:
                continue
            await self._compute(batch, loop)

    async def _compute(self, batch: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        groups: dict[tuple[str, ...] | None, list[_Item]] = {}
        for it in batch:
            groups.setdefault(it.labels, []).append(it)
        started = time.perf_counter()
        outcomes = await loop.run_in_executor(self._executor, self._compute_groups, groups)
        if self._metrics is not None:
            self._metrics.batch_seconds.observe(time.perf_counter() - started)
            self._metrics.batch_texts.observe(sum(len(it.texts) for it in batch))
            self._metrics.batch_chars.observe(sum(it.chars for it in batch))
            self._metrics.texts.inc(sum(len(it.texts) for it in batch))
        for it, outcome in outcomes:
            if it.future.done():
                continue
            if isinstance(outcome, BaseException):
                it.future.set_exception(outcome)
            else:
                it.future.set_result(outcome)

    def _compute_groups(
        self, groups: dict[tuple[str, ...] | None, list[_Item]]
    ) -> list[tuple[_Item, list[list[Span]] | BaseException]]:
        """In the model thread: one detect call per label set; an error fails only its own group."""
        out: list[tuple[_Item, list[list[Span]] | BaseException]] = []
        for labels, items in groups.items():
            texts = [t for it in items for t in it.texts]
            try:
                found = self._detect(texts, list(labels) if labels is not None else None)
            except Exception as e:
                out.extend((it, e) for it in items)
                continue
            pos = 0
            for it in items:
                out.append((it, found[pos : pos + len(it.texts)]))
                pos += len(it.texts)
        return out
