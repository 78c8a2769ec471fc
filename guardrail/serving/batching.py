"""Dynamic micro-batching: concurrent requests gathered into one forward pass of one model.

Requests wait in a bounded FIFO queue. A single worker task takes from its head as many requests as fit
the batch budget (texts and characters) and hands them to the model, which runs in one dedicated thread
so the event loop keeps answering. While the model is idle, a batch waits for company as long as requests
keep coming within ``max_wait_s`` of each other (at most 4 x ``max_wait_s``); while it is busy, requests
pile up and the next batch is simply what arrived meanwhile.

Under overload the model's time goes to callers that can still use it. The batcher learns the model's
speed (seconds per character) from the batches it runs and:

* refuses a request at once (:class:`QueueFull`, RESOURCE_EXHAUSTED) when the work ahead of it and a
  full batch would not end before its deadline, rather than letting it time out late (an idle model
  takes anything: an estimate from a slow moment must not lock short deadlines out);
* drops, unread, a request whose caller gave up (cancellation) or whose deadline has passed or would
  pass before the model could finish it (:class:`Expired`), and ends a batch before a request that
  would make it finish after the earliest deadline in it;
* stops a running batch whose callers have all gone at the model's next checkpoint (each forward pass
  and each block of the torch backbone, each ONNX Runtime call and each text of the pattern stage calls
  :func:`checkpoint`; an ONNX Runtime call is also terminated mid-run, see :class:`StoppableSession`):
  one abandoned large request does not hold the model for everyone else.

The model runs in one daemon thread: a computation still running when the server stops does not keep
the process alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail.serving import tracing
from guardrail.serving.metrics import ServingMetrics
from guardrail.spans import Span

DetectFn = Callable[..., list[list[Span]]]
"""``(texts, labels) -> spans per text``, and ``(texts, labels, True)`` for spans with their SAE features
(``explain``): the model, called in the worker thread."""
_Group = tuple[tuple[str, ...] | None, bool]
"""What one detect call of a batch shares: the label set and whether it explains."""


class QueueFull(Exception):
    """The queue holds as many texts as it may; the caller should back off (RESOURCE_EXHAUSTED)."""


class Closed(Exception):
    """The batcher is shutting down and takes no new work (UNAVAILABLE)."""


class Expired(Exception):
    """The request's deadline passed, or would pass before the model could finish it; it was dropped
    unread (DEADLINE_EXCEEDED)."""


class Abandoned(Exception):
    """Every caller of the running batch has gone: the model stopped at a checkpoint."""


class Stop:
    """The stop signal of a running batch: set (from the event loop) once every caller of it has gone.

    The one place a stop is told: :func:`checkpoint` reads it between units of work, and work that cannot
    look (a native call such as ONNX Runtime's ``run``) registers a callback with :meth:`on_set` that
    tells the native side to stop (see :class:`StoppableSession`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def on_set(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` (in the thread that sets the stop, or now if it is set) when the stop is set;
        returns a function that unregisters it."""
        with self._lock:
            if not self._set:
                self._callbacks.append(fn)

                def forget() -> None:
                    with self._lock:
                        if fn in self._callbacks:
                            self._callbacks.remove(fn)

                return forget
        fn()
        return lambda: None


_running = threading.local()


def current_stop() -> Stop | None:
    """The stop signal of the batch computing in this thread; None outside a batch of the batcher's
    model thread."""
    return getattr(_running, "stop", None)


def checkpoint() -> None:
    """Raise :class:`Abandoned` when every caller of the batch computing in this thread has gone.

    The server calls it from the model between units of work (forward pre-hooks on the backbone and its
    blocks, each ONNX Runtime call, each text of the pattern stage); outside a batch of the batcher's
    model thread it does nothing.
    """
    stop = current_stop()
    if stop is not None and stop.is_set():
        raise Abandoned("every caller of this batch has gone")


class StoppableSession:
    """An ONNX Runtime ``InferenceSession`` whose ``run`` stops when the batch it computes for is
    abandoned: a :func:`checkpoint` before the call (between window batches), and during it the run's
    ``RunOptions.terminate`` is set by the :class:`Stop` (ONNX Runtime checks it between graph nodes).
    A run so terminated raises :class:`Abandoned`, as the torch checkpoints do. Outside a batch it runs
    the session as it is. Every other attribute is the session's."""

    def __init__(self, session: Any):
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        stop = current_stop()
        if stop is None:
            return self.session.run(output_names, input_feed, run_options)
        checkpoint()
        if run_options is None:
            import onnxruntime as ort

            run_options = ort.RunOptions()

        def terminate(opts: Any = run_options) -> None:
            opts.terminate = True  # thread-safe in ONNX Runtime: read by the running call

        forget = stop.on_set(terminate)
        try:
            return self.session.run(output_names, input_feed, run_options)
        except Exception:
            if stop.is_set():  # terminated (its message says so, and holds no input)
                raise Abandoned("every caller of this batch has gone") from None
            raise
        finally:
            forget()


class _Rate:
    """Model seconds of a batch of ``c`` characters, ``a + b * c``: a least-squares fit to the batches
    run so far, recent ones weighing most (unknown before the first). While the batches seen had nearly
    one size, all of their time is taken as per character (``a = 0``), the safe side for larger ones.
    Estimates carry a margin: ``margin`` plus twice the recent share by which batches overran their
    estimate (a machine shared with other work is slower at times, and a late batch is wasted)."""

    def __init__(self, decay: float = 0.9, margin: float = 1.1):
        self.decay = decay
        self.margin = margin
        self._sums = [0.0] * 5  # weight, x, y, x*x, x*y (x: characters, y: seconds)
        self.overrun = 0.0
        """Recent share by which batches took longer than fitted (an exponential average)."""
        self.fixed = 0.0
        """``a``: seconds per batch."""
        self.per_char: float | None = None
        """``b``: seconds per character (None: nothing measured yet)."""

    def observe(self, chars: int, seconds: float) -> None:
        if chars <= 0 or seconds <= 0:
            return
        if self.per_char is not None:
            expected = self.fixed + self.per_char * chars
            overrun = max(0.0, seconds / expected - 1.0) if expected > 0 else 0.0
            self.overrun = self.decay * self.overrun + (1 - self.decay) * min(overrun, 1.0)
        for i, v in enumerate((1.0, chars, seconds, chars * chars, chars * seconds)):
            self._sums[i] = self.decay * self._sums[i] + v
        w, x, y, xx, xy = self._sums
        spread = w * xx - x * x
        if spread <= 0.01 * x * x:  # one size: no way to tell fixed from per-character time
            self.fixed, self.per_char = 0.0, y / x
            return
        b = max(0.0, (w * xy - x * y) / spread)
        a = (y - b * x) / w
        if a < 0:
            a, b = 0.0, y / x
        self.fixed, self.per_char = a, b

    def seconds(self, chars: float, batches: int = 1) -> float:
        """Expected model time of ``chars`` characters in ``batches`` batches (with a margin); 0 while
        unknown or for no characters."""
        if self.per_char is None or chars <= 0:
            return 0.0
        return (self.margin + 2 * self.overrun) * (batches * self.fixed + chars * self.per_char)


class _ModelThread:
    """One daemon thread running the model's calls in turn (an executor's threads are joined at exit,
    so a long computation would hold up the process after shutdown)."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], concurrent.futures.Future] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        """End the thread after the calls submitted so far (without waiting for it)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the caller, like an executor would
                future.set_exception(e)


@dataclass(eq=False)
class _Item:
    texts: list[str]
    labels: tuple[str, ...] | None
    deadline: float | None
    future: asyncio.Future[list[list[Span]]]
    explain: bool = False
    chars: int = field(init=False)
    queued_at: float = field(init=False)
    ran: tuple[float, float, int] | None = None
    """Once its batch ran: seconds it queued, the batch's model seconds and texts (for tracing)."""

    def __post_init__(self) -> None:
        self.chars = sum(len(t) for t in self.texts)
        self.queued_at = time.perf_counter()


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
        self._queued_chars = 0
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self.rate = _Rate()
        """The model's speed as learnt so far (admission and batch sizing read it)."""
        self._busy_until = 0.0  # loop time the running batch is expected to end at
        self._running: list[Stop] = []  # stop events of the running batch's groups
        self._text_chars = 0.0  # characters per text, an exponential average over requests
        # One thread: the model is one instance, and torch already spreads one call over the cores.
        self._model = _ModelThread("guardrail-model")

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model now."""
        return self._queued_texts

    def start(self) -> None:
        """Start the worker task on the running loop."""
        self._arrived = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="guardrail-batcher")

    async def detect(
        self,
        texts: Sequence[str],
        labels: Sequence[str] | None = None,
        *,
        timeout: float | None = None,
        explain: bool = False,
    ) -> list[list[Span]]:
        """Spans per text, computed in some batch; raises QueueFull, Closed or Expired.

        ``timeout`` (seconds) is the caller's remaining deadline: a request that the work queued ahead of
        it would keep past it is refused at once (QueueFull); past it the request is dropped from the
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
        now = loop.time()
        deadline = None if timeout is None else now + timeout
        labels_key = tuple(labels) if labels is not None else None
        item = _Item(items, labels_key, deadline, loop.create_future(), explain)
        self._text_chars += 0.1 * (item.chars / len(items) - self._text_chars)
        # An idle model takes anything (its caller's deadline bounds the cost: the model stops once it
        # has gone): an estimate learnt in a slow moment would otherwise refuse short deadlines forever.
        idle = not self._queue and not self._running
        if timeout is not None and self.rate.per_char is not None and not idle:
            # The work ahead, then this request's batch: a full one behind a long queue, so that admitted
            # requests reach the model with time for a full batch left (batches cut short by deadlines
            # would run the model below its speed, and cut the next ones shorter still).
            full = max(1.0, min(self.max_batch_chars, self.max_batch_texts * self._text_chars))
            ahead = self._queued_chars
            own = max(item.chars, full) if ahead >= full else item.chars
            if self.rate.seconds(item.chars) > timeout:  # too large for its deadline, even alone
                self._count_dropped("expired", len(items))
                raise Expired(
                    f"the model needs about {self.rate.seconds(item.chars):.1f} s for this request; its "
                    f"deadline is in {timeout:.1f} s"
                )
            # a running batch whose callers have all gone stops at its next checkpoint
            busy = 0.0 if all(e.is_set() for e in self._running) else max(0.0, self._busy_until - now)
            wait = busy + self.rate.seconds(ahead, math.ceil(ahead / full)) + self.rate.seconds(own)
            if wait > timeout:
                self._count_dropped("refused", len(items))
                raise QueueFull(
                    f"the model has about {wait:.1f} s of work for this request and the queue ahead of it; "
                    f"its deadline is in {timeout:.1f} s"
                )
        self._queue.append(item)
        self._set_queued(self._queued_texts + len(items), self._queued_chars + item.chars)
        self._arrived.set()
        try:
            found = await asyncio.wait_for(asyncio.shield(item.future), timeout)
            if item.ran is not None and (stats := tracing.current()) is not None:
                stats.add_batch(*item.ran)
            return found
        except TimeoutError:
            raise Expired("deadline exceeded while waiting for the model") from None
        finally:
            if not item.future.done():
                item.future.cancel()  # still queued: the worker skips it; running: the model may stop

    async def close(self, wait_s: float | None = None) -> bool:
        """Take no new work and stop the worker and its thread; returns whether the model is idle.

        ``wait_s`` None: finish what is queued. Else what is queued is failed (:class:`Closed`), the
        running batch is stopped at the model's next checkpoint, and the worker is waited for at most
        ``wait_s`` seconds (a model call that reaches no checkpoint by then is left to its daemon thread,
        and False returned).
        """
        self._closing = True
        if wait_s is not None:
            while self._queue:
                it = self._queue.popleft()
                if not it.future.done():
                    it.future.set_exception(Closed("the server stopped before this request's turn"))
            self._set_queued(0, 0)
        if self._arrived is not None:
            self._arrived.set()
        if self._worker is not None:
            if wait_s is None:
                await self._worker
            else:
                done, _ = await asyncio.wait({self._worker}, timeout=wait_s)
                if not done:
                    self._worker.cancel()
                    self._model.shutdown()
                    return False
        self._model.shutdown()
        return True

    def _set_queued(self, texts: int, chars: int) -> None:
        self._queued_texts, self._queued_chars = texts, chars
        if self._metrics is not None:
            self._metrics.queue_texts.set(texts)

    def _count_dropped(self, reason: str, texts: int) -> None:
        if self._metrics is not None and texts:
            self._metrics.dropped_texts.labels(reason=reason).inc(texts)

    def _full(self) -> bool:
        texts = chars = 0
        for it in self._queue:
            texts += len(it.texts)
            chars += it.chars
            if texts >= self.max_batch_texts or chars >= self.max_batch_chars:
                return True
        return False

    def _take(self, now: float) -> list[_Item]:
        """Pop the next batch off the queue's head, dropping abandoned requests and those that cannot end
        before their deadline; the batch ends before a request that would make it end past the earliest
        deadline in it."""
        batch: list[_Item] = []
        texts = chars = 0
        earliest = float("inf")
        while self._queue:
            it = self._queue[0]
            if batch and (
                texts + len(it.texts) > self.max_batch_texts
                or chars + it.chars > self.max_batch_chars
                or now + self.rate.seconds(chars + it.chars) > min(earliest, it.deadline or earliest)
            ):
                break
            self._queue.popleft()
            self._set_queued(self._queued_texts - len(it.texts), self._queued_chars - it.chars)
            if it.future.done():
                self._count_dropped("abandoned", len(it.texts))
                continue  # the caller gave up already
            # by the estimate only when others could use the model instead (see detect: an idle model
            # takes anything)
            if it.deadline is not None and (
                now >= it.deadline
                or ((batch or self._queue) and now + self.rate.seconds(it.chars) >= it.deadline)
            ):
                it.future.set_exception(
                    Expired("deadline exceeded, or too close for the model to finish the request in time")
                )
                self._count_dropped("expired", len(it.texts))
                continue
            batch.append(it)
            texts += len(it.texts)
            chars += it.chars
            if it.deadline is not None:
                earliest = min(earliest, it.deadline)
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
        groups: dict[_Group, list[_Item]] = {}
        for it in batch:
            groups.setdefault((it.labels, it.explain), []).append(it)
        # a group whose callers have all gone is told to stop (see checkpoint)
        stops = {group: Stop() for group in groups}

        def gone(_future: asyncio.Future) -> None:
            for group, items in groups.items():
                if all(it.future.done() for it in items):
                    stops[group].set()

        for it in batch:
            it.future.add_done_callback(gone)
        chars = sum(it.chars for it in batch)
        started = time.perf_counter()
        self._busy_until = loop.time() + self.rate.seconds(chars)
        self._running = list(stops.values())
        try:
            outcomes = await asyncio.wrap_future(self._model.submit(self._compute_groups, groups, stops))
        finally:
            self._busy_until = 0.0
            self._running = []
            for it in batch:
                it.future.remove_done_callback(gone)
        seconds = time.perf_counter() - started
        texts = sum(len(it.texts) for it in batch)
        for it in batch:
            it.ran = (started - it.queued_at, seconds, texts)
        stopped = [it for it, outcome in outcomes if isinstance(outcome, Abandoned)]
        ran = [it for it, outcome in outcomes if not isinstance(outcome, Abandoned)]
        if not stopped:
            self.rate.observe(chars, seconds)
        if self._metrics is not None:
            self._metrics.batch_seconds.observe(seconds)
            self._metrics.batch_texts.observe(texts)
            self._metrics.batch_chars.observe(chars)
            self._metrics.texts.inc(sum(len(it.texts) for it in ran))
            self._count_dropped("stopped", sum(len(it.texts) for it in stopped))
            late = sum(len(it.texts) for it in ran if it.future.done())
            if late:
                self._metrics.late_texts.inc(late)
        for it, outcome in outcomes:
            if it.future.done():
                continue
            if isinstance(outcome, BaseException):
                it.future.set_exception(outcome)
            else:
                it.future.set_result(outcome)

    def _compute_groups(
        self,
        groups: dict[_Group, list[_Item]],
        stops: dict[_Group, Stop],
    ) -> list[tuple[_Item, list[list[Span]] | BaseException]]:
        """In the model thread: one detect call per label set (and explain); an error fails only its
        own group."""
        out: list[tuple[_Item, list[list[Span]] | BaseException]] = []
        for group, items in groups.items():
            if stops[group].is_set():
                out.extend((it, Abandoned("every caller of this batch has gone")) for it in items)
                continue
            labels, explain = group
            texts = [t for it in items for t in it.texts]
            _running.stop = stops[group]
            try:
                chosen = list(labels) if labels is not None else None
                found = self._detect(texts, chosen, True) if explain else self._detect(texts, chosen)
            except Exception as e:
                out.extend((it, e) for it in items)
                continue
            finally:
                _running.stop = None
            pos = 0
            for it in items:
                out.append((it, found[pos : pos + len(it.texts)]))
                pos += len(it.texts)
        return out
