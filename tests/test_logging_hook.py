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
        glog.install(guard=guard)
        logging.getLogger("some.library").info("mail %s", EMAIL)  # propagated through the root's handlers
        root.info("card %s", CARD)
        assert EMAIL not in out.getvalue() and CARD not in out.getvalue()
        assert "[EMAIL]" in out.getvalue()
    finally:
        glog.uninstall()
        root.removeHandler(handler)
        root.setLevel(level)
    assert not any(isinstance(f, glog.RedactingFilter) for h in [root, *root.handlers] for f in h.filters)


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


CONFIGURATIONS = """
import io, json, logging, sys
import structlog
import guardrail.logging as glog

EMAIL, CARD = sys.argv[1], sys.argv[2]
glog.install(target="127.0.0.1:1", timeout=0.2)  # the sidecar is down: the pattern fallback answers
out = {}

# no handler anywhere: Python's last-resort handler writes to stderr
logging.getLogger("nohandler").warning("mail %s card %s", EMAIL, CARD)

# a logger of its own that does not propagate to the root
own = io.StringIO()
lib = logging.getLogger("own")
lib.propagate = False
handler = logging.StreamHandler(own)
handler.setFormatter(logging.Formatter("%(message)s user=%(user)s"))
lib.addHandler(handler)
lib.warning("mail %s", EMAIL, extra={"user": {"email": EMAIL, "card": [CARD]}})
out["propagate=False"] = own.getvalue()

# the root's handlers replaced after install()
forced = io.StringIO()
logging.basicConfig(force=True, stream=forced, level=logging.INFO, format="%(levelname)s %(message)s")
logging.getLogger("app").info("card %s for %s", CARD, EMAIL)
try:
    raise ValueError(f"payment failed for {EMAIL}")
except ValueError:
    logging.getLogger("app").exception("charge of %s failed", CARD)
out["basicConfig(force=True)"] = forced.getvalue()

# structlog over the standard library, rendered by structlog
structlog.configure(
    processors=[structlog.stdlib.add_log_level, structlog.processors.JSONRenderer()],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=False,
)
start = len(forced.getvalue())
structlog.get_logger("sl").warning("signup", email=EMAIL, card=CARD)
out["structlog"] = forced.getvalue()[start:]

# structlog rendered by its ProcessorFormatter (the event dict travels as the record's msg)
structlog.configure(
    processors=[structlog.stdlib.add_log_level, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=False,
)
pf = io.StringIO()
handler = logging.StreamHandler(pf)
handler.setFormatter(structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer()))
logging.getLogger("pf").addHandler(handler)
logging.getLogger("pf").propagate = False
structlog.get_logger("pf").warning("signup", email=EMAIL, card=CARD)
out["ProcessorFormatter"] = pf.getvalue()

glog.uninstall()
after = io.StringIO()
logging.getLogger("after").addHandler(logging.StreamHandler(after))
logging.getLogger("after").propagate = False
logging.getLogger("after").warning("mail %s", EMAIL)
out["uninstalled"] = after.getvalue()
print(json.dumps(out))
"""


