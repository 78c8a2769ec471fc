"""Guard bundles: the unit that is trained, shipped and loaded (DESIGN.md, "A guard bundle").

A bundle is a folder of data only: ``guard.json`` (validated with pydantic on load), the probe arrays
in ``probe.safetensors``, and a ``MODEL_CARD.md``. Nothing in it is ever executed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardrail.labels import CANONICAL, PRIVACY, PROBE_CLASSES
from guardrail.probe import Probe, ProbeError

MANIFEST = "guard.json"
PROBE_FILE = "probe.safetensors"
DEFAULT_BUNDLE = "gemma-3-270m"
FORMAT_VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be found or does not validate."""


class BackboneRef(BaseModel):
    """Which model the probe reads, and where."""

    model_config = ConfigDict(extra="forbid")
    id: str
    layer: int = Field(ge=1)
    file: str | None = None
    sha256: str | None = None
    license: str | None = None
    n_layers: int | None = None
    runtime: str = "torch"
    """Runtime whose activations the probe was fitted on (``torch`` or ``onnx-int8``)."""


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: int = Field(128, ge=8)
    overlap: int = Field(32, ge=0)


class Manifest(BaseModel):
    """``guard.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1] = FORMAT_VERSION
    name: str
    backbone: BackboneRef
    window: Window = Window()
    classes: list[str] = list(PROBE_CLASSES)
    detect_labels: list[str] = [*list(PRIVACY), "PASSWORD"]
    """Labels that ``detect`` reports by default; the probe still scores every class."""
    default_probe: Literal["raw", "sae"] = "raw"
    probes: dict[str, str] = {"raw": "raw."}
    """Probe name -> tensor-name prefix in ``probe.safetensors``."""
    thresholds: dict[str, float] = {}
    lone_min_score: float = Field(0.0, ge=0.0, le=1.0)
    recall_target: float = Field(0.99, gt=0.0, le=1.0)
    patterns: bool = True
    training: dict[str, object] = {}
    metrics: dict[str, object] = {}

    @field_validator("detect_labels")
    @classmethod
    def _canonical(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in CANONICAL]
        if bad:
            raise ValueError(f"unknown labels {bad}")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        if not v or v[0] != "O" or any(x not in CANONICAL for x in v[1:]):
            raise ValueError("classes must be 'O' followed by canonical labels")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if k not in CANONICAL or not 0.0 <= x <= 1.0:
                raise ValueError(f"threshold for {k!r} must be a canonical label with a value in [0, 1]")
        return v


def probes_root() -> Path:
    """Folder of shipped bundles: ``$GUARDRAIL_PROBES`` or the repository's ``probes/``."""
    if env := os.environ.get("GUARDRAIL_PROBES"):
        return Path(env)
    return Path(__file__).resolve().parent.parent / "probes"


def find(name_or_path: str | Path) -> Path:
    """Resolve a bundle name (under :func:`probes_root`) or a folder path."""
    p = Path(name_or_path)
    for cand in (p, probes_root() / str(name_or_path)):
        if (cand / MANIFEST).is_file():
            return cand
    raise BundleError(
        f"no guard bundle at {name_or_path!s} (looked for {MANIFEST} there and in {probes_root()})"
    )


