"""Training an smp segmentation model on chips, ending in a model package.

:func:`train` reads chips lazily (cached in memory when they fit), normalises bands with
statistics of the training chips, augments batches (:mod:`xlandcover.augment`), and optimises
with AdamW under a OneCycle or cosine schedule, with gradient clipping and mixed precision on
CUDA. After every epoch it scores the validation chips (macro mIoU); the best epoch is saved as
a model package (``best.xlc``) and training stops when the score has not risen for
``patience`` epochs. ``last.pt`` holds everything needed to resume; ``history.csv``/``.json``
and ``curves.png`` record the run. Runs are reproducible on CPU for a given seed.
"""

from __future__ import annotations

import difflib
import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .augment import Augment, AugmentConfig
from .chips import Chips
from .errors import BandMismatchError, EmptySplitError, UnknownArchitectureError
from .labels import ClassIndex
from .losses import IGNORE, make_loss, median_frequency_weights
from .metrics import Report, confusion_matrix
from .package import ModelPackage, save_model
from .splits import Splits

if TYPE_CHECKING:
    import torch

#: Chip caches up to this size are held in memory for the whole run.
CACHE_LIMIT_BYTES = 4 * 2**30


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (saved in the package's metadata)."""

    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None  # a local weights file; never a download
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "combo"
    class_weights: Literal["median_frequency", "none"] = "median_frequency"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    amp: Literal["auto", "on", "off"] = "auto"
    grad_clip: float | None = 1.0
    patience: int = 8
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    sampler: Literal["uniform", "class_aware"] = "uniform"
    steps_per_epoch: int | None = None  # default: one pass over the training chips
    max_minutes: float | None = None  # stop (keeping the best epoch) after this long
    device: str = "auto"
    seed: int = 0
    window: int | None = None  # recommended predict window; default the chip size
    overlap: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch_kwargs"] = dict(self.arch_kwargs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        aug = d.get("augment", AugmentConfig())
        if isinstance(aug, Mapping):
            d["augment"] = AugmentConfig(**aug)
        elif aug is False:
            d["augment"] = None
        elif aug is True:
            d["augment"] = AugmentConfig()
        return cls(**d)


@dataclass
class TrainResult:
    """The best model, where it was written, and the per-epoch history."""

    model: ModelPackage
    path: Path
    history: pd.DataFrame
    best_epoch: int
    best_miou: float
    out_dir: Path


def train(
    splits: Splits | tuple[Chips, Chips],
    *,
    out_dir: str | Path = "runs/xlandcover",
    resume: bool = False,
    progress: bool = True,
    description: str = "",
    extra: Mapping[str, Any] | None = None,
    config: TrainConfig | None = None,
    **settings: Any,
) -> TrainResult:
    """Train a segmentation model on the train chips, scoring and early-stopping on val.

    Parameters
    ----------
    splits
        From :func:`~xlandcover.spatial_split` (its test partition is not touched), or a
        ``(train, val)`` pair of :class:`~xlandcover.chips.Chips`.
    out_dir
        Receives ``best.xlc``, ``last.pt``, ``history.csv``/``.json`` and ``curves.png``.
    resume
        Continue from ``out_dir/last.pt`` (same data and settings).
    config, **settings
        A :class:`TrainConfig`, and/or its fields as keywords (``arch="Unet"``,
        ``encoder="resnet34"``, ``loss="combo"``, ``epochs=30``, ...).
    """
    from ._torch import torch

    cfg = replace(config or TrainConfig(), **settings) if settings else (config or TrainConfig())
    train_chips, val_chips = (splits.train, splits.val) if isinstance(splits, Splits) else splits
    for name, part in (("train", train_chips), ("val", val_chips)):
        if len(part) == 0:
            raise EmptySplitError(
                f"the {name} partition is empty; training needs train chips to learn from "
                "and val chips for early stopping and the best checkpoint"
            )
    _check_names(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(cfg.device)
    _seed_everything(cfg.seed)

    index = ClassIndex(train_chips.class_ids, train_chips.unlabelled)
    n_classes = index.n
    n_bands = train_chips.n_bands
    mean, std = band_statistics(train_chips, seed=cfg.seed)
    train_data = ChipData(train_chips, index, mean, std)
    val_data = ChipData(val_chips, index, mean, std)

    model = _build_model(cfg, n_bands, n_classes).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    weights = None
    if cfg.class_weights == "median_frequency":
        weights = median_frequency_weights(train_chips.counts)
    loss_fn = make_loss(cfg.loss, n_classes=n_classes, class_weights=weights).to(device)
    augment = Augment(cfg.augment, n_bands=n_bands) if cfg.augment is not None else None
    steps = cfg.steps_per_epoch or max(1, len(train_chips) // cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(cfg, optimizer, total_steps=steps * cfg.epochs)
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    sampler = _sample_weights(train_chips) if cfg.sampler == "class_aware" else None
    rng = np.random.default_rng(cfg.seed)

    state = _State()
    if resume:
        state = _load_checkpoint(out / "last.pt", model, optimizer, scheduler, scaler, rng)
    package_kwargs: dict[str, Any] = dict(
        bands=train_chips.bands or [f"band_{i + 1}" for i in range(n_bands)],
        classes=train_chips.classes,
        normalization={"mean": mean.tolist(), "std": std.tolist()},
        window=cfg.window or train_chips.size,
        overlap=cfg.overlap,
        nodata=train_chips.sources[0].image_nodata,
        description=description,
    )

    start = time.monotonic() - state.seconds
    best_path = out / "best.xlc"
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        model.train()
        order = _epoch_order(len(train_chips), steps * cfg.batch_size, sampler, rng)
        losses = []
        bar = _progress(progress, steps, f"epoch {epoch}/{cfg.epochs}")
        for step in range(steps):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = train_data.batch(batch)
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x, y = augment(x, y)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses):.3f}", best_miou=f"{state.best:.3f}")
        report = score_chips(model, val_data, device, batch_size=cfg.batch_size)
        elapsed = time.monotonic() - start
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_miou": report.miou,
            "val_pixel_accuracy": report.pixel_accuracy,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(elapsed, 1),
        }
        state.history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_miou=f"{report.miou:.3f}")
            bar.close()
        improved = np.isfinite(report.miou) and report.miou > state.best
        if improved:
            state.best, state.best_epoch, state.stale = float(report.miou), epoch, 0
            meta = {
                "training": {**cfg.to_dict(), "epoch": epoch, "val_miou": state.best},
                "val_per_class_iou": dict(
                    zip(report.class_names, _nan_to_none(report.iou), strict=True)
                ),
                **dict(extra or {}),
            }
            save_model(model, best_path, extra=meta, overwrite=True, **package_kwargs)
        else:
            state.stale += 1
        state.epoch, state.seconds = epoch, elapsed
        _save_checkpoint(out / "last.pt", model, optimizer, scheduler, scaler, rng, state)
        _write_history(out, state.history)
        if state.stale >= cfg.patience:
            break
        if cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60:
            break
    if not best_path.exists():
        raise EmptySplitError(
            "no epoch produced a defined validation mIoU (the val chips hold no labelled "
            "pixel?); check the val partition"
        )
    from .package import load_model

    history = pd.DataFrame(state.history)
    plot_history(history, out / "curves.png")
    return TrainResult(
        model=load_model(best_path),
        path=best_path,
        history=history,
        best_epoch=state.best_epoch,
        best_miou=state.best,
        out_dir=out,
    )