def test_every_logging_configuration_gets_redacted_records(tmp_path: Path) -> None:
    """Records reach no handler raw whatever the configuration: no handler (last resort), a logger with
    ``propagate=False``, ``basicConfig(force=True)`` after install, structlog over the standard library."""
    script = tmp_path / "configurations.py"
    script.write_text(CONFIGURATIONS)
    run = subprocess.run(
        [sys.executable, str(script), EMAIL, CARD], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    out["last resort"] = run.stderr
    assert out.pop("uninstalled") == f"mail {EMAIL}\n"  # uninstall() restores the standard behaviour
    for config, text in out.items():
        assert EMAIL not in text and CARD not in text, config
        assert glog.PATTERNS_ONLY_MARK in text and "[EMAIL]" in text, config
    assert "user={'email': '[EMAIL]', 'card': ['[CREDIT_CARD]']}" in out["propagate=False"]
    assert "Traceback" in out["basicConfig(force=True)"] and "[CREDIT_CARD]" in out["basicConfig(force=True)"]
    for config in ("structlog", "ProcessorFormatter"):
        line = out[config].strip().splitlines()[-1].removeprefix("WARNING ")
        event = json.loads(line.removeprefix(glog.PATTERNS_ONLY_MARK))
        assert event["email"] == "[EMAIL]" and event["card"] == "[CREDIT_CARD]", config


def test_install_chains_and_restores_the_record_factory() -> None:
    made: list[str] = []
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        made.append("app")
        return previous(*args, **kwargs)

    logging.setLogRecordFactory(factory)
    try:
        glog.install(target="127.0.0.1:1", timeout=0.2)
        try:
            assert logging.getLogRecordFactory() is not factory
            record = logging.getLogger("t_factory").makeRecord("t", logging.INFO, "f", 1, EMAIL, (), None)
            assert made == ["app"] and record.getMessage() == f"{glog.PATTERNS_ONLY_MARK}[EMAIL]"
            with pytest.raises(KeyError):  # makeRecord's own checks still apply
                logging.getLogger("t_factory").makeRecord(
                    "t", logging.INFO, "f", 1, "x", (), None, extra={"msg": EMAIL}
                )
        finally:
            glog.uninstall()
        assert logging.getLogRecordFactory() is factory
        assert logging.Logger.makeRecord is glog._stdlib_make_record
    finally:
        logging.setLogRecordFactory(previous)


def test_fallback_does_not_log_through_the_hook(patterns: PatternDetector) -> None:
    """Sidecar down, root at DEBUG: each record is written once, Presidio's own debug lines are not
    written (nor redacted, which would log again)."""
    root = logging.getLogger()
    level = root.level
    written: list[logging.LogRecord] = []
    handler = type("H", (logging.Handler,), {"emit": lambda self, r: written.append(r)})()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        redacting = glog.install(target="127.0.0.1:1", timeout=0.2)
        fallback = redacting._fallback
        calls: list[int] = []

        def counting(texts: list[str]) -> list[str]:
            calls.append(len(texts))
            assert fallback is not None
            return fallback(texts)

        redacting._fallback = counting  # type: ignore[assignment]
        app = logging.getLogger("t_debug_app")
        for i in range(10):
            app.debug("record %d for %s", i, EMAIL)
    finally:
        glog.uninstall()
        root.removeHandler(handler)
        root.setLevel(level)
    assert [r.name for r in written] == ["t_debug_app"] * 10
    assert len(calls) == 10
    assert all(r.getMessage().endswith("for [EMAIL]") for r in written)


def _down(texts: list[str]) -> list[str]:
    raise ConnectionError("sidecar down")


ADDRESSES = (
    "x.y@corp.internal",
    "bob@mail.local",
    "a@localhost",
    "qa.lead@build.test",
    "ops@[10.0.0.1]",
    "root@[IPv6:2001:db8::1]",
    '"john doe"@example.com',
    "o'brien+tag@Sub.Corp.Internal",
    "jürgen@müller.intern",
)
"""Address shapes an application logs that Presidio's recogniser (public domains only) misses."""


def _local_parts() -> list[str]:
    return [a.rsplit("@", 1)[0].strip('"') for a in ADDRESSES if len(a.rsplit("@", 1)[0]) > 2]


def test_fallback_catches_every_address_shape(patterns: PatternDetector) -> None:
    """Sidecar down: addresses at internal domains, IP literals and quoted local parts are redacted in
    the message, in extra= objects, in the traceback and in stack_info."""
    logger, out = _logger("t_shapes", glog.RedactingFilter(_down, patterns=patterns))
    seen: list[logging.LogRecord] = []
    logger.handlers[0].addFilter(lambda r: seen.append(r) or True)
    for address in ADDRESSES:
        logger.info("mail %s", address, extra={"user": {"email": address}, "to": [address]})
        try:
            raise LookupError(f"no mailbox {address}")
        except LookupError:
            logger.exception("delivery to %r failed", address, stack_info=True)
    logger.info("link https://app.example.org/reset?email=x.y%40corp.internal&next=%2F")
    logger.warning("paging bob@mail.local", stack_info=True)  # the stack shows this line
    written = out.getvalue() + "".join(repr(vars(r)) for r in seen)
    assert not any(part in written for part in _local_parts())
    assert "mail.local" not in written and "localhost" not in written and "10.0.0.1" not in written
    # per address: the message and the traceback's two lines; then the link, the message and its stack
    assert out.getvalue().count("[EMAIL]") == 3 * len(ADDRESSES) + 3
    assert 'logger.warning("paging [EMAIL]", stack_info=True)' in out.getvalue()
    assert all(r.user == {"email": "[EMAIL]"} and r.to == ["[EMAIL]"] for r in seen if hasattr(r, "user"))
    assert "reset?email=[EMAIL]&next=%2F" in out.getvalue()


def test_fallback_reads_past_invisible_characters(patterns: PatternDetector) -> None:
    logger, out = _logger("t_invisible", glog.RedactingFilter(_down, patterns=patterns))
    logger.info("mail ana.sil\u200bva@corp.internal, card 4111\u00ad1111 1111 1111")
    assert out.getvalue() == f"INFO {glog.PATTERNS_ONLY_MARK}mail [EMAIL], card [CREDIT_CARD]\n"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError(f"cannot print {EMAIL}")


def test_a_record_that_cannot_be_read_is_withheld_not_raised(patterns: PatternDetector) -> None:
    logger, out = _logger("t_unreadable", glog.RedactingFilter(_down, patterns=patterns))
    logger.info("mail %s", EMAIL, extra={"who": _Unprintable()})
    assert out.getvalue() == f"INFO {glog.WITHHELD}\n"


def _eager(texts: list[str]) -> list[str]:
    """A detector that reads file paths as passwords and every number as an ID (what a model in the
    sidecar did to tracebacks) and finds emails."""
    out = []
    for t in texts:
        t = re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "[EMAIL]", t)
        t = re.sub(r"(?:/[\w.-]+)+", "[PASSWORD]", t)
        out.append(re.sub(r"\d+", "[ID_NUMBER]", t))
    return out


