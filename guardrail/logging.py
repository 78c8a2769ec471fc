"""Pre-logging hook: every log record is redacted before any handler writes it.

>>> import guardrail.logging
>>> guardrail.logging.install(target="127.0.0.1:50051")   # through the sidecar; or guard=Guardrail.load()

:class:`RedactingFilter` replaces a record's formatted message (``msg % args``), its exception text, its
stack text and its ``extra=`` attributes by their redacted forms, so formatters and handlers only ever see
redacted text. :func:`install` makes every record redacted where it is made, whatever the logging
configuration: a log-record factory (:func:`logging.setLogRecordFactory`, chained to the previous one)
redacts each record as it is created, and :meth:`logging.Logger.makeRecord` is wrapped so that a record
made by a logger is redacted once its ``extra=`` attributes are on it. Handlers added later, loggers with
``propagate=False``, ``logging.basicConfig(force=True)`` and Python's last-resort handler (no handler
configured) all receive redacted records. :func:`uninstall` undoes it. :func:`structlog_processor` does the
same for structlog event dicts that do not go through the standard library (structlog's own loggers),
without importing structlog; structlog over the standard library is covered by :func:`install`.

It fails closed. When the detector cannot answer (sidecar down, or slower than ``timeout``), the record is
redacted by Presidio's pattern recognizers alone (emails, phones, cards, IBANs, IPs, IDs; no names) and
marked: the message starts with :data:`PATTERNS_ONLY_MARK` and ``record.guardrail == "patterns"``. With
``on_failure="drop"``, or if the patterns fail too, the text is replaced by :data:`WITHHELD`. Raw text is
never passed on. Attributes added with ``extra=`` are redacted too: strings, and strings inside dicts,
lists and tuples (structure kept); any other object is replaced by its redacted text (``str``). A message
that is a dict or a list (structlog's ``ProcessorFormatter``) keeps its structure the same way. A traceback
keeps its structure too: its frame lines (``File "...", line N, in func``), Python's own lines and the
exception types stay as they are; the exception messages and the source lines shown are redacted.

Redaction does not log through the logging it protects: the guardrail's own dependencies (Presidio,
tldextract) are silenced while a record is redacted, and a record made during a redaction (by grpc, say)
is redacted by the patterns at most, never by a redaction of its own that could log again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from guardrail.invisible import strip_invisible, to_original
from guardrail.labels import PRIVACY
from guardrail.redact import Redactor
from guardrail.spans import merge

if TYPE_CHECKING:
    from guardrail.patterns import PatternDetector
    from guardrail.pipeline import Guardrail

PATTERNS_ONLY_MARK = "[guardrail: patterns only] "
"""Prefix of a message redacted by the pattern recognizers alone (the detector was unreachable)."""
WITHHELD = "[guardrail: text withheld]"
"""What is written instead of a text that could not be redacted at all."""
FALLBACK_LABELS: tuple[str, ...] = (*PRIVACY, "PASSWORD", "OTHER")
"""Labels the pattern fallback redacts (identifiers of people, devices and accounts)."""

Outcome = Literal["model", "patterns", "withheld"]


class Backend(Protocol):
    """Something that redacts a list of texts (raises when it cannot)."""

    def __call__(self, texts: list[str]) -> list[str]: ...


def in_process(guard: Guardrail, operator: str = "placeholder") -> Backend:
    """Redact with a :class:`Guardrail` in this process (one call at a time)."""
    lock = threading.Lock()

    def redact(texts: list[str]) -> list[str]:
        with lock:
            return [r.text for r in guard.redact(texts, operator=operator)]

    return redact


def through_sidecar(
    target: str, *, timeout: float = 0.5, operator: str = "placeholder", **client: Any
) -> Backend:
    """Redact through the sidecar at ``target`` with a deadline of ``timeout`` seconds per record.

    No retries: a log call must not stall; the pattern fallback answers instead. ``client`` goes to
    :class:`guardrail.client.GuardrailClient` (TLS, token).
    """
    from guardrail.client import GuardrailClient

    conn = GuardrailClient(target, timeout=timeout, retries=0, **client)

    def redact(texts: list[str]) -> list[str]:
        return [r.text for r in conn.redact(texts, operator=operator)]

    redact.close = conn.close  # type: ignore[attr-defined]
    return redact


class _PatternRedactor:
    """The fallback: Presidio's pattern recognizers, addresses of every shape (internal domains, IP
    literals, quoted local parts: Presidio keeps public domains only), and the placeholder operator."""

    def __init__(self, detector: PatternDetector | None = None):
        from guardrail.patterns import PatternDetector, any_email_spans

        self._detector = detector if detector is not None else PatternDetector(labels=FALLBACK_LABELS)
        self._any_email = any_email_spans
        self._redactor = Redactor("placeholder")

    def __call__(self, texts: list[str]) -> list[str]:
        stripped = [strip_invisible(t) for t in texts]  # a zero-width space must not split a value
        seen = [t for t, _ in stripped]
        found = self._detector.detect_batch(seen)
        return [
            self._redactor.redact(t, to_original(merge([*s, *self._any_email(v)]), kept)).text
            for t, (v, kept), s in zip(texts, stripped, found, strict=True)
        ]


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "guardrail",
}
"""Attributes every record has; anything else on a record came from ``extra=``."""

_PLAIN = (int, float, bool, type(None), logging.Logger)
"""Values kept as they are (a logger, e.g. structlog's ``_logger``, is a name, not a text to redact)."""

QUIET_LOGGERS: tuple[str, ...] = ("presidio-analyzer", "decision_process", "tldextract")
"""Loggers of the guardrail's own dependencies, silenced while a record is redacted (see :func:`quiet`)."""

_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved: dict[str, bool] = {}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` for the duration (nested and concurrent uses count).

    What they log while redacting a record would be made into records that this hook redacts again (with
    Presidio once more: recursion) and would be written through the handlers it protects: at DEBUG,
    thousands of lines for a few records. ``Logger.disabled`` stops a record before it is even made. It is
    process-wide, so these loggers are silent in other threads during a redaction too.
    """
    global _quiet_users
    with _quiet_lock:
        if _quiet_users == 0:
            for name in QUIET_LOGGERS:
                logger = logging.getLogger(name)
                _quiet_saved[name] = logger.disabled
                logger.disabled = True
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                for name, disabled in _quiet_saved.items():
                    logging.getLogger(name).disabled = disabled
                _quiet_saved.clear()


def _gather(value: Any, out: list[str], depth: int = 0) -> Callable[[Any], Any]:
    """Append the texts inside ``value`` to ``out``; returns what rebuilds the value from an iterator over
    their redacted forms (same order)."""
    if isinstance(value, str):
        out.append(value)
        return next
    if isinstance(value, _PLAIN):
        return lambda _it: value
    if depth < 4 and isinstance(value, dict):
        parts = [(k, _gather(v, out, depth + 1)) for k, v in value.items()]
        return lambda it: {k: f(it) for k, f in parts}
    if depth < 4 and type(value) in (list, tuple):
        items = [_gather(v, out, depth + 1) for v in value]
        kind = type(value)
        return lambda it: kind(f(it) for f in items)
    out.append(str(value))  # any other object (or too deep): its text, redacted
    return next


_STRUCTURE_LINES = frozenset(
    {
        "Traceback (most recent call last):",
        "Stack (most recent call last):",
        "The above exception was the direct cause of the following exception:",
        "During handling of the above exception, another exception occurred:",
    }
)
"""Lines of a traceback that Python writes itself, with nothing of the program's data in them."""
_FRAME_LINE = re.compile(r'  File "(?P<file>[^"\n]+)", line \d+, in [\w.<>]+')
"""A frame line as :mod:`traceback` writes it (trusted in a text without its exception: see
:func:`_known_frame`)."""
_PSEUDO_FILE = re.compile(r"<frozen [\w.]+>|<[\w-]+>")
"""Where code without a file comes from: ``<frozen runpy>``, ``<string>``, ``<stdin>``."""
_MARK_LINE = re.compile(r"\s*[~^]+\s*|  \[Previous line repeated \d+ more times?\]")
"""The carets under a source line, and the note on a repeated frame."""
MAX_TRACEBACK_PARTS = 64
"""A traceback with more parts to redact than this is redacted whole (bounded requests to the detector)."""

_ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


def _type_name(kind: type[BaseException]) -> str:
    """An exception type as :func:`traceback.format_exception_only` names it."""
    module = kind.__module__
    return kind.__qualname__ if module in ("__main__", "builtins") else f"{module}.{kind.__qualname__}"


def _landmarks(exc_info: _ExcInfo) -> tuple[frozenset[str], tuple[str, ...]]:
    """The frame lines (file, line number, function: code locations, never data) and the exception type
    names of the traceback that ``exc_info`` formats to, read from the exceptions themselves (their
    causes and contexts too) rather than parsed from its text: a message with a line that only looks
    like a frame (``  File "a@b.org", ...``) is not one of them, so it is redacted like the message."""
    frames: set[str] = set()
    names: list[str] = []
    seen: set[int] = set()
    todo: list[_ExcInfo] = [exc_info]
    while todo:
        kind, value, tb = todo.pop()
        if kind is not None:
            names.append(_type_name(kind))
        for f in traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False):
            frames.add(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if value is None or id(value) in seen:
            continue
        seen.add(id(value))
        for nxt in (value.__cause__, value.__context__):
            if nxt is not None and id(nxt) not in seen:
                todo.append((type(nxt), nxt, nxt.__traceback__))
    return frozenset(frames), tuple(names)


def _known_frame(line: str) -> bool:
    """``line`` is a frame line of a file that exists here: a message that dresses a line as a frame
    would need its data to be the path of a real file to be kept as one."""
    m = _FRAME_LINE.fullmatch(line)
    return m is not None and (_PSEUDO_FILE.fullmatch(m["file"]) is not None or os.path.isfile(m["file"]))


def _gather_traceback(
    text: str, out: list[str], frames: frozenset[str] | None = None, names: Sequence[str] = ()
) -> Callable[[Iterator[str]], str]:
    """Like :func:`_gather` for a traceback or stack text: only its data goes to ``out`` (the exception
    messages, the source lines shown, each run separately), its structure is kept verbatim: frame lines,
    Python's own lines, carets, the exception type before ``": "``. A detector that reads the whole text
    takes paths for secrets and line numbers for IDs.

    ``frames`` and ``names``: from :func:`_landmarks` when the exception is at hand; None: a text alone
    (``stack_info``, an ``exc_text`` formatted elsewhere, structlog's ``exception``), whose frame lines
    are known by their format and their file (:func:`_known_frame`), its type names not at all.
    """
    parts: list[tuple[str, bool]] = []  # (text, to redact), in order

    def add(piece: str, redact: bool) -> None:
        if parts and parts[-1][1] == redact:
            piece = parts.pop()[0] + piece
        parts.append((piece, redact))

    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        kept = (
            body in _STRUCTURE_LINES
            or (body in frames if frames is not None else _known_frame(body))
            or _MARK_LINE.fullmatch(body) is not None
        )
        if kept:
            add(line, False)
            continue
        name = next((n for n in names if body == n or body.startswith(n + ": ")), None)
        if name is not None:
            add(line[: len(name) + 2] if body != name else line, False)
            line = line[len(name) + 2 :] if body != name else ""
        if line:
            add(line, True)
    pieces: list[tuple[str, bool]] = []
    for piece, redact in parts:
        core = piece.strip()
        if not redact or not core:
            pieces.append((piece, False))
            continue
        lead = piece[: len(piece) - len(piece.lstrip())]
        pieces += [(lead, False), (core, True), (piece[len(lead) + len(core) :], False)]
    if sum(redact for _, redact in pieces) > MAX_TRACEBACK_PARTS:
        pieces = [(text, True)]
    out.extend(piece for piece, redact in pieces if redact)
    return lambda it: "".join(next(it) if redact else piece for piece, redact in pieces)


class RedactingFilter(logging.Filter):
    """Redacts message, arguments, exception and stack text of each record in place (see the module doc).

    ``backend``: :func:`in_process` or :func:`through_sidecar`. ``on_failure``: ``patterns`` (default) or
    ``drop``. ``patterns``: a shared :class:`~guardrail.patterns.PatternDetector` for the fallback (built
    here when not given, so that an outage never waits for it to load).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        on_failure: Literal["patterns", "drop"] = "patterns",
        patterns: PatternDetector | None = None,
        mark: str = PATTERNS_ONLY_MARK,
    ):
        super().__init__()
        if on_failure not in ("patterns", "drop"):
            raise ValueError("on_failure must be 'patterns' or 'drop'")
        self.backend = backend
        self.on_failure = on_failure
        self.mark = mark
        with quiet():  # Presidio's warnings while it loads are not the application's records
            self._fallback = _PatternRedactor(patterns) if on_failure == "patterns" else None
        self._busy = threading.local()  # a record logged while redacting (by grpc, presidio) must not loop

    def redact_texts(self, texts: list[str]) -> tuple[list[str], Outcome]:
        """Redact ``texts`` with the backend, else the fallback, else withhold them; never raises."""
        if not texts:
            return [], "model"
        depth = getattr(self._busy, "depth", 0)
        self._busy.depth = depth + 1
        try:
            with quiet():
                if depth == 0:
                    try:
                        return self.backend(texts), "model"
                    except Exception:
                        pass
                if self._fallback is not None and depth <= 1:
                    try:
                        return self._fallback(texts), "patterns"
                    except Exception:
                        pass
            return [WITHHELD for _ in texts], "withheld"
        finally:
            self._busy.depth = depth

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place (once, however many handlers it passes); always keeps it."""
        if getattr(record, "guardrail", None) is None:
            self.redact_record(record)
        return True

    def redact_record(self, record: logging.LogRecord) -> None:
        """Redact ``record`` in place and mark it (``record.guardrail``), whatever mark it had; never
        raises (a record that cannot be read, e.g. an object whose ``str`` fails, is withheld whole)."""
        try:
            self._redact_record(record)
        except Exception:
            record.msg, record.args, record.exc_info, record.exc_text = WITHHELD, None, None, None
            record.stack_info = None
            for key in [k for k in vars(record) if k not in _RECORD_FIELDS]:
                setattr(record, key, WITHHELD)
            record.guardrail = "withheld"

    def _redact_record(self, record: logging.LogRecord) -> None:
        structured = None
        if not isinstance(record.msg, str) and not record.args:
            structured = record.msg  # a dict or list message keeps its structure (structlog)
        try:
            message = record.getMessage()
        except Exception:  # args that do not fit the format: the handler would fail; keep the template
            message = str(record.msg)
        exc_text, frames, names = record.exc_text, None, ()
        if record.exc_info and record.exc_info[0] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            frames, names = _landmarks(record.exc_info)
        texts: list[str] = []
        rebuild_msg = _gather(structured, texts) if structured is not None else None
        if rebuild_msg is None:
            texts.append(message)
        rebuild_exc = _gather_traceback(exc_text, texts, frames, names) if exc_text else None
        rebuild_stack = _gather_traceback(record.stack_info, texts) if record.stack_info else None
        extras = {k: _gather(v, texts) for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        done, outcome = self.redact_texts(texts)
        pieces = iter(done)
        record.msg = rebuild_msg(pieces) if rebuild_msg is not None else next(pieces)
        record.args = None
        record.exc_info = None  # a formatter must not format the raw traceback again
        record.exc_text = rebuild_exc(pieces) if rebuild_exc is not None else None
        record.stack_info = rebuild_stack(pieces) if rebuild_stack is not None else None
        for key, rebuild in extras.items():
            setattr(record, key, rebuild(pieces))
        if outcome == "patterns" and self.mark:
            if isinstance(record.msg, str):
                record.msg = self.mark + record.msg
            elif isinstance(record.msg, dict) and isinstance(record.msg.get("event"), str):
                record.msg["event"] = self.mark + record.msg["event"]
        record.guardrail = outcome


@dataclass(slots=True)
class _Hook:
    """What :func:`install` changed, for :func:`uninstall` to put back."""

    redacting: RedactingFilter
    previous_factory: Callable[..., logging.LogRecord]
    factory: Callable[..., logging.LogRecord]
    filtered: list[logging.Filterer]


_hook: _Hook | None = None
_hook_lock = threading.Lock()
_making = threading.local()  # inside Logger.makeRecord: redact once the extra= attributes are on


def _record_factory(hook: _Hook) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = hook.previous_factory(*args, **kwargs)
        if _hook is hook and not getattr(_making, "depth", 0):
            hook.redacting.redact_record(record)
        return record

    return make


def _make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
    """``Logger.makeRecord`` while installed: the record factory's record, redacted with its extras."""
    depth = getattr(_making, "depth", 0)
    # nested: a wrapper installed over this one that this one wraps in turn (installed again since)
    inner = _inner_make_record if depth == 0 else _stdlib_make_record
    _making.depth = depth + 1
    try:
        record = inner(self, *args, **kwargs)
    finally:
        _making.depth = depth
    hook = _hook
    if hook is not None and depth == 0:
        hook.redacting.redact_record(record)  # whatever guardrail= an extra may claim
    return record


_stdlib_make_record = logging.Logger.makeRecord
_inner_make_record = _stdlib_make_record  # what _make_record wraps


def install(
    *,
    target: str | None = None,
    guard: Guardrail | None = None,
    logger: logging.Logger | None = None,
    timeout: float = 0.5,
    on_failure: Literal["patterns", "drop"] = "patterns",
    **client: Any,
) -> RedactingFilter:
    """Redact every log record of the process before any handler sees it (see the module doc).

    ``target``: the sidecar (``host:port``); else ``guard``: an in-process :class:`Guardrail`; else the
    default bundle is loaded here. Installing again replaces the previous installation. The filter also
    goes on ``logger`` (default: the root logger), its handlers and the last-resort handler, for records
    made without a logger (``logging.makeLogRecord``) and passed to them.
    """
    global _hook, _inner_make_record
    if target is not None:
        backend = through_sidecar(target, timeout=timeout, **client)
    else:
        if guard is None:
            from guardrail.pipeline import Guardrail

            guard = Guardrail.load()
        backend = in_process(guard)
    redacting = RedactingFilter(backend, on_failure=on_failure)
    with _hook_lock:
        _uninstall()
        logger = logger if logger is not None else logging.getLogger()
        filtered: list[logging.Filterer] = [logger, *logger.handlers]
        if logging.lastResort is not None:
            filtered.append(logging.lastResort)
        for f in filtered:
            for old in [x for x in f.filters if isinstance(x, RedactingFilter)]:
                f.removeFilter(old)
            f.addFilter(redacting)
        previous = logging.getLogRecordFactory()
        hook = _Hook(redacting, previous, previous, filtered)
        hook.factory = _record_factory(hook)
        _hook = hook
        logging.setLogRecordFactory(hook.factory)
        if logging.Logger.makeRecord is not _make_record:
            _inner_make_record = logging.Logger.makeRecord
            logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]
    return redacting


def uninstall() -> None:
    """Undo :func:`install`: the previous record factory and ``Logger.makeRecord`` come back (where no one
    replaced them since; else ours pass records through), the filters come off."""
    with _hook_lock:
        _uninstall()


def _uninstall() -> None:
    global _hook
    hook, _hook = _hook, None
    if hook is None:
        return
    if logging.getLogRecordFactory() is hook.factory:
        logging.setLogRecordFactory(hook.previous_factory)
    if logging.Logger.makeRecord is _make_record:
        logging.Logger.makeRecord = _inner_make_record  # type: ignore[method-assign]
    for f in hook.filtered:
        f.removeFilter(hook.redacting)


STRUCTLOG_TRACEBACKS: tuple[str, ...] = ("exception", "stack")
"""Keys where structlog's ``format_exc_info`` and ``StackInfoRenderer`` put traceback text."""


def structlog_processor(
    redacting: RedactingFilter,
) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A structlog processor redacting every string in the event dict (nested dicts and lists too).

    Put it after ``format_exc_info`` (so the exception is text) and before the renderer. The traceback
    under ``exception`` (and ``stack``) keeps its frame lines. Under the pattern fallback the event gets
    ``guardrail="patterns"`` and the mark on ``event``.
    """

    def process(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        texts: list[str] = []
        tracebacks = {
            key: _gather_traceback(event[key], texts)  # its frames kept readable
            for key in STRUCTLOG_TRACEBACKS
            if isinstance(event.get(key), str)
        }
        paths: list[tuple[Any, Any]] = []
        _collect(event, paths, texts, skip=frozenset(tracebacks))
        done, outcome = redacting.redact_texts(texts)
        pieces = iter(done)
        for key, rebuild in tracebacks.items():
            event[key] = rebuild(pieces)
        for (container, key), text in zip(paths, pieces, strict=True):
            container[key] = text
        if outcome != "model":
            event["guardrail"] = outcome
            if outcome == "patterns" and isinstance(event.get("event"), str) and redacting.mark:
                event["event"] = redacting.mark + event["event"]
        return event

    return process


def _collect(
    node: Any, paths: list[tuple[Any, Any]], texts: list[str], skip: frozenset[str] = frozenset()
) -> None:
    items: Sequence[tuple[Any, Any]]
    if isinstance(node, MutableMapping):
        items = [(k, v) for k, v in node.items() if k not in skip]
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        if isinstance(value, str):
            paths.append((node, key))
            texts.append(value)
        elif isinstance(value, MutableMapping | list):
            _collect(value, paths, texts)
        elif isinstance(value, tuple | set | BaseException) or not isinstance(
            value, int | float | bool | None
        ):
            # anything else may render to text with PII in it: render it now and redact that
            paths.append((node, key))
            texts.append(repr(value) if isinstance(value, tuple | set) else str(value))
