"""The micro-batcher: gathering, budgets, routing of results, queue bound, deadlines, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from guardrail.serving.batching import Batcher, Closed, Expired, QueueFull, checkpoint
from guardrail.spans import Span


class Model:
    """A detector that records each call (batch) it gets; a text's span covers its first word."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[tuple[list[str], list[str] | None]] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, texts: list[str], labels: list[str] | None) -> list[list[Span]]:
        self.calls.append((list(texts), labels))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if "boom" in texts:
            raise ValueError("model failure")
        return [[Span(0, len(t.split(" ")[0]), (labels or ["PERSON"])[0])] if t else [] for t in texts]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_calls_share_batches_and_get_their_own_results() -> None:
    model = Model(delay=0.02)

    async def go():
        b = Batcher(model, max_batch_texts=8, max_wait_s=0.01)
        b.start()
        texts = [f"w{i} rest" for i in range(40)]
        out = await asyncio.gather(*(b.detect([t]) for t in texts))
        await b.close()
        return texts, out

    texts, out = run(go())
    assert out == [[[Span(0, len(f"w{i}"), "PERSON")]] for i in range(len(texts))]
    sizes = [len(c[0]) for c in model.calls]
    assert sum(sizes) == 40 and max(sizes) <= 8 and len(sizes) < 40
    assert model.threads == {"guardrail-model"}  # one model thread, never the event loop


def test_batch_size_one_and_char_budget() -> None:
    model = Model()

    async def go(**kw):
        b = Batcher(model, max_wait_s=0.01, **kw)
        b.start()
        await asyncio.gather(*(b.detect([f"text {i}"]) for i in range(10)), b.detect(["x" * 500, "y"]))
        await b.close()

    run(go(max_batch_texts=1))
    assert [len(c[0]) for c in model.calls if len(c[0]) == 1].__len__() == 10
    assert all(len(texts) == 1 or texts == ["x" * 500, "y"] for texts, _ in model.calls)  # big one alone
    model.calls.clear()
    run(go(max_batch_chars=20))
    assert all(sum(map(len, texts)) <= 20 or len(texts) == 2 for texts, _ in model.calls)


def test_label_sets_are_separate_calls_and_errors_stay_in_their_group() -> None:
    model = Model(delay=0.05)

    async def go():
        b = Batcher(model, max_wait_s=0.02)
        b.start()
        res = await asyncio.gather(
            b.detect(["a b"], ["EMAIL"]), b.detect(["c d"]), b.detect(["boom"]), return_exceptions=True
        )
        await b.close()
        return res

    email, default, boom = run(go())
    assert email == [[Span(0, 1, "EMAIL")]]
    assert isinstance(default, ValueError) and isinstance(boom, ValueError)  # same group as "boom"
    assert sorted(str(labels) for _, labels in model.calls) == ["None", "['EMAIL']"]


def test_queue_bound_deadline_and_close() -> None:
    model = Model(delay=0.3)

    async def go():
        b = Batcher(model, max_batch_texts=1, queue_texts=2, max_wait_s=0.0)
        b.start()
        first = asyncio.ensure_future(b.detect(["running"]))
        await asyncio.sleep(0.05)  # the model is busy with it now
        queued = asyncio.ensure_future(b.detect(["queued"]))
        with pytest.raises(Expired):
            await b.detect(["late"], timeout=0.05)
        with pytest.raises(QueueFull):
            await b.detect(["a", "b", "c"])
        await b.close()  # finishes what is queued
        with pytest.raises(Closed):
            await b.detect(["after"])
        return await first, await queued

    first, queued = run(go())
    assert first and queued
    seen = [t for texts, _ in model.calls for t in texts]
    assert "late" not in seen and seen == ["running", "queued"]  # the expired request never ran


def test_empty_request_needs_no_model() -> None:
    model = Model()

    async def go():
        b = Batcher(model)
        b.start()
        out = await b.detect([])
        await b.close()
        return out

    assert run(go()) == [] and model.calls == []


