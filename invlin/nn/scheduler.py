"""P4Scheduler: merges P4Inv perturbations on schedule, resets their optimizer state, records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from invlin._validation import positive_int
from invlin.nn.p4 import P4InvLinear, merge_layers

__all__ = ["MergeHistory", "P4Scheduler", "reset_optimizer_state"]


def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]) -> None:
    """Give ``params`` the state a fresh ``optimizer`` of the same kind would give them.

    Works for any torch optimizer: optimizers that create state lazily (SGD, Adam, AdamW,
    RMSprop, …) just lose the entry; those that create it eagerly (e.g. Adagrad) get the state a
    new instance built with the same hyper-parameters assigns. Other parameters are untouched.
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for p in params:
        if id(p) not in group_of:
            raise ValueError("params must be parameters of the optimizer")
        optimizer.state.pop(p, None)
        group = {k: v for k, v in group_of[id(p)].items() if k in optimizer.defaults}
        probe = torch.nn.Parameter(p.detach().clone())
        fresh = type(optimizer)([probe], **group)
        if fresh.state.get(probe):
            optimizer.state[p] = {
                k: (t.clone() if isinstance(t, torch.Tensor) else t)
                for k, t in fresh.state[probe].items()
            }


_ROWS = ("u", "v", "c", "logabsdet", "sign", "step")  # MergeHistory: one value per merge


