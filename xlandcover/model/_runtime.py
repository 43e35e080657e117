"""Per-process model cache and device selection.

Dask tasks receive a model package's bytes (one graph key, shipped once per worker) and its
content hash; the first task in a process builds the torch module and every later task reuses
it. A lock per model serialises forward passes so concurrent tasks in one process do not
oversubscribe the CPU threads or the GPU, while reading and blending still overlap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import PrecisionError, UnknownDeviceError

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


_DEFAULT_THREADS: list[int] = []


def forward_threads() -> int:
    """torch intra-op threads for forward passes: :data:`TORCH_THREADS`, else torch's own
    setting as found the first time this is called in the process."""
    from .._torch import torch

    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(torch.get_num_threads())
    return TORCH_THREADS or _DEFAULT_THREADS[0]


def apply_thread_limit(threads: int | None = None) -> None:
    """Set torch's intra-op threads in the calling thread: ``threads``, default
    :func:`forward_threads`.

    OpenMP thread counts are per calling thread, and Dask workers start with
    ``OMP_NUM_THREADS=1``: setting it once at worker start-up would not reach the worker's
    task threads, which would then run the model on one core. The CPU engine runs its own
    tensor work around the model on one thread and gives forward passes these threads.
    """
    from .._torch import torch

    n = forward_threads() if threads is None else threads
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


#: Largest automatic batch, and the share of free GPU memory automatic batches may use.
MAX_AUTO_BATCH = 64
GPU_MEMORY_FRACTION = 0.5
_AUTO_BATCH: dict[tuple[str, str, tuple[int, ...], str], int] = {}


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


def auto_batch_size(
    loaded: LoadedModel, sha256: str, tile_shape: tuple[int, ...], precision: str = "fp32"
) -> int:
    """Batch size for ``loaded`` on its device, from the free memory there.

    On CUDA: one probe forward pass of two windows (channels-last, under the autocast of
    ``precision``, as predict runs them) measures the peak memory per window, and
    :func:`batch_for_memory` sizes batches from ``torch.cuda.mem_get_info`` (what this
    worker's GPU has free now). Cached per model, device, window shape and precision, so
    each worker probes once. Elsewhere: 1 on CPU (measured fastest there), 4 on MPS.
    """
    if not loaded.device.startswith("cuda"):
        return 4 if loaded.device == "mps" else 1
    key = (sha256, loaded.device, tuple(tile_shape), precision)
    if key not in _AUTO_BATCH:
        from .._torch import torch

        dev = torch.device(loaded.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        with loaded.lock, torch.inference_mode():
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            probe = torch.zeros((2, *tile_shape), device=dev)
            probe = probe.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits = loaded.module(probe)
            logits.float().softmax(dim=1)
            torch.cuda.synchronize(dev)
            per_window = (torch.cuda.max_memory_allocated(dev) - base) // 2
            free, _ = torch.cuda.mem_get_info(dev)
        _AUTO_BATCH[key] = batch_for_memory(free, int(per_window))
    return _AUTO_BATCH[key]


Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`PrecisionError`."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision must be one of {list(PRECISIONS)}, not {precision!r}: 'auto' (bf16 on "
            "GPUs that support it, fp32 elsewhere), 'fp32', 'bf16' or 'fp16'"
        )
    return precision


def resolve_precision(precision: str, device: str) -> str:
    """The precision forward passes run in on ``device``: ``"auto"`` is ``"fp16"`` on CUDA
    GPUs with tensor cores (compute capability 7.0 and later) and ``"fp32"`` elsewhere (CPU,
    MPS, older GPUs); an explicit choice is kept. Called on the worker that runs the model.

    Why fp16 and not bf16: measured with the demo models on the embedded scenes (on CPU,
    ``benchmarks/precision_labels.py``), bf16 autocast changes 0.31 % (Zion) and 0.27 %
    (Dubai) of the labels, fp16 0.044 % and 0.026 %: bf16's 8-bit mantissa flips pixels
    whose two most probable classes are within about 0.003. Both run at the same
    tensor-core speed; fp16's narrower range is guarded by the engine (a chunk whose fp16
    logits are not finite is run again in fp32).
    """
    check_precision(precision)
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        from .._torch import torch

        if torch.cuda.get_device_capability(torch.device(device)) >= (7, 0):
            return "fp16"
    return "fp32"


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
    from ._package import output_stride

    module = package.build_module(device)
    if device == "cpu" or device.startswith("cuda"):
        # NHWC convolutions: faster on CPU with oneDNN, and what cuDNN's tensor cores use
        # under autocast; the engine feeds channels-last inputs on these devices.
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    multiple = output_stride(module)
    return LoadedModel(module=module, device=device, lock=threading.Lock(), size_multiple=multiple)


_MULTIPLES: dict[str, int] = {}


def size_multiple(package: ModelPackage) -> int:
    """The multiple the sides of ``package``'s model inputs must have, without loading it.

    Recorded when a package is saved (:attr:`ModelPackage.size_multiple`); for packages
    saved before that, derived once per process from the architecture alone, built on
    torch's ``meta`` device (no weights, no memory) where the architecture allows it, else on
    CPU without loading the weights.
    """
    if package.size_multiple is not None:
        return package.size_multiple
    if package.sha256 not in _MULTIPLES:
        from .._torch import torch
        from ._package import build_architecture, output_stride

        meta = package.metadata
        try:
            with torch.device("meta"):
                module = build_architecture(meta.architecture, meta.arch_kwargs)
        except Exception:  # some encoders compute on tensors while building (e.g. mit_b0)
            module = build_architecture(meta.architecture, meta.arch_kwargs)
        _MULTIPLES[package.sha256] = output_stride(module)
    return _MULTIPLES[package.sha256]


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
