"""The whole probe as one ONNX graph: truncated backbone, feature encoder (RMS norm or the SAE's encoder
of the selected latents), neighbour context and the head (linear or MLP), from token ids to class
probabilities.

``guardrail export-onnx`` writes it; ``Guardrail.load(..., runtime="onnx", onnx_dir=...)`` runs it with
ONNX Runtime (the CUDA execution provider when ``onnxruntime-gpu`` and a GPU are there, else the CPU's),
tokenising and decoding spans on the host as the torch path does. Graph inputs: ``input_ids`` ``[B, L]``
(BOS first, right-padded) and ``lengths`` ``[B]`` (content tokens per row); output ``probs``
``[B, L - 1, C]`` for the content positions. Batch and length are dynamic axes.

Neighbour context is read inside one window: windows are planned with a margin of the context's reach
(:func:`guardrail.backbone.window_plan`) so every kept token has its neighbours in its own row, and
the graph's spans equal the torch path's up to floating point. Forest heads are not exported.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guardrail import cpu
from guardrail.backbone import WINDOW, Encoded, ort_session, pad_rows, stitch
from guardrail.probe import MlpProbe, Probe, rms_normalise
from guardrail.quant import ONNX_TRANSLATIONS, activation_bits, quantize_linear

log = logging.getLogger(__name__)

MANIFEST = "onnx.json"
GRAPH = "model.onnx"
FORMAT_VERSION = 1


class ExportError(RuntimeError):
    """A probe that cannot be exported, or an exported graph that does not fit its bundle."""


class ProbeGraph(nn.Module):
    """Token ids ``[B, L]`` and content lengths ``[B]`` -> class probabilities ``[B, L - 1, C]``."""

    def __init__(self, model: nn.Module, probe: Probe | MlpProbe):
        super().__init__()
        if not isinstance(probe, Probe | MlpProbe):
            raise ExportError(
                f"only linear and MLP heads export to ONNX; this probe has a {probe.head!r} head"
            )
        self.model = model
        self.context = tuple(probe.context)
        self.sae = probe.sae
        self.threshold = probe.sae_threshold
        if probe.source == "sae" and (probe.sae is None or probe.latents is None):
            raise ExportError("an SAE-feature probe needs its SAE attached (load it with its bundle)")
        self.register_buffer("latents", probe.latents.clone() if probe.latents is not None else None)
        self.probe = probe if isinstance(probe, MlpProbe) else None  # its head_logits, in the graph
        names = ("weight", "bias") if isinstance(probe, Probe) else ()
        for name in (*names, "mean", "scale"):
            self.register_buffer(name, getattr(probe, name).float().clone())

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.model(input_ids=input_ids, use_cache=False).last_hidden_state.float()[:, 1:]  # drop BOS
        b, n, d = x.shape
        if self.sae is None:
            f = rms_normalise(x)
        else:
            f = self.sae.encode_selected(x.reshape(b * n, d), self.latents, self.threshold).float()
            f = f.reshape(b, n, -1)
        inside = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
        f = f * inside[..., None].to(f.dtype)  # padding reads as "past the end": zeros
        parts = []
        for off in self.context:
            if off == 0:
                parts.append(f)
            elif off > 0:
                parts.append(F.pad(f[:, off:], (0, 0, 0, off)))
            else:
                parts.append(F.pad(f[:, :off], (0, 0, -off, 0)))
        z = (torch.cat(parts, dim=-1) - self.mean) / self.scale
        if self.probe is not None:
            return torch.softmax(self.probe.head_logits(z), dim=-1)
        return torch.softmax(z @ self.weight.T + self.bias, dim=-1)


def export(guard: Any, out: str | Path, int8: bool = False) -> Path:
    """Write ``guard``'s active probe (with its backbone and SAE) as an ONNX graph into ``out``.

    ``guard`` is a torch :class:`~guardrail.pipeline.Guardrail`. The graph is exported in float32 (never
    fp16: residuals reach ~1e4); ``int8`` then quantises its MatMul weights (smaller and faster on a
    CPU, at some cost in agreement with the bundle's thresholds). Written to a temporary folder first.
    """
    import copy
    import dataclasses

    from guardrail.sae import Sae

    if guard.backbone.model is None:
        raise ExportError("export needs the torch runtime (load the guardrail with runtime='torch')")
    probe = guard.probe
    if not isinstance(probe, Probe | MlpProbe):
        raise ExportError(
            f"only linear and MLP heads export to ONNX; probe {guard.probe_name!r} has a {probe.head!r} head"
        )
    model = copy.deepcopy(guard.backbone._eager).float().cpu().eval()
    bits = None
    if int8:  # the blocks' products in int8 as the onnx-int8 runtime runs them (per-token activations)
        bits = activation_bits(cpu.probe().flags)
        quantize_linear(model.layers, onnx_bits=bits)
    sae = copy.deepcopy(probe.sae).float().cpu() if isinstance(probe.sae, Sae) else None
    arrays = ("weight", "bias") if isinstance(probe, Probe) else ("w1", "b1", "w2", "b2")
    cpu_probe = dataclasses.replace(
        probe,
        **{k: getattr(probe, k).cpu() for k in (*arrays, "mean", "scale")},
        latents=probe.latents.cpu() if probe.latents is not None else None,
        sae=sae,
    )
    graph = ProbeGraph(model, cpu_probe).eval()

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = torch.full((2, 16), int(guard.backbone.bos_id), dtype=torch.long)
    lengths = torch.tensor([15, 9], dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=2, max=WINDOW)
    log.info("exporting probe %s of bundle %s to ONNX", guard.probe_name, guard.bundle.manifest.name)
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (ids, lengths),
            str(tmp / GRAPH),
            input_names=["input_ids", "lengths"],
            output_names=["probs"],
            dynamic_shapes={"input_ids": {0: batch, 1: tokens}, "lengths": {0: batch}},
            custom_translation_table=ONNX_TRANSLATIONS,
            dynamo=True,
            external_data=True,
            verbose=False,
        )
    m = guard.bundle.manifest
    manifest = {
        "format_version": FORMAT_VERSION,
        "bundle": m.name,
        "probe": guard.probe_name,
        "classes": list(probe.classes),
        "context": list(probe.context),
        "margin": margin_of(probe.context),
        "layer": guard.backbone.layer,
        "backbone": {"id": m.backbone.id, "sha256": m.backbone.sha256},
        "bundle_weights_sha256": weights_fingerprint(guard.bundle.folder),
        "precision": "int8" if int8 else "fp32",
        **({"activation_bits": bits} if bits is not None else {}),
        "inputs": ["input_ids", "lengths"],
        "outputs": ["probs"],
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def weights_fingerprint(folder: Path) -> str:
    """sha256 over a bundle's arrays (probes, SAE, backbone pruning): a graph exported from other
    weights is refused."""
    import hashlib

    from guardrail.bundle import BACKBONE_FILE, PROBE_FILE, SAE_DIR

    h = hashlib.sha256()
    for f in [folder / PROBE_FILE, *sorted((folder / SAE_DIR).glob("*.safetensors")), folder / BACKBONE_FILE]:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def margin_of(context: Any) -> int:
    """How far the probe reads neighbours: the window margin its graph needs."""
    return max((abs(int(o)) for o in context), default=0)


class OnnxProbe:
    """An exported graph in an ONNX Runtime session: class probabilities of encoded texts."""

    def __init__(self, folder: str | Path, device: str = "auto"):
        import onnxruntime as ort

        self.folder = Path(folder)
        try:
            self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise ExportError(
                f"{self.folder} holds no readable {MANIFEST} (made by guardrail export-onnx)"
            ) from e
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ExportError(
                f"{self.folder}: unsupported export format {self.manifest.get('format_version')!r}"
            )
        available = ort.get_available_providers()
        if device not in ("auto", "cpu", "cuda"):
            raise ExportError(f"device must be auto, cpu or cuda, got {device!r}")
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ExportError(
                "device 'cuda' needs onnxruntime-gpu (the CUDA execution provider is not installed)"
            )
        use_cuda = device != "cpu" and "CUDAExecutionProvider" in available
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        )
        self.session = ort_session(self.folder / GRAPH, providers)
        self.provider = self.session.get_providers()[0]
        self.device = torch.device("cuda" if self.provider.startswith("CUDA") else "cpu")
        """Where the graph runs."""
        self.classes: tuple[str, ...] = tuple(self.manifest["classes"])
        self.margin = int(self.manifest["margin"])

    def check(self, bundle_name: str, probe: str, classes: Any, sha256: str | None, folder: Path) -> None:
        """Refuse a graph exported from another bundle (name or weights), probe or backbone."""
        m = self.manifest
        if m["bundle"] != bundle_name or m["probe"] != probe or tuple(m["classes"]) != tuple(classes):
            raise ExportError(
                f"{self.folder} holds probe {m['probe']!r} of bundle {m['bundle']!r}; expected probe "
                f"{probe!r} of bundle {bundle_name!r} (export it again)"
            )
        if sha256 and m["backbone"].get("sha256") not in (None, sha256):
            raise ExportError(f"{self.folder} was exported from another backbone file than the bundle's")
        if m.get("bundle_weights_sha256") != weights_fingerprint(folder):
            raise ExportError(
                f"{self.folder} was exported from other weights of bundle {bundle_name!r} (export it again)"
            )

    def probs(self, encoded: list[Encoded], batch_size: int, bos_id: int, pad_id: int) -> np.ndarray:
        """Class probabilities ``[sum T_i, C]`` of the texts' tokens, text after text."""

        def run(rows: list[list[np.ndarray]]) -> tuple[torch.Tensor, list[list[int]]]:
            ids = pad_rows([r for (r,) in rows], bos_id, pad_id)
            lengths = np.asarray([len(r) for (r,) in rows], dtype=np.int64)
            (p,) = self.session.run(None, {"input_ids": ids, "lengths": lengths})
            return torch.from_numpy(p), [[0]] * len(rows)

        flat = stitch(encoded, run, (len(self.classes),), batch_size, torch.device("cpu"), self.margin)
        return flat.numpy()