def _charge(card: str) -> None:
    raise ValueError(f"payment failed for {EMAIL}\ncard ending {card[-4:]}")


def test_traceback_keeps_its_frames_and_types_and_loses_its_pii(patterns: PatternDetector) -> None:
    logger, out = _logger("t_frames", glog.RedactingFilter(_eager, patterns=patterns))
    try:
        try:
            _charge(CARD)
        except ValueError as e:
            raise RuntimeError(f"retry for {EMAIL} failed") from e
    except RuntimeError:
        logger.exception("charge %s failed", CARD)
    text = out.getvalue()
    assert EMAIL not in text and "1111" not in text
    here = re.escape(__file__)
    for func in ("_charge", "test_traceback_keeps_its_frames_and_types_and_loses_its_pii"):
        assert re.search(rf'^  File "{here}", line \d+, in {func}$', text, re.M), func  # verbatim
    assert "\nValueError: payment failed for [EMAIL]\ncard ending [ID_NUMBER]\n" in text
    assert "\nRuntimeError: retry for [EMAIL] failed" in text
    assert "\nThe above exception was the direct cause of the following exception:\n" in text
    assert text.count("Traceback (most recent call last):") == 2
    assert "    raise ValueError(" in text  # source lines shown, redacted on their own

    logger.info("where am I", stack_info=True)
    stack = out.getvalue()[len(text) :]
    assert "Stack (most recent call last):" in stack
    assert re.search(rf'^  File "{here}", line \d+, in test_traceback_keeps', stack, re.M)


def test_a_message_dressed_as_a_frame_is_still_redacted(patterns: PatternDetector) -> None:
    logger, out = _logger("t_spoof", glog.RedactingFilter(_eager, patterns=patterns))
    try:
        raise LookupError(f'no account\n  File "/home/{EMAIL}/app.py", line 7, in charge')
    except LookupError:
        logger.exception("lookup failed")
    text = out.getvalue()
    assert EMAIL not in text and "[EMAIL]" in text
    assert re.search(r'^  File ".*", line \d+, in test_a_message_dressed', text, re.M)  # the real frame
    # a text without its exception (stack_info, an exc_text formatted elsewhere): a frame line is kept
    # only where its file exists
    redacting = glog.RedactingFilter(_eager, patterns=patterns)
    fake, real = f'  File "/home/{EMAIL}/app.py", line 7, in charge', f'  File "{__file__}", line 3, in f'
    record = logging.makeLogRecord(
        {"msg": "x", "stack_info": f"Stack (most recent call last):\n{fake}\n{real}"}
    )
    redacting.filter(record)
    dressed = '  File "[PASSWORD]/[EMAIL][PASSWORD]", line [ID_NUMBER], in charge'
    assert record.stack_info == f"Stack (most recent call last):\n{dressed}\n{real}"


def test_structlog_traceback_keeps_its_frames(patterns: PatternDetector) -> None:
    import structlog

    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.format_exc_info,
            glog.structlog_processor(glog.RedactingFilter(_eager, patterns=patterns)),
            structlog.processors.JSONRenderer(),
        ],
    )
    try:
        _charge(CARD)
    except ValueError:
        logger.error("charge failed", card=CARD, exc_info=True)
    event = json.loads(out.getvalue())
    assert EMAIL not in out.getvalue() and "1111" not in out.getvalue()
    assert re.search(rf'^  File "{re.escape(__file__)}", line \d+, in _charge$', event["exception"], re.M)
    assert "payment failed for [EMAIL]" in event["exception"] and event["card"].count("[ID_NUMBER]") == 4