class Steady(Model):
    """A model whose time is ``per_text`` seconds per text, spent in steps that reach a checkpoint."""

    def __init__(self, per_text: float, step: float = 0.01):
        super().__init__()
        self.per_text, self.step = per_text, step
        self.stopped = 0

    def __call__(self, texts: list[str], labels: list[str] | None) -> list[list[Span]]:
        self.calls.append((list(texts), labels))
        end = time.perf_counter() + self.per_text * len(texts)
        while time.perf_counter() < end:
            try:
                checkpoint()
            except Exception:
                self.stopped += 1
                raise
            time.sleep(self.step)
        return [[] for _ in texts]


def test_overload_refuses_early_and_reads_nothing_for_callers_that_left() -> None:
    """60 callers at once with 0.6 s deadlines, batches of 8 texts taking 0.4 s: those the model cannot
    serve in time are refused at once (QueueFull), and the texts the model reads are for callers that
    get their answer (no batch runs past its callers' deadlines)."""
    model = Steady(per_text=0.05)

    async def go():
        b = Batcher(model, max_batch_texts=8, max_wait_s=0.001)
        b.start()
        await b.detect(["warm"], timeout=5)  # the batcher learns the model's speed
        model.calls.clear()
        loop = asyncio.get_running_loop()

        async def call(i: int):
            start = loop.time()
            try:
                await b.detect([f"t{i}"], timeout=0.6)
                return "ok", loop.time() - start
            except (QueueFull, Expired) as e:
                return type(e).__name__, loop.time() - start

        out = await asyncio.gather(*(call(i) for i in range(60)))
        await b.close()
        return out

    out = run(go())
    ok = {f"t{i}" for i, (what, _) in enumerate(out) if what == "ok"}
    read = {t for texts, _ in model.calls for t in texts}
    # at most a text or two of a batch that overran its estimate on a busy machine; the old batcher ran
    # a whole second batch (8 texts) for callers whose deadlines passed during it
    assert ok <= read and len(read - ok) <= 2, "the model read texts whose callers had gone"
    assert len(ok) >= 6
    refused = [took for what, took in out if what == "QueueFull"]
    assert len(refused) >= 30 and max(refused) < 0.1  # refused at once, not timed out late


def test_a_batch_whose_callers_left_stops_at_the_next_checkpoint() -> None:
    """A 20 s request abandoned after 0.2 s stops within a step; the next caller is served at once."""
    model = Steady(per_text=20.0)

    async def go():
        b = Batcher(model, max_wait_s=0.0)
        b.start()
        loop = asyncio.get_running_loop()
        with pytest.raises(Expired):
            await b.detect(["huge"], timeout=0.2)
        model.per_text = 0.01
        start = loop.time()
        await b.detect(["small"], timeout=5)
        took = loop.time() - start
        await b.close()
        return took

    assert run(go()) < 1.0
    assert model.stopped == 1


def test_close_with_a_wait_stops_running_and_queued_work() -> None:
    model = Steady(per_text=30.0)

    async def go():
        b = Batcher(model, max_batch_texts=1, max_wait_s=0.0)
        b.start()
        running = asyncio.ensure_future(b.detect(["long"]))
        queued = asyncio.ensure_future(b.detect(["next"]))
        await asyncio.sleep(0.1)
        start = asyncio.get_running_loop().time()
        running.cancel()  # what the server's stop does to its calls after the grace period
        await b.close(wait_s=2.0)
        with pytest.raises(Closed):
            await queued
        return asyncio.get_running_loop().time() - start

    assert run(go()) < 1.0
    assert [t for texts, _ in model.calls for t in texts] == ["long"]


