"""The pre-logging hook: records are redacted before any handler writes them, and it fails closed."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import guardrail.logging as glog
from guardrail.patterns import PatternDetector
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings

EMAIL, PHONE, CARD, NAME = "ana.silva@example.com", "+1 415 555 0100", "4111 1111 1111 1111", "Ana Silva"
RAW = (EMAIL, PHONE, CARD)


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def patterns() -> PatternDetector:
    return PatternDetector(labels=glog.FALLBACK_LABELS)


def _logger(name: str, redacting: logging.Filter | None) -> tuple[logging.Logger, io.StringIO]:
    """A logger with one stream handler carrying the filter (records of child loggers pass it too)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    if redacting is not None:
        handler.addFilter(redacting)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


def _log_all(logger: logging.Logger) -> None:
    logger.info("please call %s thanks, mail %s or %s", NAME, EMAIL, PHONE)
    logging.getLogger(f"{logger.name}.child").warning("card %s on file", CARD)
    try:
        raise ValueError(f"payment failed for {EMAIL}")
    except ValueError:
        logger.exception("charge of %s failed", CARD)


def test_in_process_redacts_message_args_and_traceback(guard: Guardrail, patterns: PatternDetector) -> None:
    logger, out = _logger("t_inproc", glog.RedactingFilter(glog.in_process(guard), patterns=patterns))
    _log_all(logger)
    text = out.getvalue()
    assert not any(v in text for v in RAW) and NAME not in text
    assert text.count("[EMAIL]") == 2 and text.count("\n") > 4  # the traceback is there, redacted
    assert "[EMAIL]" in text and glog.PATTERNS_ONLY_MARK not in text


def test_through_the_sidecar_then_killed_falls_back_to_patterns(
    tiny_bundle_dir: Path, patterns: PatternDetector
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve", "--bundle", str(tiny_bundle_dir), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GUARDRAIL_WARMUP": "false"},
    )
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 180
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if m := re.search(r"listening on [\d.]+:(\d+)", line):
                port = int(m.group(1))
            elif not line and proc.poll() is not None:
                break
        assert port is not None, "guardrail serve did not start"
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        backend = glog.through_sidecar(f"127.0.0.1:{port}", timeout=5)
        logger, out = _logger("t_sidecar", glog.RedactingFilter(backend, patterns=patterns))
        logger.info("please call %s thanks, mail %s", NAME, EMAIL)
        before = out.getvalue()
        assert NAME not in before and EMAIL not in before and glog.PATTERNS_ONLY_MARK not in before

        proc.send_signal(signal.SIGKILL)  # the sidecar dies mid-test
        proc.wait(timeout=30)
        started = time.monotonic()
        _log_all(logger)
        after = out.getvalue()[len(before) :]
        assert time.monotonic() - started < 5  # no stall: a dead sidecar is found out at once
        assert not any(v in after for v in RAW)  # raw PII never written
        lines = [line for line in after.splitlines() if line.startswith(("INFO", "WARNING", "ERROR"))]
        assert len(lines) == 3 and all(glog.PATTERNS_ONLY_MARK in line for line in lines)
        assert "[EMAIL]" in after and "[PHONE]" in after and "[CREDIT_CARD]" in after
    finally:
        if proc.poll() is None:
            proc.kill()


def test_slow_sidecar_past_the_deadline_and_drop_mode(guard: Guardrail, patterns: PatternDetector) -> None:
    with SidecarThread(guard, ServeSettings(port=0, max_wait_ms=1500)) as sc:  # each call waits 1.5 s
        target = f"127.0.0.1:{sc.port}"
        slow = glog.RedactingFilter(glog.through_sidecar(target, timeout=0.1), patterns=patterns)
        logger, out = _logger("t_slow", slow)
        logger.info("mail %s", EMAIL)
        assert out.getvalue() == f"INFO {glog.PATTERNS_ONLY_MARK}mail [EMAIL]\n"
        dropping = glog.RedactingFilter(glog.through_sidecar(target, timeout=0.1), on_failure="drop")
        logger, out = _logger("t_drop", dropping)
        logger.info("mail %s", EMAIL)
        assert out.getvalue() == f"INFO {glog.WITHHELD}\n"


