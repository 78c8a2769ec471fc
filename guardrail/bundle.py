"""Guard bundles: the unit that is trained, shipped and loaded (DESIGN.md, "A guard bundle").

A bundle is a folder of data only: ``guard.json`` (validated with pydantic on load), the probe arrays
in ``probe.safetensors``, and a ``MODEL_CARD.md``. Nothing in it is ever executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardrail.labels import CANONICAL, PRIVACY, PROBE_CLASSES
from guardrail.probe import AnyProbe, ProbeError, load_probe

if TYPE_CHECKING:
    from guardrail.prune import Pruning
    from guardrail.sae import Sae

MANIFEST = "guard.json"
PROBE_FILE = "probe.safetensors"
DEFAULT_BUNDLE = "gemma-3-270m"
SAE_DIR = "sae"
BACKBONE_FILE = "backbone.safetensors"
"""The pruned backbone's kept MLP neurons ``mlp_keep.<block>`` (int64) and refitted down projections
``mlp_down.<block>`` (float32), when the manifest prunes (:mod:`guardrail.prune`)."""
FEATURES_FILE = "features.json"
FORMAT_VERSION = 2


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
    """Runtime whose activations the probe was fitted on (``torch``, ``torch-int8`` or ``onnx-int8``)."""
    mlp_keep: int | None = Field(None, ge=1)
    """Neurons kept in each block's MLP when the backbone is pruned (``guardrail train --mlp-keep``;
    which ones: ``backbone.safetensors``); None: the whole model."""


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: int = Field(128, ge=8)
    overlap: int = Field(32, ge=0)


class ProbeEntry(BaseModel):
    """One probe of the bundle and how its scores become spans."""

    model_config = ConfigDict(extra="forbid")
    prefix: str
    """Tensor-name prefix in ``probe.safetensors``."""
    features: Literal["raw", "sae"] = "raw"
    head: Literal["linear", "forest", "mlp"] = "linear"
    thresholds: dict[str, float] = {}
    """Per label, on P(not O)."""
    thresholds_unspaced: dict[str, float] | None = None
    """Per label, for tokens written in a script without spaces (Chinese, Japanese, Thai), calibrated on
    those tokens alone (None: ``thresholds``; a label missing here takes its ``thresholds`` value)."""
    thresholds_grow: dict[str, float] | None = None
    """Per label, the lower score a token needs to join a span that a token reaching ``thresholds`` started
    (hysteresis: spans are seeded strictly and finished leniently; None: no growing)."""
    lone_min_score: float = Field(0.0, ge=0.0, le=1.0)
    """Score a one-token span needs."""
    lone_min_unspaced: float | None = Field(None, ge=0.0, le=1.0)
    """The score a one-token span written in a script without spaces needs (None: ``lone_min_score``)."""
    metrics: dict[str, object] = {}

    @field_validator("thresholds", "thresholds_unspaced", "thresholds_grow")
    @classmethod
    def _thresholds(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for k, x in (v or {}).items():
            if k not in CANONICAL or not 0.0 <= x <= 1.0:
                raise ValueError(f"threshold for {k!r} must be a canonical label with a value in [0, 1]")
        return v


class Manifest(BaseModel):
    """``guard.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: Literal[2] = FORMAT_VERSION
    name: str
    backbone: BackboneRef
    window: Window = Window()
    classes: list[str] = list(PROBE_CLASSES)
    detect_labels: list[str] = [*list(PRIVACY), "PASSWORD"]
    """Labels that ``detect`` reports by default; the probe still scores every class."""
    default_probe: str = "raw"
    """The probe ``detect`` uses unless told otherwise (chosen by the benchmark on the dev sets)."""
    probes: dict[str, ProbeEntry] = {"raw": ProbeEntry(prefix="raw.")}
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
    """A loaded bundle: manifest, probes and SAE (the backbone is loaded separately, it is big)."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        probes: dict[str, AnyProbe],
        sae: Sae | None = None,
        pruning: Pruning | None = None,
    ):
        self.folder = folder
        self.manifest = manifest
        self.probes = probes
        self.sae = sae
        self.pruning = pruning
        """The backbone's MLP pruning (``backbone.mlp_keep`` of the manifest), or None: the whole model."""
        for probe in probes.values():
            if probe.source == "sae":
                probe.sae = sae

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_BUNDLE, *, sae_dtype: str | None = None) -> Bundle:
        """Read and check a bundle. ``sae_dtype`` overrides the stored SAE dtype (e.g. ``float32`` on a
        CPU without bf16)."""
        from guardrail.sae import Sae, SaeError

        folder = find(name_or_path)
        manifest = read_manifest(folder)
        probes: dict[str, AnyProbe] = {}
        for name, entry in manifest.probes.items():
            try:
                probe = load_probe(folder / PROBE_FILE, entry.prefix)
            except ProbeError as e:
                raise BundleError(f"bundle {folder.name}: probe {name!r}: {e}") from None
            if list(probe.classes) != manifest.classes:
                raise BundleError(f"bundle {folder.name}: probe {name!r} classes differ from the manifest")
            if (probe.source, probe.head) != (entry.features, entry.head):
                raise BundleError(f"bundle {folder.name}: probe {name!r} is not what the manifest says")
            probes[name] = probe
        if manifest.default_probe not in probes:
            raise BundleError(f"bundle {folder.name}: default probe {manifest.default_probe!r} is not in it")
        sae = None
        if (folder / SAE_DIR).is_dir():
            try:
                sae = Sae.load(folder / SAE_DIR, dtype=sae_dtype).eval()
            except SaeError as e:
                raise BundleError(f"bundle {folder.name}: {e}") from None
        for name, probe in probes.items():
            if probe.source != "sae":
                continue
            if sae is None:
                raise BundleError(
                    f"bundle {folder.name}: probe {name!r} reads SAE features but there is no sae/"
                )
            if probe.latents is not None and int(probe.latents.max()) >= sae.cfg.d_sae:
                raise BundleError(f"bundle {folder.name}: probe {name!r} reads latents the SAE does not have")
        return cls(folder, manifest, probes, sae, _read_pruning(folder, manifest.backbone))

    def save(self) -> None:
        """Write manifest, probes, SAE and model card into :attr:`folder`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        pf = self.folder / PROBE_FILE
        if pf.exists():
            pf.unlink()
        for name, probe in self.probes.items():
            probe.save(pf, self.manifest.probes[name].prefix)
        if self.sae is not None:
            self.sae.save(self.folder / SAE_DIR)
        (self.folder / BACKBONE_FILE).unlink(missing_ok=True)
        if self.pruning is not None:
            from safetensors.numpy import save_file

            save_file(self.pruning.arrays(), self.folder / BACKBONE_FILE)
        self.save_manifest()

    def save_manifest(self) -> None:
        """Write the manifest and the model card only (figures added to ``manifest.metrics`` after
        training); the arrays stay as they are."""
        text = json.dumps(self.manifest.model_dump(), indent=2, ensure_ascii=False)
        (self.folder / MANIFEST).write_text(text + "\n", encoding="utf-8")
        (self.folder / "MODEL_CARD.md").write_text(render_card(self.manifest, self.folder), encoding="utf-8")


def _read_pruning(folder: Path, ref: BackboneRef) -> Pruning | None:
    """The pruned backbone's kept MLP neurons (and refitted down projections), checked against the
    manifest; None when the backbone is whole."""
    if ref.mlp_keep is None:
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from guardrail.prune import Pruning

    try:
        arrays = load_file(folder / BACKBONE_FILE)
    except (OSError, SafetensorError) as e:
        raise BundleError(f"bundle {folder.name}: {BACKBONE_FILE} unreadable ({type(e).__name__})") from None
    try:
        return Pruning.from_arrays(arrays, ref.layer, ref.mlp_keep)
    except ValueError as e:
        raise BundleError(f"bundle {folder.name}: {BACKBONE_FILE} {e}") from None


def _pct(x: object) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "n/a"


def _num(x: object, fmt: str = ".3f") -> str:
    return format(x, fmt) if isinstance(x, int | float) else "n/a"


def _machine(m: object) -> str:
    """A benchmark's machine (``guardrail.bench.runner.machine``): CPU, cores, CPU flags, platform and
    Python, as far as the record has them."""
    if not isinstance(m, dict):
        return "not recorded"
    parts = [str(m["cpu"])] if m.get("cpu") else []
    parts.append(f"{m.get('cpus')} cores")
    if "cpu_flags" in m:
        parts.append("CPU flags " + (", ".join(m["cpu_flags"] or []) or "none of AVX2/AVX-512/AMX"))
    parts += [str(m[k]) for k in ("platform",) if m.get(k)]
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    return ", ".join(parts)


def _sae_section(m: Manifest, folder: Path | None) -> list[str]:
    """The card's SAE part: the SAE's training figures, the SAE probes, the latent sweep, top latents."""
    sae = m.metrics.get("sae")
    if not isinstance(sae, dict):
        return []
    lines = [
        "",
        "## SAE features",
        "",
        f"- SAE: TopK, {sae.get('d_sae')} latents, k = {sae.get('k')}, on the residual after block "
        f"{m.backbone.layer}; AuxK revival of dead latents; stored bf16 in `sae/` (SAELens layout)",
        f"- trained on {_num(sae.get('train_tokens'), ',')} tokens in "
        f"{_num(sae.get('train_seconds'), '.0f')} s "
        f"on the 2-core CPU (`{sae.get('command')}`): synthetic agent data of all locales and "
        f"{_pct(sae.get('general_share'))} general offline text (installed package READMEs, standard-library "
        "docstrings)",
        *([f"  ({sae['note']})"] if sae.get("note") else []),
        f"- held-out ({_num(sae.get('heldout_tokens'), ',')} tokens): FVU {_num(sae.get('heldout_fvu'))}, "
        f"L0 {_num(sae.get('heldout_l0'), '.1f')}, dead latents {_pct(sae.get('heldout_dead_share'))}",
    ]
    sp = m.metrics.get("sae_probe")
    if isinstance(sp, dict):
        sweep = sp.get("latent_sweep")
        if isinstance(sweep, list) and sweep:
            lines += [
                "",
                "Latents kept against quality (a quick linear head per count, shifted synthetic set,",
                "probe only, every label at threshold 0.5):",
                "",
                "| latents | span recall | precision | leakage |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r.get('n_latents')} | {_num(r.get('recall_partial_at_0.5'))} | "
                f"{_num(r.get('precision_at_0.5'))} | {_pct(r.get('leakage_at_0.5'))} |"
                for r in sweep
                if isinstance(r, dict)
            ]
        cost = m.metrics.get("sae_cost")
        if isinstance(cost, dict) and isinstance(cost.get("probes"), dict):
            note = f"; {cost['note']}" if cost.get("note") else ""
            lines += [
                "",
                f"Cost at batch {cost.get('batch')}: the truncated forward takes "
                f"{_num(cost.get('forward_ms'), '.1f')} ms ({cost.get('backbone_dtype')}, "
                f"{cost.get('threads')} threads; `python benchmarks/sae_cost.py`{note}).",
                "What each probe adds (medians):",
                "",
                "| probe | features (SAE encode) ms | head ms | span decoding ms | added | of forward |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {name} | {_num(r.get('features_ms'), '.1f')} | {_num(r.get('head_ms'), '.1f')} | "
                f"{_num(r.get('decode_ms'), '.1f')} | {_num(r.get('added_ms'), '.1f')} ms | "
                f"{_pct(r.get('added_share_of_forward'))} |"
                for name, r in cost["probes"].items()
                if isinstance(r, dict)
            ]
        choice = m.metrics.get("probe_choice")
        if isinstance(choice, dict) and isinstance(choice.get("rows"), list):
            lines += [
                "",
                f"Which probe `detect` uses ({choice.get('rule')}; {choice.get('command')}):",
                "",
            ]
            lines += _probe_choice_table([r for r in choice["rows"] if isinstance(r, dict)])
            lines += ["", str(choice.get("verdict", ""))]
        top = sp.get("top_latents")
        if isinstance(top, list) and top:
            try:
                desc = load_descriptions(folder) if folder is not None else {}
            except BundleError:
                desc = {}  # the card still renders; Guardrail.load reports the broken file
            lines += [
                "",
                "Most PII-predictive latents (largest standardised weight of the linear SAE probe, on the",
                "token itself):",
                "",
                "| latent | for label | weight | description (from `features.json`) |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r.get('latent')} | {r.get('label')} | {_num(r.get('weight'), '.2f')} | "
                f"{desc.get(int(r.get('latent', -1)), 'run `guardrail features`')} |"
                for r in top
                if isinstance(r, dict)
            ]
    return lines


def load_descriptions(folder: Path) -> dict[int, str]:
    """Latent -> description from the bundle's ``features.json`` (empty when it has none)."""
    path = folder / FEATURES_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): str(v.get("description", "")) for k, v in doc["latents"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{path}: unreadable ({type(e).__name__})") from None


def _probe_choice_table(rows: list[dict[str, Any]]) -> list[str]:
    """Leakage / precision of each probe (at each stored calibration rule) per dev set, and the means the
    rule compares."""
    if not rows or not isinstance(rows[0].get("sets"), dict):  # a table of the old two-set rule
        return [f"| {r.get('probe')} | mean F1 {_num(r.get('mean_f1'))} |" for r in rows]
    names = list(rows[0]["sets"])
    out = [
        "| probe @ calibration (with patterns) | " + " | ".join(names) + " | mean F1 | mean F1.5 |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for r in rows:
        sets = r["sets"]
        cells = [
            f"{_pct(sets.get(n, {}).get('leakage'))} / {_num(sets.get(n, {}).get('precision'), '.2f')}"
            for n in names
        ]
        out.append(
            f"| {r.get('probe')} @ {r.get('rule', 'shipped')} | "
            + " | ".join(cells)
            + f" | {_num(r.get('mean_f1'))} | {_num(r.get('mean_fbeta'))} |"
        )
    return [*out, "", "Cells: leakage / precision."]


def _sources_table(real: Mapping[str, Any]) -> list[str]:
    rows = [r for r in real.get("sources", []) if isinstance(r, dict)]
    out = [
        "| corpus | languages | licence | from | annotates | records used |",
        "|---|---|---|---|---|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.get('source')} | {', '.join(r.get('langs', []))} | {r.get('licence')} | "
            f"{', '.join(f'`{o}`' for o in r.get('origin', []))} | {', '.join(r.get('annotates', []))} | "
            f"{r.get('records_used')} |"
        )
    if any("SA" in str(r.get("licence")) for r in rows):
        out += [
            "",
            "ShareAlike: the CC-BY-SA corpora above (and Wikipedia text) ask that adaptations of the data be "
            "shared alike; this bundle holds no text of them, only a probe fitted on the model's "
            "activations. Attribution: each corpus's authors, at the repository and commit named.",
        ]
    return out


def _training_section(t: Mapping[str, Any]) -> list[str]:
    """What the probe was trained on: the synthetic generator and every real corpus with its licence."""
    sources = t.get("sources") if isinstance(t.get("sources"), dict) else {}
    real = sources.get("real") if isinstance(sources.get("real"), dict) else None
    if real:
        lines = [
            "Synthetic data (`guardrail.synth`, Faker, several locales) plus real, human-annotated public "
            "corpora (`guardrail.realdata`, `../shared/data/train`); the evaluation sets were never trained "
            f"on. {real.get('masking', '')}."
            + (f" Labels: {real['conventions']}." if real.get("conventions") else ""),
            "",
            *_sources_table(real),
            "",
        ]
    else:
        lines = [
            "Only generated data (`guardrail.synth`, Faker, several locales); the evaluation sets were never "
            "trained on.",
            "",
        ]
    sub = t.get("sae_probe")
    if (
        isinstance(sub, dict)
        and isinstance(sub.get("sources"), dict)
        and sub["sources"].get("real")
        and not real
    ):
        lines += ["SAE probes: real corpora as well:", "", *_sources_table(sub["sources"]["real"]), ""]
    for k, v in t.items():
        if k == "sources":
            continue
        if isinstance(v, dict) and ("sources" in v or "latents" in v):  # the SAE probes' own summary
            short = {a: b for a, b in v.items() if a not in ("sources", "latents")}
            if isinstance(v.get("latents"), list):
                short["latents"] = f"{len(v['latents'])} selected (indices in guard.json)"
            v = short
        lines.append(f"- {k}: {v}")
    return lines


def _dev_suite_section(suite: object) -> list[str]:
    """The dev-suite table (``benchmarks/devsuite.py --update-card``): every set, per language."""
    if not isinstance(suite, dict) or not isinstance(suite.get("rows"), dict):
        return []
    rows = suite["rows"]
    methods = list(rows)
    sets = list(suite.get("records", {}))

    def cell(r: Mapping[str, Any] | None) -> str:
        if not isinstance(r, dict):
            return "n/a"
        return f"{_pct(r.get('leakage'))} / {_num(r.get('precision'), '.2f')} / {_num(r.get('f1'), '.2f')}"

    lines = [
        "",
        "## Dev suite (real text decides)",
        "",
        f"Command: `{suite.get('command')}` on {suite.get('date')}, machine: "
        f"{_machine(suite.get('machine'))}. Cells: leakage / precision / F1, `detect` with patterns, "
        "privacy labels, types a set never annotates ignored; Presidio + spaCy sm ran in the same run.",
        "",
        "| set | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for name in sets:
        lines.append(
            f"| {name} | " + " | ".join(cell(rows[m].get("sets", {}).get(name)) for m in methods) + " |"
        )
    langs = sorted({lang for m in methods for lang in rows[m].get("languages", {})})
    for lang in langs:
        lines.append(
            f"| **all {lang}** | "
            + " | ".join(cell(rows[m].get("languages", {}).get(lang)) for m in methods)
            + " |"
        )
    return lines


def _isa_section(matrix: object) -> list[str]:
    """Speed by CPU instruction-set level (``benchmarks/isa_matrix.py --update-card``)."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get("rows"), dict):
        return []
    lines = [
        "",
        "### Speed by CPU instruction-set level",
        "",
        f"Command: `{matrix.get('command')}` on {matrix.get('date')}, machine: "
        f"{_machine(matrix.get('machine'))}; {matrix.get('records')} presidio_synth records. A capped level "
        "runs with torch's, oneDNN's and the BLAS libraries' instruction-set caps (`ATEN_CPU_CAPABILITY`, "
        "`ONEDNN_MAX_CPU_ISA`...); ONNX Runtime has none (†: its kernels are this chip's).",
        "",
        "| level | runtime (auto) | chars/s | Presidio + spaCy chars/s | vs Presidio "
        "| `guardrail detect` cold, s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for level, r in matrix["rows"].items():
        if not isinstance(r, dict):
            continue
        presidio = r.get("presidio") if isinstance(r.get("presidio"), dict) else {}
        lines.append(
            f"| {level} | {r.get('runtime')} {r.get('dtype')}{'' if r.get('capped', True) else ' †'} "
            f"| {_num(r.get('chars_per_s'), ',.0f')} | {_num(presidio.get('chars_per_s'), ',.0f')} "
            f"| {_num(r.get('vs_presidio'), '.2f')}x | {_num(r.get('cold_detect_seconds'), '.1f')} |"
        )
    return lines


def render_card(m: Manifest, folder: Path | None = None) -> str:
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
        "are never loaded",
        *(
            [
                f"- **pruned backbone** (`{BACKBONE_FILE}`): "
                f"{m.training.get('mlp_pruning', f'{m.backbone.mlp_keep} MLP neurons kept per block')}. "
                "Faster, but no longer the agent's own model: this bundle cannot piggyback an agent's "
                "forward pass"
            ]
            if m.backbone.mlp_keep
            else []
        ),
        f"- activations as runtime `{m.backbone.runtime}` computes them (the default runtime on load)",
        f"- windows of {m.window.tokens} tokens with {m.window.overlap} tokens of overlap",
        "",
        "## What it detects",
        "",
        f"- reported labels: {', '.join(m.detect_labels)}",
        f"- the probe scores all classes: {', '.join(m.classes)} (non-reported ones count as `O`)",
        f"- probes in the bundle: {', '.join(sorted(m.probes))}; `detect` uses `{m.default_probe}`",
        f"- thresholds on P(not O), per probe and label, set for token recall {m.recall_target} on a "
        "shifted synthetic set:",
        *(
            f"  - `{name}` ({e.head} head on {e.features} features): "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(e.thresholds.items()))
            + f"; a one-token span needs {e.lone_min_score:.2f}"
            + (
                f" ({e.lone_min_unspaced:.2f} in Chinese/Japanese/Thai script)"
                if e.lone_min_unspaced is not None
                else ""
            )
            + (
                "; in Chinese/Japanese/Thai script "
                + ", ".join(f"{k} {v:.3f}" for k, v in sorted(e.thresholds_unspaced.items()))
                + f" (calibrated on those tokens: `{e.metrics.get('calibration', '?')}`)"
                if e.thresholds_unspaced
                else ""
            )
            + (
                "; a span grows over neighbouring tokens that reach "
                + ", ".join(f"{k} {v:.3f}" for k, v in sorted(e.thresholds_grow.items()))
                if e.thresholds_grow
                else ""
            )
            for name, e in sorted(m.probes.items())
        ),
        f"- patterns (Presidio recognizers) unioned: {'yes' if m.patterns else 'no'}",
        "",
        "## Training",
        "",
    ]
    lines += _training_section(t)
    lines += _dev_suite_section(m.metrics.get("dev_suite"))
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
    lines += _isa_section(m.metrics.get("isa_matrix"))
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
            "Layer 3 is the lowest layer that met the quality targets on these synthetic sets, and the",
            "default. On the real dev suite layer 6 (`probes/gemma-3-270m-l6`) leaks less and is more",
            'precise in every language at about three quarters of the speed (README, "The cost rule"),',
            "so it is shipped beside it for quality-first deployments.",
        ]
    for name, e in sorted(m.probes.items()):
        calib = e.metrics.get("calib_probe_only")
        if isinstance(calib, dict):
            lines += [
                "",
                f"Probe `{name}` on the shifted synthetic calibration set (probe only, no patterns): "
                + ", ".join(f"{k} {_num(v)}" for k, v in calib.items()),
            ]
    lines += _sae_section(m, folder)
    lines += [
        "",
        "## Limits",
        "",
        "- Measured on the dev suite above (English requests, tweets and web text; Chinese; Japanese); other "
        "languages and domains are untested.",
        "- Names of public figures and fictional characters are flagged like any other name.",
        "- A detector lowers the risk of leaking PII; it does not prove its absence.",
        *(f"- {x}" for x in m.metrics.get("limits", []) if isinstance(x, str)),
        "",
    ]
    return "\n".join(lines)