def read_manifest(folder: Path) -> Manifest:
    try:
        return Manifest.model_validate_json((folder / MANIFEST).read_text(encoding="utf-8"))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise BundleError(f"{folder / MANIFEST}: invalid manifest at {where}: {first['msg']}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"{folder / MANIFEST}: unreadable ({type(e).__name__})") from None


class Bundle:
    """A loaded bundle: manifest + probes (the backbone is loaded separately, it is big)."""

    def __init__(self, folder: Path, manifest: Manifest, probes: dict[str, Probe]):
        self.folder = folder
        self.manifest = manifest
        self.probes = probes

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_BUNDLE) -> Bundle:
        folder = find(name_or_path)
        manifest = read_manifest(folder)
        probes = {}
        for name, prefix in manifest.probes.items():
            try:
                probes[name] = Probe.load(folder / PROBE_FILE, prefix)
            except ProbeError as e:
                raise BundleError(f"bundle {folder.name}: probe {name!r}: {e}") from None
            if list(probes[name].classes) != manifest.classes:
                raise BundleError(f"bundle {folder.name}: probe {name!r} classes differ from the manifest")
        if manifest.default_probe not in probes:
            raise BundleError(f"bundle {folder.name}: default probe {manifest.default_probe!r} is not in it")
        return cls(folder, manifest, probes)

    def save(self) -> None:
        """Write manifest and probes into :attr:`folder` (the model card is written by training)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        pf = self.folder / PROBE_FILE
        if pf.exists():
            pf.unlink()
        for name, probe in self.probes.items():
            probe.save(pf, self.manifest.probes[name])
        text = json.dumps(self.manifest.model_dump(), indent=2, ensure_ascii=False)
        (self.folder / MANIFEST).write_text(text + "\n", encoding="utf-8")
        (self.folder / "MODEL_CARD.md").write_text(render_card(self.manifest), encoding="utf-8")


def _pct(x: object) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "n/a"


def _num(x: object, fmt: str = ".3f") -> str:
    return format(x, fmt) if isinstance(x, int | float) else "n/a"


def _machine(m: object) -> str:
    if not isinstance(m, dict):
        return "n/a"
    return f"{m.get('cpus')} CPUs, {m.get('platform')}, Python {m.get('python')}"


def render_card(m: Manifest) -> str:
    """``MODEL_CARD.md`` from the manifest: what it detects, how it was trained, what it measured."""
    t = m.training
    lines = [
        f"# Guard bundle `{m.name}`",
        "",
        "A per-token probe over the residual stream of a language model that flags personal data (PII);",
        "spans are decoded to character offsets and unioned with Presidio's checksum-validated patterns.",
        "",
        "## Backbone",
        "",
        f"- model: `{m.backbone.id}` (file `{m.backbone.file}`, sha256 `{m.backbone.sha256}`)",
        f"- license: {m.backbone.license or 'see the model source'}"
        + (
            " (https://ai.google.dev/gemma/terms): use of the weights is subject to them"
            if m.backbone.license == "Gemma Terms of Use"
            else ""
        ),
        f"- read after block {m.backbone.layer} of {m.backbone.n_layers}; blocks above it and the LM head "
        "are "
        "never loaded",
        f"- windows of {m.window.tokens} tokens with {m.window.overlap} tokens of overlap",
        "",
        "## What it detects",
        "",
        f"- reported labels: {', '.join(m.detect_labels)}",
        f"- the probe scores all classes: {', '.join(m.classes)} (non-reported ones count as `O`)",
        f"- probes in the bundle: {', '.join(sorted(m.probes))}; default `{m.default_probe}`",
        "- thresholds on P(not O), per label, set for token recall "
        f"{m.recall_target} on a shifted synthetic set: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(m.thresholds.items())),
        f"- patterns (Presidio recognizers) unioned: {'yes' if m.patterns else 'no'}",
        "",
        "## Training",
        "",
        "Only generated data (`guardrail.synth`, Faker, 7 locales); the evaluation sets were never "
        "trained on.",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in t.items()]
    bench = m.metrics.get("benchmark")
    lines += ["", "## Measured", ""]
    if isinstance(bench, dict):
        lines += [
            f"Command: `{bench.get('command')}` on {bench.get('date')}, "
            f"machine: {_machine(bench.get('machine'))}.",
            "",
            "| method | presidio_synth leakage | recall (partial) | precision | wnut17 PERSON recall "
            "| chars/s | tokens/s | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in ("guardrail", "presidio_spacy_sm"):
            r = bench.get(name)
            if not isinstance(r, dict):
                continue
            q = r.get("presidio_synth", {})
            lines.append(
                f"| {name} | {_pct(q.get('leakage'))} | {_num(q.get('recall_partial'))} | "
                f"{_num(q.get('precision'))} | {_num(r.get('wnut17_person_recall'))} | "
                f"{_num(r.get('chars_per_s'), '.0f')} | {_num(r.get('tokens_per_s'), '.0f')} | "
                f"{_num(r.get('peak_rss_mb'), '.0f')} |"
            )
        lines += [
            "",
            "Speed ratio (guardrail / Presidio + spaCy sm with one process per core, chars/s): "
            f"{_num(bench.get('speed_ratio'), '.2f')}x; against Presidio in one process "
            f"({_num(bench.get('presidio_spacy_sm_1process_chars_per_s'), '.0f')} chars/s): "
            f"{_num(bench.get('speed_ratio_vs_1process'), '.2f')}x.",
            "Quality on presidio_synth_v2 is type-agnostic over the privacy labels; wnut17 ignores labels",
            "it never annotates. Metric definitions: DESIGN.md (`guardrail.metrics`, equal to the",
            "reference scorer).",
        ]
    else:
        lines.append("Not benchmarked yet: run `python benchmarks/core.py --update-card`.")
    choice = m.metrics.get("layer_choice")
    if isinstance(choice, list) and choice:
        lines += [
            "",
            "### Layer choice",
            "",
            "Same recipe, same synthetic data, one bundle per layer (`guardrail train --layer N`),",
            "measured with `python benchmarks/core.py --bundle …` in one session on the 2-core CPU:",
            "",
            "| layer | presidio_synth leakage | recall | precision | wnut17 PERSON recall | chars/s "
            "| Presidio chars/s | shifted-synthetic precision |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in choice:
            if isinstance(row, dict):
                lines.append(
                    f"| {row.get('layer')} | {_pct(row.get('presidio_synth_leakage'))} | "
                    f"{_num(row.get('recall_partial'))} | {_num(row.get('precision'))} | "
                    f"{_num(row.get('wnut17_person_recall'))} | {_num(row.get('chars_per_s'), '.0f')} | "
                    f"{_num(row.get('presidio_chars_per_s'), '.0f')} | {_num(row.get('calib_precision'))} |"
                )
        lines += [
            "",
            "Layer 3 is the lowest layer that meets the quality targets on the dev sets, and the default;",
            "layer 6 (`probes/gemma-3-270m-l6`) is clearly better on the shifted synthetic set, so it is",
            "shipped beside it for accuracy-first deployments.",
        ]
    calib = m.metrics.get("calib_probe_only")
    if isinstance(calib, dict):
        lines += [
            "",
            "On the shifted synthetic calibration set (probe only, no patterns): "
            + ", ".join(f"{k} {_num(v)}" for k, v in calib.items()),
        ]
    lines += [
        "",
        "## Limits",
        "",
        "- Trained on synthetic English-first data in 7 locales; other languages and domains are untested.",
        "- Names of public figures and fictional characters are flagged like any other name.",
        "- A detector lowers the risk of leaking PII; it does not prove its absence.",
        "",
    ]
    return "\n".join(lines)