def test_the_model_speed_is_learnt_as_a_fixed_and_a_per_character_time() -> None:
    from guardrail.serving.batching import _Rate

    rate = _Rate(margin=1.0)
    assert rate.seconds(1000) == 0.0  # unknown: no refusals before a batch has run
    rate.observe(100, 0.3)
    assert rate.seconds(200) == pytest.approx(0.6)  # one size: all of it per character (the safe side)
    for chars in (100, 800, 300, 1600, 50):
        rate.observe(chars, 0.2 + 0.001 * chars)
    assert rate.fixed == pytest.approx(0.2, abs=0.05) and rate.per_char == pytest.approx(0.001, rel=0.1)
    assert rate.seconds(1000, batches=2) == pytest.approx(2 * rate.fixed + 1000 * rate.per_char)


def test_a_request_too_large_for_its_deadline_fails_at_once_and_an_abandoned_batch_blocks_no_one() -> None:
    model = Steady(per_text=0.05)

    async def go():
        b = Batcher(model, max_wait_s=0.0)
        b.start()
        loop = asyncio.get_running_loop()
        await asyncio.gather(b.detect(["a"], timeout=5), b.detect(["b", "c", "d"], timeout=5))  # learnt
        running = asyncio.ensure_future(b.detect(["r"], timeout=5))
        await asyncio.sleep(0.01)
        start = loop.time()
        with pytest.raises(Expired, match="needs about"):  # DEADLINE_EXCEEDED now, not in 0.5 s
            await b.detect(["x" * 50] * 40, timeout=0.5)
        assert loop.time() - start < 0.05
        await running
        big = asyncio.ensure_future(b.detect(["big"] * 200, timeout=60))  # ~10 s of work, admitted
        await asyncio.sleep(0.1)
        big.cancel()  # its caller leaves: the model stops at its next checkpoint
        await asyncio.sleep(0.01)
        start = loop.time()
        await b.detect(["small"], timeout=1.0)  # not refused for the abandoned batch's estimate
        took = loop.time() - start
        await b.close()
        return took

    assert run(go()) < 0.5


def test_an_estimate_from_a_slow_moment_does_not_lock_out_short_deadlines() -> None:
    """The model was slow (0.5 s a text) and is fast again: an idle batcher still takes a call whose
    deadline the old estimate says it cannot meet, and learns the new speed from it."""
    model = Steady(per_text=0.5)

    async def go():
        b = Batcher(model, max_wait_s=0.0)
        b.start()
        await b.detect(["slow"], timeout=5)
        model.per_text = 0.01
        out = [await b.detect([f"fast {i}"], timeout=0.2) for i in range(3)]
        await b.close()
        return out

    assert run(go()) == [[[]]] * 3


