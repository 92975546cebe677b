"""Hostile layers for the validator's isolation (not tests): each is a correct layer (``Scale``,
y = s ⊙ x, log|det| = Σ log|s|) that does one thing to the process validating it — exits,
interrupts, crashes, hangs, hogs memory, changes a global — at import, in its factory or in its
forward. :func:`scale` is the correct twin every one of them is compared with.

The validator runs them by TARGET (``tests/validate_hostile.py:exits_in_forward``) in a worker
process; importing this module has no side effect.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch
from torch import nn

__all__ = [
    "DisablesGrad",
    "ExitsInForward",
    "HogsMemory",
    "InterruptsInForward",
    "LoopsForever",
    "LoopsInInverse",
    "OsExitInForward",
    "Scale",
    "SegfaultsInForward",
    "SetsDefaultDtype",
    "disables_grad",
    "exits_in_factory",
    "exits_in_forward",
    "hogs_memory",
    "interrupts_in_forward",
    "loops_forever",
    "loops_in_inverse",
    "os_exit_in_forward",
    "scale",
    "segfaults_in_forward",
    "sets_default_dtype",
    "sets_default_dtype_in_factory",
]


class Scale(nn.Module):
    """y = s ⊙ x with s = linspace(0.5, 2, n); log|det ∂y/∂x| = Σ log|s|: no bug."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.linspace(0.5, 2.0, features, dtype=torch.float64))

    def act(self) -> None:
        """What the hostile subclasses do on every forward call."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.act()
        s = self.s.to(x.dtype)
        return x * s, s.abs().log().sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.s.to(y.dtype)
        return y / s, -s.abs().log().sum().expand(y.shape[:-1])


class ExitsInForward(Scale):
    """Calls ``sys.exit(0)`` in forward: status 0 from a layer must never end the run."""

    def act(self) -> None:
        sys.exit(0)


class InterruptsInForward(Scale):
    """Raises ``KeyboardInterrupt`` in forward (not a Ctrl-C)."""

    def act(self) -> None:
        raise KeyboardInterrupt


class OsExitInForward(Scale):
    """Ends the interpreter with ``os._exit(3)`` in forward: no exception to catch."""

    def act(self) -> None:
        os._exit(3)


class SegfaultsInForward(Scale):
    """Reads address 0 in forward: a segmentation fault in native code."""

    def act(self) -> None:
        ctypes.string_at(0)


class LoopsForever(Scale):
    """Never returns from forward."""

    def act(self) -> None:
        while True:
            pass


class LoopsInInverse(Scale):
    """Never returns from inverse; forward is correct (so checks that only call forward pass)."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            pass


class HogsMemory(Scale):
    """Allocates (and touches) 100 MiB blocks in forward until 4 GiB are held, then frees them:
    under ``--memory-limit`` an allocation fails; without a limit it passes slowly."""

    def act(self) -> None:
        blocks = [torch.ones(2**27 // 8, dtype=torch.float64) for _ in range(40)]
        del blocks


class SetsDefaultDtype(Scale):
    """Sets torch's default dtype to float64 in forward (and leaves it so)."""

    def act(self) -> None:
        torch.set_default_dtype(torch.float64)


class DisablesGrad(Scale):
    """Turns autograd off in forward (and leaves it off)."""

    def act(self) -> None:
        torch.set_grad_enabled(False)


def scale(features: int) -> Scale:
    """The correct twin."""
    return Scale(features)


def exits_in_factory(features: int) -> Scale:
    """``sys.exit(0)`` while the layer is built."""
    sys.exit(0)


def exits_in_forward(features: int) -> Scale:
    return ExitsInForward(features)


def interrupts_in_forward(features: int) -> Scale:
    return InterruptsInForward(features)


def os_exit_in_forward(features: int) -> Scale:
    return OsExitInForward(features)


def segfaults_in_forward(features: int) -> Scale:
    return SegfaultsInForward(features)


def loops_forever(features: int) -> Scale:
    return LoopsForever(features)


def loops_in_inverse(features: int) -> Scale:
    return LoopsInInverse(features)


def hogs_memory(features: int) -> Scale:
    return HogsMemory(features)


def sets_default_dtype(features: int) -> Scale:
    return SetsDefaultDtype(features)


def sets_default_dtype_in_factory(features: int) -> Scale:
    """Sets the default dtype to float64 while the layer is built."""
    torch.set_default_dtype(torch.float64)
    return Scale(features)


def disables_grad(features: int) -> Scale:
    return DisablesGrad(features)