def test_record_marked_and_redacted_once(guard: Guardrail, patterns: PatternDetector) -> None:
    calls = []
    backend = glog.in_process(guard)

    def counting(texts: list[str]) -> list[str]:
        calls.append(len(texts))
        return backend(texts)

    redacting = glog.RedactingFilter(counting, patterns=patterns)
    logger, out = _logger("t_once", redacting)
    second = io.StringIO()
    extra = logging.StreamHandler(second)
    extra.addFilter(redacting)
    logger.addHandler(extra)
    logger.addFilter(redacting)
    records: list[logging.LogRecord] = []
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
    logger.info("mail %s", EMAIL)
    assert calls == [1]  # one redaction however many handlers and filters the record meets
    assert records[0].guardrail == "model" and records[0].args is None
    assert EMAIL not in out.getvalue() + second.getvalue()


def test_install_on_the_root_logger(guard: Guardrail) -> None:
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        redacting = glog.install(guard=guard)
        logging.getLogger("some.library").info("mail %s", EMAIL)  # propagated through the root's handlers
        root.info("card %s", CARD)
        assert EMAIL not in out.getvalue() and CARD not in out.getvalue()
        assert "[EMAIL]" in out.getvalue()
    finally:
        root.removeHandler(handler)
        root.removeFilter(redacting)
        for h in root.handlers:
            h.removeFilter(redacting)
        root.setLevel(level)


def test_structlog_processor(guard: Guardrail, patterns: PatternDetector) -> None:
    import structlog

    out = io.StringIO()
    redacting = glog.RedactingFilter(glog.in_process(guard), patterns=patterns)
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.format_exc_info,
            glog.structlog_processor(redacting),
            structlog.processors.JSONRenderer(),
        ],
    )
    try:
        raise RuntimeError(f"cannot reach {PHONE}")
    except RuntimeError:
        logger.error(f"mail {EMAIL}", user={"card": CARD, "tags": [EMAIL]}, exc_info=True)
    event = json.loads(out.getvalue())
    assert not any(v in out.getvalue() for v in RAW)
    assert "[EMAIL]" in event["event"] and event["user"]["card"] == "[CREDIT_CARD]"
    assert event["exception"].count("\n") >= 2 and "guardrail" not in event  # the traceback, redacted

    down = glog.RedactingFilter(glog.through_sidecar("127.0.0.1:1", timeout=0.2), patterns=patterns)
    process = glog.structlog_processor(down)
    event = process(None, "info", {"event": f"mail {EMAIL}", "n": 3})
    assert event == {"event": f"{glog.PATTERNS_ONLY_MARK}mail [EMAIL]", "n": 3, "guardrail": "patterns"}


def test_broken_fallback_withholds_everything(guard: Guardrail) -> None:
    def down(texts: list[str]) -> list[str]:
        raise ConnectionError("sidecar down")

    redacting = glog.RedactingFilter(down, patterns=PatternDetector(labels=["EMAIL"]))
    redacting._fallback = lambda texts: 1 / 0  # type: ignore[assignment]  # the patterns fail as well
    logger, out = _logger("t_broken", redacting)
    logger.info("mail %s", EMAIL)
    assert out.getvalue() == f"INFO {glog.WITHHELD}\n"


class _Customer:
    def __str__(self) -> str:
        return f"Customer({EMAIL})"


def test_extra_fields_are_redacted_keeping_their_structure(
    guard: Guardrail, patterns: PatternDetector
) -> None:
    redacting = glog.RedactingFilter(glog.in_process(guard), patterns=patterns)
    logger, out = _logger("t_extra", redacting)
    seen: list[logging.LogRecord] = []
    logger.handlers[0].addFilter(lambda r: seen.append(r) or True)
    extra = {"user": EMAIL, "ctx": {"phone": PHONE, "n": 3, "tags": [CARD, "ok"]}, "who": _Customer()}
    logger.info("order placed", extra=extra)
    (r,) = seen
    assert r.user == "[EMAIL]" and r.ctx["n"] == 3 and r.ctx["tags"][1] == "ok"
    assert PHONE not in r.ctx["phone"] and CARD not in r.ctx["tags"][0]
    assert isinstance(r.who, str) and EMAIL not in r.who
    assert r.guardrail == "model" and out.getvalue().startswith("INFO ")
