"""Where a batch job runs: an existing Dask cluster, a local one, or Dask-CUDA workers.

``scheduler`` is an existing :class:`distributed.Client`, a scheduler address
(``tcp://host:8786``), ``"local"`` (a :class:`distributed.LocalCluster` sized to the machine,
or ``dask_cuda.LocalCUDACluster`` with one worker per GPU when GPUs and dask-cuda are
present), or ``"inprocess"`` (worker threads in this process: no start-up cost, for small
jobs and tests). distributed and dask-cuda are imported only here, only when used.

Models reach workers as one graph key holding the package's bytes and are built once per
worker process (:mod:`xlandcover.model`); :class:`TorchThreads` sets torch's intra-op
threads so that workers x task threads x torch threads does not exceed the cores: forward
passes are serialised per worker, and the other task threads read, normalise and blend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import SchedulerError, SchedulerUnreachableError

log = logging.getLogger("xlandcover")

#: Seconds to wait for a scheduler address to accept a connection (a refused port fails at
#: once; an address that never answers fails after this).
CONNECT_TIMEOUT = 10
_SCHEMES = ("tcp", "tls")


@contextlib.contextmanager
def client_for(
    scheduler: Any = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler``; clusters started here stop on exit.

    Parameters
    ----------
    scheduler
        A :class:`distributed.Client`, a scheduler address (``"tcp://host:8786"``),
        ``"local"`` or ``"inprocess"`` (see the module docstring). ``"local"`` on a machine
        with CUDA GPUs and dask-cuda (``pip install "xlandcover[cuda]"``) starts
        ``dask_cuda.LocalCUDACluster`` with one worker per GPU; each builds the model once and
        takes a share of the chunks.
    n_workers
        Workers of a local cluster (one by default; with Dask-CUDA, at most one per GPU).
    threads_per_worker
        Task threads per worker (default: the cores shared among CPU workers;
        :data:`CUDA_THREADS_PER_WORKER` on GPU workers).
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, str) and "://" in scheduler:
        host, port = scheduler_address(scheduler)
        _reachable(scheduler, host, port)
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as err:  # a port that accepts connections but is no Dask scheduler
            raise _unreachable(scheduler, str(err)) from err
        with client:
            log.info("Connected to %s (dashboard: %s)", scheduler, client.dashboard_link)
            yield client
        return
    if scheduler not in ("local", "inprocess"):
        raise SchedulerError(
            f"unknown scheduler {scheduler!r}: use 'local', 'inprocess', an address "
            "'tcp://host:8786' or a distributed.Client"
        )
    cuda = (
        _cuda_cluster(n_workers=n_workers, threads_per_worker=threads_per_worker)
        if scheduler == "local"
        else None
    )
    if cuda is not None:
        with cuda as cluster, Client(cluster) as client:
            log.info(
                "Dask-CUDA cluster: %d worker(s), one per GPU (dashboard: %s)",
                len(cluster.workers),
                client.dashboard_link,
            )
            yield client
        return
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    workers = n_workers or 1
    threads = threads_per_worker or max(1, cores // workers)
    processes = scheduler == "local"
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers: glibc then hands the large
    # per-window buffers back to the OS and faults them in again, which made forward passes
    # in worker processes ~1.5x slower here (benchmarks/scaling.py). Keep glibc's default.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=processes,
            dashboard_address=":0" if processes else None,
        ) as cluster,
        Client(cluster) as client,
    ):
        if processes:
            client.register_plugin(TorchThreads(max(1, cores // workers)))
            log.info(
                "Local cluster: %d worker(s) x %d thread(s) (dashboard: %s)",
                workers,
                threads,
                client.dashboard_link,
            )
        yield client


def scheduler_address(address: str) -> tuple[str, int]:
    """Host and port of a ``tcp://host:port`` (or ``tls://``) scheduler address."""
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in _SCHEMES or not parts.hostname or port is None or port < 1:
        raise SchedulerError(
            f"scheduler address {address!r} is not of the form tcp://host:port (e.g. "
            "tcp://10.0.0.5:8786, the port the scheduler prints when it starts); or use "
            "'local' or 'inprocess'"
        )
    return parts.hostname, port


def _reachable(address: str, host: str, port: int) -> None:
    """Fail at once if nothing listens at the address (distributed would retry for 30 s)."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as err:
        raise _unreachable(address, err.strerror or str(err)) from err


def _unreachable(address: str, why: str) -> SchedulerUnreachableError:
    return SchedulerUnreachableError(
        f"no Dask scheduler answers at {address} ({why}); start one there (`dask scheduler`) "
        "and check the address and port, or use --scheduler local"
    )


class TorchThreads(WorkerPlugin):
    """Worker plugin: torch intra-op threads for the forward passes of this worker.

    Register it on clusters you start yourself: ``client.register_plugin(TorchThreads(n))``.
    Dask workers start with ``OMP_NUM_THREADS=1``; without it, forward passes use one core.
    """

    name = "xlandcover-torch-threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from ..model import _runtime as runtime

        runtime.TORCH_THREADS = self.threads


#: Task threads of each Dask-CUDA worker: while one chunk's batches run on the GPU (forward
#: passes are serialised per worker), another chunk's pixels are read and its rows written.
CUDA_THREADS_PER_WORKER = 2


def gpu_count() -> int:
    """CUDA GPUs visible to this process (0 without torch's CUDA build or a driver)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cuda_cluster(*, n_workers: int | None = None, threads_per_worker: int | None = None) -> Any:
    """A ``dask_cuda.LocalCUDACluster`` with one worker process per GPU of this machine (each
    worker sees its own GPU as ``cuda``, builds the model once and gets a share of the chunks),
    or None without GPUs or without dask-cuda (the optional extra ``xlandcover[cuda]``)."""
    count = gpu_count()
    if count == 0:
        return None
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        log.warning(
            "%d GPU(s) here but dask-cuda is not installed: one CPU-style local cluster will "
            "share the first GPU; pip install 'xlandcover[cuda]' for one worker per GPU",
            count,
        )
        return None
    return LocalCUDACluster(
        n_workers=min(n_workers or count, count),
        threads_per_worker=threads_per_worker or CUDA_THREADS_PER_WORKER,
        dashboard_address=":0",
    )