def _slow_onnx_session(seconds_per_node: float = 0.0):
    """An ONNX Runtime session of a chain of 400 MatMuls (~0.5 s a run on one core here)."""
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    d = 256
    nodes = [helper.make_node("MatMul", [f"h{i}" if i else "x", "w"], [f"h{i + 1}"]) for i in range(400)]
    nodes.append(helper.make_node("Identity", ["h400"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, d])],
        [numpy_helper.from_array(np.eye(d, dtype=np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session, {"x": np.ones((2048, d), dtype=np.float32)}


class OnnxModel(Model):
    """A detector that runs an ONNX Runtime session ``runs`` times per batch (window batches), through
    a :class:`StoppableSession` as the sidecar hooks it; records each run's end (``done``/``failed``)."""

    def __init__(self, session, feed, runs: int):
        from guardrail.serving.batching import StoppableSession

        super().__init__()
        self.session, self.feed, self.runs = StoppableSession(session), feed, runs
        self.started = 0
        self.errors: list[BaseException] = []

    def __call__(self, texts: list[str], labels: list[str] | None) -> list[list[Span]]:
        self.calls.append((list(texts), labels))
        try:
            for _ in range(self.runs):
                self.started += 1
                self.session.run(None, self.feed)
        except BaseException as e:
            self.errors.append(e)
            raise
        return [[] for _ in texts]


def test_an_onnx_runtime_call_is_terminated_when_its_callers_leave() -> None:
    """ONNX Runtime runs a call to its end unless told: an abandoned batch's running call is terminated
    (RunOptions.terminate, set by the batch's stop) and ends as a stop, not an error; the session serves
    the next call as before."""
    from guardrail.serving.batching import Abandoned

    session, feed = _slow_onnx_session()
    started = time.perf_counter()
    session.run(None, feed)
    one_run = time.perf_counter() - started
    model = OnnxModel(session, feed, runs=20)

    async def go():
        b = Batcher(model, max_wait_s=0.0)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(Expired):
            await b.detect(["huge"], timeout=0.2 * one_run)
        model.runs = 1
        await b.detect(["small"], timeout=30)
        took = loop.time() - t0
        await b.close()
        return took

    took = run(go())
    # the abandoned call stopped inside its first run (20 runs were asked for), then one whole run
    assert model.started == 2
    assert len(model.errors) == 1 and isinstance(model.errors[0], Abandoned)
    assert took < 2.5 * one_run + 0.5, f"{took:.2f} s for a 20-run call abandoned early and one run"


def test_an_onnx_runtime_batch_stops_between_runs_and_sets_terminate() -> None:
    """Between window batches the checkpoint stops an abandoned batch before its next run; a run that
    starts while the stop is set (or is running when it is set) gets RunOptions.terminate."""
    from guardrail.serving.batching import Abandoned, Stop, StoppableSession, _running

    seen = []

    class Fake:
        def run(self, outputs, feed, opts=None):
            seen.append(opts)
            stop.set()  # every caller leaves during this run
            return [0]

        def get_providers(self):
            return ["CPUExecutionProvider"]

    pytest.importorskip("onnxruntime")
    wrapped = StoppableSession(Fake())
    assert wrapped.get_providers() == ["CPUExecutionProvider"]
    stop = Stop()
    assert wrapped.run(None, {}) == [0] and seen == [None]  # outside a batch: the session as it is
    stop = Stop()
    _running.stop = stop
    try:
        assert wrapped.run(None, {}) == [0]
        assert seen[-1] is not None and seen[-1].terminate  # set from the stop during the run
        with pytest.raises(Abandoned):
            wrapped.run(None, {})  # the next window batch does not start
        assert len(seen) == 2
    finally:
        _running.stop = None


def test_a_stop_calls_back_once_and_forgets_what_is_unregistered() -> None:
    from guardrail.serving.batching import Stop

    stop, calls = Stop(), []
    forget = stop.on_set(lambda: calls.append("a"))
    stop.on_set(lambda: calls.append("b"))
    forget()
    stop.set()
    stop.set()
    assert calls == ["b"] and stop.is_set()
    stop.on_set(lambda: calls.append("late"))  # set already: called at once
    assert calls == ["b", "late"]


def test_checkpoint_hooks_wrap_the_onnx_int8_backbone_and_the_graph_sessions_and_undo() -> None:
    """The sidecar's hooks reach both ONNX Runtime paths: the ``onnx-int8`` backbone's session and the
    exported graph's; removing the hooks gives each its own session back."""
    from types import SimpleNamespace

    from guardrail.serving.batching import StoppableSession
    from guardrail.serving.server import checkpoint_hooks

    a, b = object(), object()
    guard = SimpleNamespace(backbone=SimpleNamespace(session=a, model=None), graph=SimpleNamespace(session=b))
    hooks = checkpoint_hooks(guard)  # type: ignore[arg-type]
    assert isinstance(guard.backbone.session, StoppableSession) and guard.backbone.session.session is a
    assert isinstance(guard.graph.session, StoppableSession) and guard.graph.session.session is b
    assert len(checkpoint_hooks(guard)) == 0  # type: ignore[arg-type]  # not wrapped twice
    for h in hooks:
        h.remove()
    assert guard.backbone.session is a and guard.graph.session is b
