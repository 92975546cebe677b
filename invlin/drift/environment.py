"""The environment a report was produced in: versions, machine, device, oracle."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["environment"]

_PACKAGES = (
    "invlin",
    "numpy",
    "scipy",
    "torch",
    "mpmath",
    "python-flint",
    "matplotlib",
    "dask",
    "distributed",
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu", oracle: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions of Python and the packages used, the machine, the torch ``device`` (with the GPU
    name for CUDA) and the ``oracle`` backend/precision summary given by the caller."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(torch.device(device))
            info["cuda"] = torch.version.cuda
    info["oracle"] = dict(oracle or {})
    return info