def _float64(t: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of ``t``."""
    return t.detach().double().cpu().numpy().copy()


@dataclass
class MergeHistory:
    """The merges of each P4Inv layer during training, for exact replay against the oracle.

    For each layer name: ``a0`` (the matrix when recording began, float64 ``(n, n)``) and one
    row per merge of ``u``, ``v`` (float64 ``(k, n)``, the values merged), ``c``, the tracked
    ``logabsdet`` and ``sign`` after the merge, and the scheduler ``step``.
    """

    layers: dict[str, dict[str, list]] = field(default_factory=dict)

    def start(self, name: str, layer: P4InvLinear) -> None:
        self.layers[name] = {"a0": [_float64(layer.weight)], **{k: [] for k in _ROWS}}

    def record(
        self, name: str, layer: P4InvLinear, u: np.ndarray, v: np.ndarray, c: float, step: int
    ) -> None:
        row = (u, v, c, float(layer.logabsdet), int(layer.sign), step)
        for key, value in zip(_ROWS, row, strict=True):
            self.layers[name][key].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{"<layer>/<field>": array}`` mapping (what :meth:`save` writes)."""
        out: dict[str, np.ndarray] = {}
        for name, rec in self.layers.items():
            n = rec["a0"][0].shape[0]
            out[f"{name}/a0"] = rec["a0"][0]
            for key in _ROWS:
                rows = np.array(rec[key], dtype=np.int64 if key in ("sign", "step") else np.float64)
                out[f"{name}/{key}"] = rows.reshape(-1, n) if key in ("u", "v") else rows
        return out

    def save(self, path: str | Path) -> Path:
        """Write the history as a ``.npz`` file and return its path."""
        path = Path(path)
        np.savez_compressed(path, format_version=np.array(1), **self.arrays())
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @staticmethod
    def load(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
        """Read a saved history as ``{layer: {field: array}}``."""
        with np.load(path) as data:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key in data.files:
                if key == "format_version":
                    continue
                name, fld = key.rsplit("/", 1)
                out.setdefault(name, {})[fld] = data[key]
        return out


class P4Scheduler:
    """Merge schedule for every :class:`P4InvLinear` in ``model``; call :meth:`step` after
    ``optimizer.step()``.

    Every ``merge_every`` steps each layer's perturbation is merged (guarded); every
    ``force_every`` steps the guard's bounds are skipped (never for zero or non-finite c). After a
    merge the optimizer state of the parameters named in ``reset`` (default ``("v",)``: keeping
    u's moments helped in the P4Inv paper) is reset to a fresh optimizer's, for any optimizer.
    Each merge runs the layer's own drift monitor (on by default: a probe every 8 merges, see
    :meth:`~invlin.nn.DriftMonitor.default`; a layer built with ``monitor=None`` has none). Every
    ``correct_every`` steps (when set) each layer's drift monitor runs even without a merge.
    With ``record=True`` each merge's (u, v, c) goes into :attr:`history` for replay.

    Off the CPU the merge decisions of all layers are read on the host in one transfer per step
    (one device wait, not one per layer); a subclass that overrides ``merge`` is merged by it.

    >>> model = torch.nn.Sequential(P4InvLinear(4), P4InvLinear(4))
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    >>> sched = P4Scheduler(model, opt)
    >>> len(sched.layers)
    2
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        merge_every: int = 1,
        force_every: int | None = 10,
        *,
        reset: tuple[str, ...] = ("v",),
        correct_every: int | None = None,
        record: bool = False,
    ):
        positive_int(merge_every, "merge_every")
        for name, value in (("force_every", force_every), ("correct_every", correct_every)):
            if value is not None:
                positive_int(value, name)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(reset, str):  # one name
            reset = (reset,)
        if not (
            isinstance(reset, (tuple, list, set, frozenset))
            and all(isinstance(r, str) for r in reset)
            and set(reset) <= {"u", "v", "bias"}
        ):
            raise ValueError(f"reset must name some of 'u', 'v', 'bias', got {reset!r}")
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, P4InvLinear)}
        if not self.layers:
            raise ValueError("model must contain at least one P4InvLinear layer")
        self.optimizer = optimizer
        self.merge_every = merge_every
        self.force_every = force_every
        self.correct_every = correct_every
        self.reset = tuple(reset)
        self.steps = 0
        self._lazy: tuple = (None, set())  # (optimizer, ids of params it keeps no fresh state for)
        self.history: MergeHistory | None = MergeHistory() if record else None
        if self.history is not None:
            for name, layer in self.layers.items():
                self.history.start(name, layer)

    def step(self) -> dict[str, bool]:
        """Advance one training step; returns ``{layer name: merged}`` for this step."""
        self.steps += 1
        merged: dict[str, bool] = {}
        if self.steps % self.merge_every == 0:
            force = self.force_every is not None and self.steps % self.force_every == 0
            snapshots: dict[str, tuple] = {}
            if self.history is not None:
                for name, layer in self.layers.items():
                    c = float(layer.factor().detach())
                    snapshots[name] = (_float64(layer.u), _float64(layer.v), c)
            # every layer's decision read together (one transfer off the CPU), then each applied
            done = merge_layers(list(self.layers.values()), force)
            merged = dict(zip(self.layers, done, strict=True))
            optimized = {id(q) for g in self.optimizer.param_groups for q in g["params"]}
            for name, layer in self.layers.items():
                if not merged[name]:
                    continue
                params = [getattr(layer, p) for p in self.reset]
                self._reset_state([p for p in params if p is not None and id(p) in optimized])
                if name in snapshots:
                    self.history.record(name, layer, *snapshots[name], step=self.steps)
        if self.correct_every is not None and self.steps % self.correct_every == 0:
            for layer in self.layers.values():
                layer.check_drift()
        return merged

    def _reset_state(self, params: list[torch.Tensor]) -> None:
        """:func:`reset_optimizer_state` for ``params``; a parameter for which a fresh optimizer
        created no state (lazy optimizers: SGD, Adam, AdamW, RMSprop, …) just loses its entry
        at later resets, without building a fresh optimizer each time."""
        opt = self.optimizer
        if self._lazy[0] is not opt:
            self._lazy = (opt, set())
        lazy = self._lazy[1]
        slow = [p for p in params if id(p) not in lazy]
        for p in params:
            if id(p) in lazy:
                opt.state.pop(p, None)
        if slow:
            reset_optimizer_state(opt, slow)
            lazy.update(id(p) for p in slow if not opt.state.get(p))

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """Each layer's merge / refusal / correction / refresh counters."""
        return {name: layer.counters for name, layer in self.layers.items()}
