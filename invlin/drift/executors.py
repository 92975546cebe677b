"""Executors for a sweep: in this process, or one task per configuration on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from invlin.drift.config import Configuration
from invlin.drift.results import ConfigurationResult
from invlin.drift.runner import run_configuration
from invlin.drift.vocabulary import EXECUTORS

__all__ = ["EXECUTORS", "run_dask", "run_local", "run_sweep"]


Progress = Callable[[int], None]


def run_local(
    configs: Sequence[Configuration], progress: Progress | None = None
) -> list[ConfigurationResult]:
    """Run the configurations one after the other in this process (results in input order)."""
    return [run_configuration(c, progress) for c in configs]


def run_dask(
    configs: Sequence[Configuration],
    progress: Progress | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    client: Any = None,
) -> list[ConfigurationResult]:
    """Run each configuration as one task on a Dask distributed cluster.

    ``client``: an existing ``distributed.Client`` to use; else ``scheduler`` (an address such as
    ``tcp://host:8786``) to connect to; else a ``LocalCluster`` with ``workers`` single-threaded
    workers (default: one per CPU) in separate processes (``processes=False``: threads). Results
    come back in input order and equal those of :func:`run_local` (each configuration carries
    its own seeds). ``progress`` advances by a configuration's update count when it finishes.
    Raises ImportError with the install hint when dask.distributed is missing.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - exercised only without dask
        raise ImportError(
            "--executor dask needs dask.distributed: pip install 'invlin[dask]'"
        ) from exc
    own: list[Any] = []
    try:
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                )
                own.append(cluster)
                client = Client(cluster)
            own.insert(0, client)
        futures = [
            client.submit(run_configuration, c, key=f"invlin-{i}-{c.label}", pure=False)
            for i, c in enumerate(configs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[ConfigurationResult | None] = [None] * len(configs)
        for fut in as_completed(futures):
            i = index[fut.key]
            results[i] = fut.result()
            if progress is not None:
                progress(configs[i].updates)
        return [r for r in results if r is not None]
    finally:
        for obj in own:
            obj.close()


def run_sweep(
    configs: Sequence[Configuration],
    *,
    executor: str = "local",
    progress: Progress | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> list[ConfigurationResult]:
    """Run a sweep with ``executor`` ("local" or "dask"); see :func:`run_dask` for the options."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if executor == "local":
        if scheduler is not None:
            raise ValueError("scheduler is only used with executor='dask'")
        return run_local(configs, progress)
    return run_dask(configs, progress, scheduler=scheduler, workers=workers)
