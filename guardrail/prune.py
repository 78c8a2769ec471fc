"""MLP pruning of the backbone: a faster reader with fewer neurons in each block's gated MLP.

Neuron ``j`` of a block adds ``h_j * W_down[:, j]`` to the residual (``h``: the gated activation the
down projection reads). Per block, the ``n`` neurons with the largest mean squared contribution
``E[h_j^2] * ||W_down[:, j]||^2`` are kept, and the down projection of the kept ones is refitted by
least squares so that they reproduce the whole MLP's output on the same inputs:
``W' = W G[:, k] (G[k, k] + lambda I)^-1``, ``G`` the Gram matrix of ``h`` over sample tokens (ridge
``lambda`` relative to the mean diagonal). Blocks are done in order, each measured on the model whose
earlier blocks are already pruned, so each block also absorbs what the earlier ones lost.

The result is data (kept indices and refitted weights, safetensors in the bundle), applied at load by
:meth:`guardrail.backbone.Backbone.load`. A pruned backbone is no longer the agent's model: a bundle
trained on one cannot piggyback an agent's forward pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail.backbone import Backbone, BackboneError, Encoded

PARTS = ("gate_proj", "up_proj", "down_proj")


@dataclass(slots=True)
class Pruning:
    """Per block: the MLP neurons kept (increasing int64 indices) and, when refitted, the down
    projection's new weight ``[d_model, n]`` float32."""

    keep: list[np.ndarray]
    down: list[np.ndarray] | None = None

    def apply(self, model: torch.nn.Module) -> None:
        """Prune ``model``'s blocks (``model.layers``) in place."""
        blocks = model.layers
        if len(self.keep) != len(blocks):
            raise BackboneError(f"MLP pruning names {len(self.keep)} blocks; the model runs {len(blocks)}")
        for i, block in enumerate(blocks):
            prune_block(block, self.keep[i], None if self.down is None else self.down[i])

    def digest(self) -> str:
        """A short hash of the kept neurons and refitted weights: names what a pruned model computes
        (the key of its cached ONNX graph)."""
        h = hashlib.sha256()
        for name, a in sorted(self.arrays().items()):
            h.update(name.encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors a bundle stores: ``mlp_keep.<i>`` and ``mlp_down.<i>``."""
        out = {f"mlp_keep.{i}": k.astype(np.int64) for i, k in enumerate(self.keep)}
        for i, w in enumerate(self.down or ()):
            out[f"mlp_down.{i}"] = np.ascontiguousarray(w, dtype=np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_blocks: int, n: int) -> Pruning:
        """Read :meth:`arrays` back, checking names, dtypes and shapes (ValueError otherwise)."""
        keep = [arrays.get(f"mlp_keep.{i}") for i in range(n_blocks)]
        down = [arrays.get(f"mlp_down.{i}") for i in range(n_blocks)]
        has_down = any(w is not None for w in down)
        expected = n_blocks * (2 if has_down else 1)
        if len(arrays) != expected or any(k is None or k.dtype != np.int64 or k.shape != (n,) for k in keep):
            raise ValueError(f"must hold mlp_keep.0..{n_blocks - 1}, {n} int64 indices each")
        if has_down:
            widths = {w.shape[0] for w in down if w is not None}
            if (
                any(w is None or w.dtype != np.float32 or w.ndim != 2 or w.shape[1] != n for w in down)
                or len(widths) != 1
            ):
                raise ValueError(f"mlp_down.<block> must be float32 [d_model, {n}] for every block")
        return cls(keep, down if has_down else None)  # type: ignore[arg-type]


def gated_mlp(block: torch.nn.Module) -> torch.nn.Module:
    """A block's MLP when it is the gated kind (``gate_proj``, ``up_proj``, ``down_proj``: Gemma, Llama,
    Qwen, Mistral...), else a clear error."""
    mlp = getattr(block, "mlp", None)
    if mlp is None or not all(isinstance(getattr(mlp, n, None), torch.nn.Linear) for n in PARTS):
        raise BackboneError("MLP pruning needs gated MLPs (gate_proj, up_proj, down_proj) in every block")
    return mlp


def prune_block(block: torch.nn.Module, keep: np.ndarray, down: np.ndarray | None = None) -> None:
    """Keep only the hidden neurons ``keep`` of ``block``'s gated MLP, in place: rows of the gate and up
    projections, columns of the down projection (or ``down`` as its new weight). A neuron's whole
    contribution goes through its own row and column, so without ``down`` the kept ones compute exactly
    what they did."""
    mlp = gated_mlp(block)
    hidden = mlp.down_proj.in_features
    keep = np.asarray(keep)
    if keep.ndim != 1 or not len(keep) or np.any(np.diff(keep) <= 0) or keep[0] < 0 or keep[-1] >= hidden:
        raise BackboneError(f"MLP pruning indices must be increasing and within 0..{hidden - 1}")
    if down is not None and tuple(down.shape) != (mlp.down_proj.out_features, len(keep)):
        raise BackboneError(
            f"refitted down projection must be [{mlp.down_proj.out_features}, {len(keep)}], "
            f"got {tuple(down.shape)}"
        )
    at = torch.from_numpy(keep.astype(np.int64))
    for name in PARTS:
        old: torch.nn.Linear = getattr(mlp, name)
        if name == "down_proj":
            w = old.weight.data[:, at] if down is None else torch.from_numpy(np.asarray(down))
        else:
            w = old.weight.data[at]
        dev, dt = old.weight.device, old.weight.dtype
        new = torch.nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None, device=dev, dtype=dt)
        new.weight.data = w.to(dev, dt).clone()
        if old.bias is not None:
            new.bias.data = old.bias.data.clone() if name == "down_proj" else old.bias.data[at].clone()
        setattr(mlp, name, new)


@torch.inference_mode()
def gram(backbone: Backbone, encoded: Sequence[Encoded], block: int, batch_size: int = 16) -> torch.Tensor:
    """Mean outer product ``E[h h^T]`` (float64 ``[hidden, hidden]``) of block ``block``'s gated MLP
    activation over the tokens of ``encoded``, read from the eager model."""
    mlp = gated_mlp(backbone._eager.layers[block])
    hidden = mlp.down_proj.in_features
    acc = torch.zeros((hidden, hidden), dtype=torch.float64)
    count = [0]

    def add(_m, args) -> None:
        h = args[0].reshape(-1, hidden).float()
        acc.add_((h.T @ h).double().cpu())
        count[0] += h.shape[0]

    hook = mlp.down_proj.register_forward_pre_hook(add)
    try:  # asking for layer taps runs the eager model, where hooks fire (a compiled graph skips them)
        backbone.residuals_flat(encoded, batch_size, layers=[backbone.layer])
    finally:
        hook.remove()
    return acc / max(count[0], 1)


def refit_down(w_down: torch.Tensor, g: torch.Tensor, keep: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares down projection ``[d_model, n]`` of the kept neurons that best reproduces the full
    one's output for activations of Gram matrix ``g``: ``W G[:, k] (G[k, k] + lambda I)^-1``."""
    k = torch.from_numpy(keep.astype(np.int64))
    w = w_down.double().cpu()
    gkk = g[k][:, k]
    lam = ridge * float(torch.diagonal(gkk).mean())
    rhs = w @ g[:, k]  # [d, n]
    sol = torch.linalg.solve(gkk + lam * torch.eye(len(k), dtype=torch.float64), rhs.T).T
    return sol.float().numpy()


def plan(
    backbone: Backbone, encoded: Sequence[Encoded], n: int, refit: bool = True, batch_size: int = 16
) -> Pruning:
    """Choose (and refit) the ``n`` neurons of each block, block after block, pruning ``backbone``'s
    model in place as it goes (measure each block on the earlier ones as they will run)."""
    keep: list[np.ndarray] = []
    down: list[np.ndarray] = []
    blocks = backbone._eager.layers
    for i in tqdm(range(len(blocks)), desc="pruning MLP blocks", unit="block"):
        mlp = gated_mlp(blocks[i])
        if not 0 < n <= mlp.down_proj.in_features:
            raise BackboneError(f"mlp_keep must be in 1..{mlp.down_proj.in_features}, got {n}")
        g = gram(backbone, encoded, i, batch_size)
        w = mlp.down_proj.weight.detach().double().cpu()
        importance = torch.diagonal(g) * w.square().sum(0)
        kept = np.sort(np.argsort(-importance.numpy(), kind="stable")[:n]).astype(np.int64)
        keep.append(kept)
        if refit:
            down.append(refit_down(w, g, kept))
        prune_block(blocks[i], kept, down[-1] if refit else None)
    return Pruning(keep, down if refit else None)