class ChipData:
    """Chips as normalised tensors: ``x`` float32 ``(C, s, s)``, ``y`` int64 class indices.

    Nodata image pixels become 0 (the band mean) and :data:`IGNORE` in ``y``. Chips are read
    on first use and kept in memory when all of them fit in :data:`CACHE_LIMIT_BYTES`.
    """

    def __init__(self, chips: Chips, index: ClassIndex, mean: np.ndarray, std: np.ndarray):
        self.chips, self.index = chips, index
        self.mean = mean.astype(np.float32)[:, None, None]
        self.std = std.astype(np.float32)[:, None, None]
        nbytes = len(chips) * chips.size**2 * (chips.n_bands * 4 + 1)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = (
            {} if nbytes <= CACHE_LIMIT_BYTES else None
        )

    def __len__(self) -> int:
        return len(self.chips)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image, labels, valid = self.chips.read(i)
        x = (image.astype(np.float32) - self.mean) / self.std
        x[:, ~valid] = 0.0
        y = self.index(labels)
        y[(y >= self.index.n) | ~valid] = IGNORE
        pair = (x, y.astype(np.uint8))
        if self._cache is not None:
            self._cache[i] = pair
        return pair

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from ._torch import torch

        items = [self.item(int(i)) for i in rows]
        x = torch.from_numpy(np.stack([a for a, _ in items]))
        y = torch.from_numpy(np.stack([b for _, b in items]).astype(np.int64))
        return x, y


