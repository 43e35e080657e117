"""Per-process model cache and device selection.

Dask tasks receive a model package's bytes (one graph key, shipped once per worker) and its
content hash; the first task in a process builds the torch module and every later task reuses
it. A lock per model serialises forward passes so concurrent tasks in one process do not
oversubscribe the CPU threads or the GPU, while reading and blending still overlap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UnknownDeviceError

if TYPE_CHECKING:
    import torch

    from ._package import ModelPackage


@dataclass
class LoadedModel:
    module: torch.nn.Module
    device: str
    lock: threading.Lock
    #: The side of model inputs must be a multiple of this (the encoder's output stride).
    size_multiple: int


_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
#: How many times a module was built in this process, per package hash (tests read it).
LOAD_COUNTS: dict[str, int] = {}


#: torch intra-op threads for forward passes in this process (set per worker by
#: :class:`xlandcover.jobs.TorchThreads`); None leaves torch's own setting.
TORCH_THREADS: int | None = None


def apply_thread_limit() -> None:
    """Apply :data:`TORCH_THREADS` in the calling thread.

    OpenMP thread counts are per calling thread, and Dask workers start with
    ``OMP_NUM_THREADS=1``: setting it once at worker start-up would not reach the worker's
    task threads, which would then run the model on one core.
    """
    if TORCH_THREADS is None:
        return
    from .._torch import torch

    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)


#: Largest automatic batch, and the share of free GPU memory automatic batches may use.
MAX_AUTO_BATCH = 64
GPU_MEMORY_FRACTION = 0.5
_AUTO_BATCH: dict[tuple[str, str, tuple[int, ...]], int] = {}


def batch_for_memory(
    free_bytes: int,
    per_window_bytes: int,
    *,
    fraction: float = GPU_MEMORY_FRACTION,
    cap: int = MAX_AUTO_BATCH,
) -> int:
    """Windows per forward pass whose activations fit in ``fraction`` of the free memory."""
    if per_window_bytes <= 0:
        return cap
    return max(1, min(cap, int(free_bytes * fraction) // per_window_bytes))


def auto_batch_size(loaded: LoadedModel, sha256: str, tile_shape: tuple[int, ...]) -> int:
    """Batch size for ``loaded`` on its device, from the free memory there.

    On CUDA: one probe forward pass of two windows measures the peak memory per window, and
    :func:`batch_for_memory` sizes batches from ``torch.cuda.mem_get_info`` (what this
    worker's GPU has free now). Cached per model, device and window shape, so each worker
    probes once. Elsewhere: 1 on CPU (measured fastest there), 4 on MPS.
    """
    if not loaded.device.startswith("cuda"):
        return 4 if loaded.device == "mps" else 1
    key = (sha256, loaded.device, tile_shape)
    if key not in _AUTO_BATCH:
        from .._torch import torch

        dev = torch.device(loaded.device)
        with loaded.lock, torch.inference_mode():
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            probe = torch.zeros((2, *tile_shape), device=dev)
            loaded.module(probe).float().softmax(dim=1)
            torch.cuda.synchronize(dev)
            per_window = (torch.cuda.max_memory_allocated(dev) - base) // 2
            free, _ = torch.cuda.mem_get_info(dev)
        _AUTO_BATCH[key] = batch_for_memory(free, int(per_window))
    return _AUTO_BATCH[key]


def resolve_device(device: str) -> str:
    """``"auto"`` -> the best available device; otherwise check ``device`` exists here."""
    from .._torch import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UnknownDeviceError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UnknownDeviceError(
                f"device {device!r} was asked for but this torch build or machine has no CUDA "
                "GPU; use device='cpu' or device='auto'"
            )
        if dev.index is not None and dev.index >= count:
            raise UnknownDeviceError(
                f"device {device!r} does not exist: this machine has {count} CUDA GPU(s), "
                f"cuda:0..cuda:{count - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UnknownDeviceError(f"device {device!r} is not available here; use 'cpu'")
    elif dev.type != "cpu":
        raise UnknownDeviceError(
            f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return str(dev)


def get_model(source: bytes | ModelPackage, sha256: str, device: str) -> LoadedModel:
    """The module of a package (its bytes, or the parsed package) on ``device``, built once
    per process and reused by every later call with the same hash and device."""
    key = (sha256, device)
    loaded = _CACHE.get(key)
    if loaded is not None:
        return loaded
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            from ._package import package_from_bytes

            package = package_from_bytes(source) if isinstance(source, bytes) else source
            loaded = _load(package, device)
            _CACHE[key] = loaded
            LOAD_COUNTS[sha256] = LOAD_COUNTS.get(sha256, 0) + 1
    return loaded


def _load(package: ModelPackage, device: str) -> LoadedModel:
    from .._torch import torch

    module = package.build_module(device)
    if device == "cpu":
        # NHWC convolutions are faster on CPU with oneDNN.
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    # Windows are kept to multiples of the encoder's output stride even where smp would accept
    # other sizes (its Unet then interpolates in the decoder, misaligning skip connections).
    encoder = getattr(module, "encoder", None)
    multiple = int(getattr(encoder, "output_stride", 1) or 1)
    return LoadedModel(module=module, device=device, lock=threading.Lock(), size_multiple=multiple)


def forget(sha256: str) -> None:
    """Drop the modules of one package from this process's cache (e.g. a validation
    candidate during training, which is never used again)."""
    with _CACHE_LOCK:
        for key in [k for k in _CACHE if k[0] == sha256]:
            del _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded model in this process (tests; freeing GPU memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        LOAD_COUNTS.clear()
