"""Benchmark harness: every detector side by side on labelled JSONL sets, quality and cost in one run.

The stages are named for what a run does: ``datasets`` (which records), ``methods`` (which detectors,
by name), ``judge`` (the backbone prompted as a black-box judge), ``runner`` (time and score them all in
one process), ``report`` (``report.md`` and the README block from ``results.json``) and ``plots``
(matplotlib PNGs). ``guardrail bench`` is the command; ``command`` holds its options.
"""

from __future__ import annotations


class BenchError(ValueError):
    """Bad benchmark input or options (a missing data file, an unknown method): one line, exit code 2."""