def band_statistics(
    chips: Chips, *, seed: int = 0, max_chips: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over the valid pixels of (up to) ``max_chips``."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(chips))[:max_chips]
    n = 0
    s = np.zeros(chips.n_bands)
    s2 = np.zeros(chips.n_bands)
    for i in rows:
        image, _, valid = chips.read(int(i))
        px = image[:, valid].astype(np.float64)
        n += px.shape[1]
        s += px.sum(axis=1)
        s2 += (px**2).sum(axis=1)
    if n == 0:
        raise EmptySplitError("the training chips hold no valid image pixel")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def score_chips(
    model: torch.nn.Module, data: ChipData, device: torch.device, *, batch_size: int = 8
) -> Report:
    """Confusion-matrix scores of ``model`` over whole chips (no augmentation)."""
    from ._torch import torch

    k = data.index.n
    cm = np.zeros((k, k), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x, y = data.batch(np.arange(i, min(i + batch_size, len(data))))
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            pred = model(x.to(device)).argmax(1).cpu().numpy()
            cm += confusion_matrix(pred, y.numpy(), range(k), ignore_index=IGNORE)
    model.train()
    classes = data.chips.classes
    return Report.from_confusion(
        cm,
        [c.id for c in classes],
        class_names=[c.name for c in classes],
        class_colors=[c.color for c in classes],
    )


def plot_history(history: pd.DataFrame, path: str | Path) -> None:
    """Training loss and validation mIoU per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history["epoch"], history["train_loss"], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(history["epoch"], history["val_miou"], "s-", color="tab:orange", label="val mIoU")
    ax2.set_ylabel("validation mIoU", color="tab:orange")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- internals -----------------------------------------------------------------------------


@dataclass
class _State:
    epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    stale: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _check_names(cfg: TrainConfig) -> None:
    from ._torch import smp

    archs = sorted(smp.MODEL_ARCHITECTURES_MAPPING)
    if cfg.arch.lower() not in archs:
        raise UnknownArchitectureError(
            f"unknown architecture {cfg.arch!r}; segmentation-models-pytorch has {archs}"
        )
    if cfg.encoder.startswith("tu-"):
        import timm

        if not timm.list_models(cfg.encoder[3:]):
            close = difflib.get_close_matches(cfg.encoder[3:], timm.list_models(), n=5)
            raise UnknownArchitectureError(
                f"unknown timm encoder {cfg.encoder!r}; close names: "
                f"{['tu-' + c for c in close]} (see timm.list_models())"
            )
        return
    names = smp.encoders.get_encoder_names()
    if cfg.encoder not in names:
        close = difflib.get_close_matches(cfg.encoder, names, n=5)
        raise UnknownArchitectureError(
            f"unknown encoder {cfg.encoder!r}; close names: {close}. smp has {len(names)} "
            "(smp.encoders.get_encoder_names()), and any timm model as 'tu-<name>'"
        )


def _build_model(cfg: TrainConfig, n_bands: int, n_classes: int) -> torch.nn.Module:
    from .package import build_architecture

    kwargs = {
        "encoder_name": cfg.encoder,
        "in_channels": n_bands,
        "classes": n_classes,
        **dict(cfg.arch_kwargs),
    }
    model = build_architecture(cfg.arch, kwargs)
    if cfg.encoder_weights:
        _load_encoder_weights(model, Path(cfg.encoder_weights))
    return model


def _load_encoder_weights(model: torch.nn.Module, path: Path) -> None:
    from ._torch import torch

    if not path.exists():
        raise FileNotFoundError(f"encoder weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    encoder: Any = model.encoder
    try:
        missing, _ = encoder.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise BandMismatchError(
            f"encoder weights {path} do not fit the encoder ({str(err).splitlines()[0]}); "
            "a first convolution trained on 3 bands does not fit other band counts"
        ) from err
    if len(missing) == len(list(encoder.state_dict())):
        raise UnknownArchitectureError(f"no tensor of {path} matches the encoder's names")


def _device(name: str) -> torch.device:
    from ._torch import torch
    from .runtime import resolve_device

    return torch.device(resolve_device(name))


def _seed_everything(seed: int) -> None:
    from ._torch import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (third-party code may use the global state)
    torch.manual_seed(seed)


def _scheduler(cfg: TrainConfig, optimizer: Any, total_steps: int) -> Any:
    from ._torch import torch

    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 2)
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    if cfg.schedule == "constant":
        return None
    raise UnknownArchitectureError(
        f"unknown schedule {cfg.schedule!r}; use 'onecycle', 'cosine' or 'constant'"
    )


def _sample_weights(chips: Chips) -> np.ndarray:
    """Chip weights favouring rare classes: each chip's rarest class's inverse frequency."""
    counts = chips.counts
    freq = counts.sum(axis=0) / max(counts.sum(), 1)
    inv = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    w = np.where(counts > 0, inv[None, :], 0.0).max(axis=1)
    return w / w.sum()


def _epoch_order(
    n: int, count: int, weights: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    if weights is not None:
        return rng.choice(n, size=count, replace=True, p=weights)
    reps = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _save_checkpoint(
    path: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    rng: np.random.Generator,
    state: _State,
) -> None:
    from ._torch import torch

    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "state": json.dumps({**asdict(state), "best": state.best}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _load_checkpoint(
    path: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    rng: np.random.Generator,
) -> _State:
    from ._torch import torch

    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (train without resume)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["torch_rng"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    return _State(**json.loads(payload["state"]))


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    (out / "history.json").write_text(json.dumps(_nan_to_none(history), indent=1))


def _nan_to_none(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _nan_to_none(v) for k, v in values.items()}
    if isinstance(values, list | tuple | np.ndarray):
        return [_nan_to_none(v) for v in values]
    if isinstance(values, float | np.floating) and not np.isfinite(values):
        return None
    return float(values) if isinstance(values, np.floating) else values
