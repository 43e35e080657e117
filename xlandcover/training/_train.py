"""Training an smp segmentation model on chips, ending in a model package.

:func:`train` runs in named steps around one checkpointable state (:class:`_Run`): *configure*
(settings from the data with ``recipe="auto"``, band statistics, model, loss, optimiser),
*epoch* (augmented batches, AdamW, a learning-rate schedule by optimiser step, gradient
clipping, mixed precision on CUDA, an exponential moving average of the weights) and *end of
epoch* (validation, checkpoint, log line, time budget). Validation scores the validation chips
through the seamless predictor at the package's window and overlap, so the checkpoint is
chosen by the maps users get. The best one is saved as a model package (``best.xlc``);
``last.pt`` holds everything needed to resume; ``history.csv``/``.json``, ``curves.png`` and
``training_report.json`` record the run. At the end a per-pixel random forest is scored on
the same validation pixels and compared. Runs are reproducible on CPU for a given seed
(unless ``max_minutes`` sizes the schedule from the measured speed).
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._compat import renamed_arguments, renamed_settings, warn_deprecated
from .._files import atomic_write
from ..errors import (
    BandMismatchError,
    EmptySplitError,
    InputNotFoundError,
    ScheduleCutWarning,
    TrainingSettingsError,
    UnknownArchitectureError,
    WeakModelWarning,
)
from ..evaluation._metrics import Report
from ..io._labels import ClassIndex
from ..model._package import (
    ARCHITECTURES,
    NODATA_LABEL,
    ModelPackage,
    band_range,
    known_architecture,
    package_model,
    save_model,
)
from ..model._spectral import resolve_indices
from ._augment import Augment, AugmentConfig
from ._chips import Chips
from ._losses import make_loss, median_frequency_weights
from ._recipe import (
    FIXED_DEFAULTS,
    DataProfile,
    auto_settings,
    bounded_class_weights,
    validation_cost_px,
)
from ._splits import Splits

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Steps of a long first epoch timed to size a time-budgeted schedule early (the first few
#: warm up: oneDNN primitives, caches).
PROBE_STEPS = (5, 25)

#: The clock that times epochs and validations (tests replace it).
_clock = time.monotonic

#: Chip caches up to this size are held in memory for the whole run.
CACHE_LIMIT_BYTES = 4 * 2**30

Recipe = Literal["auto", "none"]


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (saved, resolved, in the package's metadata).

    Settings left at ``None`` are chosen by the recipe: from the data with ``recipe="auto"``
    (:func:`xlandcover.training.auto_settings`), or fixed defaults with ``recipe="none"``.
    """

    recipe: Recipe = "auto"
    architecture: str | None = None  # an smp architecture ("Unet"), or a registered one
    encoder: str | None = None  # an smp encoder or "tu-" + a timm model
    encoder_weights: str | None = None  # a local weights file; never a download
    arch_kwargs: Mapping[str, Any] | None = None
    pixel_branch: int | None = None  # width of the per-pixel 1x1 branch; 0: none
    #: spectral indices the network computes from its bands (names of
    #: :data:`xlandcover.model.INDICES`, or {name: [band_a, band_b]}); []: none
    indices: list[str] | dict[str, list[str]] | None = None
    loss: str | None = None
    class_weights: Literal["bounded", "median_frequency", "none"] | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None  # default: one pass over the training chips
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # a name of SCHEDULES: onecycle, cosine, poly, constant
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: momentum 0.9, Nesterov (with "poly")
    ema: float | None = None  # decay of the weights' moving average; 0: off
    amp: Literal["auto", "on", "off"] = "auto"
    grad_clip: float | None = 1.0
    patience: int | None = None  # validations without improvement before stopping; 0: never
    augment: AugmentConfig | bool | None = None  # False: no augmentation
    sampler: Literal["uniform", "class_aware"] = "uniform"
    normalization: Literal["standard", "robust"] | None = None
    val_every: int | None = None  # epochs between validations
    max_minutes: float | None = None  # time budget: sizes the schedule, then stops
    device: str = "auto"
    seed: int = 0
    window: int | None = None  # predict window, validated; default the chip size
    overlap: int | None = None

    @property
    def arch(self) -> str | None:
        """Deprecated name of :attr:`architecture`."""
        warn_deprecated("TrainConfig.arch is now TrainConfig.architecture")
        return self.architecture

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch_kwargs"] = None if self.arch_kwargs is None else dict(self.arch_kwargs)
        if isinstance(self.augment, AugmentConfig):
            d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = renamed_settings(dict(d), RENAMED_SETTINGS, "training settings")
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TrainingSettingsError(
                    f"unknown training setting {key!r}{hint} Known settings: {known}"
                )
        d = dict(d)
        aug = d.get("augment")
        if isinstance(aug, Mapping):
            d["augment"] = AugmentConfig(**aug)
        return cls(**d)


# 0.1's spellings of TrainConfig's fields (TOML [train], train(**settings), TrainConfig(...))
RENAMED_SETTINGS = {"arch": "architecture"}
TrainConfig.__init__ = renamed_arguments(**RENAMED_SETTINGS)(TrainConfig.__init__)  # type: ignore[method-assign]


@dataclass
class TrainResult:
    """The best model, where it was written, the history and the end-of-run comparison."""

    model: ModelPackage
    path: Path
    history: pd.DataFrame
    best_epoch: int
    best_miou: float
    out_dir: Path
    #: The resolved settings, and why the recipe chose each.
    settings: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    #: Validation scores of the best checkpoint (seamless predictor) and of the forest.
    val_report: Report | None = None
    forest_report: Report | None = None
    #: Per class: share of the validation pixels in the reference and in the map.
    class_shares: pd.DataFrame | None = None
    #: The fitted softmax temperature and the calibration error before and after.
    calibration: dict[str, float] = field(default_factory=dict)

    @property
    def beats_forest(self) -> bool | None:
        if self.forest_report is None or self.val_report is None:
            return None
        return bool(self.val_report.miou > self.forest_report.miou)

    def __repr__(self) -> str:
        forest = (
            ""
            if self.forest_report is None
            else f", per-pixel forest {self.forest_report.miou:.3f}"
        )
        return (
            f"<TrainResult: best epoch {self.best_epoch}, validation mIoU {self.best_miou:.3f}"
            f"{forest} -> {self.path}>"
        )


def train(
    splits: Splits | tuple[Chips, Chips],
    *,
    out_dir: str | Path = "runs/xlandcover",
    resume: bool = False,
    progress: bool = True,
    description: str = "",
    extra: Mapping[str, Any] | None = None,
    config: TrainConfig | None = None,
    compare_forest: bool = True,
    **settings: Any,
) -> TrainResult:
    """Train a segmentation model on the train chips, validating on val.

    Parameters
    ----------
    splits
        From :func:`~xlandcover.spatial_split` (its test partition is not touched), or a
        ``(train, val)`` pair of :class:`~xlandcover.training.Chips`.
    out_dir
        Receives ``best.xlc``, ``last.pt``, ``history.csv``/``.json``, ``curves.png`` and
        ``training_report.json``.
    resume
        Continue from ``out_dir/last.pt`` (same data and settings).
    config, **settings
        A :class:`TrainConfig`, and/or its fields as keywords (``recipe="auto"``,
        ``architecture="Unet"``, ``encoder="resnet34"``, ``epochs=30``, ``max_minutes=20``,
        ...).
        Unset settings come from the recipe (``recipe="auto"``: chosen from the data).
    compare_forest
        Score a per-pixel random forest on the same validation pixels at the end, and warn
        (:class:`~xlandcover.errors.WeakModelWarning`) when the network does not beat it.
    """
    base = config or TrainConfig()
    settings = renamed_settings(settings, RENAMED_SETTINGS, "train()")
    unknown = set(settings) - {f.name for f in fields(TrainConfig)}
    if unknown:
        TrainConfig.from_dict(settings)  # raises, naming the nearest setting
    cfg_in = replace(base, **settings) if settings else base
    train_chips, val_chips = (splits.train, splits.val) if isinstance(splits, Splits) else splits
    for name, part in (("train", train_chips), ("val", val_chips)):
        if len(part) == 0:
            raise EmptySplitError(
                f"the {name} partition is empty; training needs train chips to learn from "
                "and val chips for validation and the best checkpoint"
            )
    profile = DataProfile.from_chips(train_chips, val_chips)
    cfg, reasons = resolve_config(cfg_in, profile)
    _check_names(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        (out / "best.xlc").unlink(missing_ok=True)  # never mistake an old run's model for ours
    log.info("training settings (recipe %s): %s", cfg.recipe, _describe(cfg, reasons))

    run = _Run(cfg, reasons, profile, train_chips, val_chips, out, description, extra)
    if resume:
        run.load_checkpoint()
    while not run.finished:
        run.epoch(progress)
        run.end_of_epoch()
    return run.finish(compare_forest)


def resolve_config(cfg: TrainConfig, profile: DataProfile) -> tuple[TrainConfig, dict[str, str]]:
    """``cfg`` with every unset setting filled by its recipe, and the recipe's reasons."""
    if cfg.recipe not in ("auto", "none"):
        raise TrainingSettingsError(f"recipe must be 'auto' or 'none', not {cfg.recipe!r}")
    if cfg.recipe == "auto":
        chosen, why = auto_settings(profile)
    else:
        chosen, why = dict(FIXED_DEFAULTS), {}
        chosen["steps_per_epoch"] = None
        chosen["window"], chosen["overlap"] = profile.chip_size, None
    filled = {}
    reasons = {}
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if value is None and f.name in chosen:
            filled[f.name] = chosen[f.name]
            if f.name in why:
                reasons[f.name] = why[f.name]
        elif value is not None and f.name in chosen:
            reasons[f.name] = "given"
    out = replace(cfg, **filled)
    if out.augment is None or out.augment is True:
        out = replace(out, augment=AugmentConfig())
    _check_values(out)
    return out, reasons


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _State:
    """Everything besides tensors that a resumed run needs (JSON in ``last.pt``)."""

    epoch: int = 0
    step: int = 0
    epochs: int = 0  # planned; a time budget may lower it after the first epoch
    #: optimiser steps of the schedule when a time budget sized it (the last epoch may be
    #: shorter than the others); 0: epochs x steps per epoch
    total_steps: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    stale: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    planned: int = 0  # epochs before any time budget
    at_last_epoch: float = 0.0  # seconds elapsed when the latest epoch began
    last_train_seconds: float = 0.0
    last_val_seconds: float = 0.0
    validations: int = 0
    stopped: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


class _Run:
    """One training run: configured once, then epochs and end-of-epoch steps."""

    def __init__(
        self,
        cfg: TrainConfig,
        reasons: dict[str, str],
        profile: DataProfile,
        train_chips: Chips,
        val_chips: Chips,
        out: Path,
        description: str,
        extra: Mapping[str, Any] | None,
    ) -> None:
        from .._torch import torch
        from ..model._runtime import resolve_device

        self.cfg, self.reasons, self.profile = cfg, reasons, profile
        self.train_chips, self.val_chips, self.out = train_chips, val_chips, out
        self.extra = dict(extra or {})
        self.device = torch.device(resolve_device(cfg.device))
        _seed_everything(cfg.seed)

        index = ClassIndex(train_chips.class_ids, train_chips.ignore_values)
        self.n_classes, n_bands = index.n, train_chips.n_bands
        mean, std = band_statistics(
            train_chips, seed=cfg.seed, robust=cfg.normalization == "robust"
        )
        self.data = ChipData(train_chips, index, mean, std)
        self.data.preload()
        self.arch_kwargs = {
            "encoder_name": cfg.encoder,
            "in_channels": n_bands,
            "classes": self.n_classes,
            **dict(cfg.arch_kwargs or {}),
        }
        if cfg.pixel_branch:
            self.arch_kwargs["pixel_branch"] = int(cfg.pixel_branch)
        bands = train_chips.bands or [f"band_{i + 1}" for i in range(n_bands)]
        if cfg.indices:
            found = resolve_indices(bands, cfg.indices)
            self.arch_kwargs["indices"] = {
                "names": [name for name, _, _ in found],
                "pairs": [[a, b] for _, a, b in found],
                "mean": mean.tolist(),
                "std": std.tolist(),
            }
        self.model = _build_model(cfg, self.arch_kwargs).to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = _Ema(self.model, cfg.ema or 0.0)
        self.loss_fn = make_loss(
            cfg.loss or "combo",
            n_classes=self.n_classes,
            class_weights=_class_weights(cfg.class_weights, train_chips.counts),
        ).to(self.device)
        assert isinstance(cfg.augment, AugmentConfig) or cfg.augment is False
        self.augment = Augment(cfg.augment, n_bands=n_bands) if cfg.augment else None
        assert cfg.batch_size is not None and cfg.epochs is not None
        self.steps = cfg.steps_per_epoch or max(1, len(train_chips) // cfg.batch_size)
        self._last_steps = self.steps  # optimiser steps of the latest epoch
        params, lr, decay = self.model.parameters(), cfg.lr or 0.0, cfg.weight_decay or 0.0
        self.optimizer: torch.optim.Optimizer
        if cfg.optimizer == "sgd":  # momentum 0.9, Nesterov: the DeepLabV3+ recipes ("poly")
            self.optimizer = torch.optim.SGD(
                params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay
            )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=decay)
        self.schedule = SCHEDULES[cfg.schedule or "onecycle"]
        self.use_amp = cfg.amp == "on" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.use_amp and self.amp_dtype == torch.float16
        )
        self.sample_weights = _sample_weights(train_chips) if cfg.sampler == "class_aware" else None
        self.rng = np.random.default_rng(cfg.seed)
        self.state = _State(epochs=cfg.epochs, planned=cfg.epochs)
        self.package_kwargs: dict[str, Any] = dict(
            bands=bands,
            classes=train_chips.classes,
            normalization={"mean": mean.tolist(), "std": std.tolist()},
            window=cfg.window or train_chips.size,
            overlap=cfg.overlap,
            nodata=train_chips.sources[0].image_nodata,
            description=description,
            architecture=cfg.architecture,
            arch_kwargs=self.arch_kwargs,
            input_range=band_range(train_chips, seed=cfg.seed),
        )
        self.start = _clock()
        self.best_path = out / "best.xlc"
        self.last_report: Report | None = None

    # -- steps --------------------------------------------------------------------------------

    @property
    def schedule_steps(self) -> int:
        """Optimiser steps of the learning-rate schedule."""
        return self.state.total_steps or self.state.epochs * self.steps

    @property
    def finished(self) -> bool:
        return bool(self.state.stopped) or self.state.epoch >= self.state.epochs

    def epoch(self, progress: bool) -> None:
        from .._torch import torch

        cfg, st = self.cfg, self.state
        assert cfg.batch_size is not None
        self.model.train()
        t0 = _clock()
        st.at_last_epoch, st.last_val_seconds = self.elapsed, 0.0
        order = _epoch_order(
            len(self.train_chips), self.steps * cfg.batch_size, self.sample_weights, self.rng
        )
        losses = []
        total = self.schedule_steps
        n_steps = max(1, min(self.steps, total - st.step))
        bar = _progress(progress, n_steps, f"epoch {st.epoch + 1}/{st.epochs}")
        probe = self._probes_budget()
        k = 0
        while k < n_steps:
            if probe and k == PROBE_STEPS[0]:
                t_probe = _clock()
            if probe and k == PROBE_STEPS[1]:
                per_step = (_clock() - t_probe) / (PROBE_STEPS[1] - PROBE_STEPS[0])
                total = self._fit_budget_early(per_step)
                n_steps = max(k, min(self.steps, total - st.step + k))
            assert cfg.lr is not None
            lr = cfg.lr * self.schedule(st.step / max(total - 1, 1))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = self.data.batch(order[k * cfg.batch_size : (k + 1) * cfg.batch_size])
            x, y = x.to(self.device), y.to(self.device)
            if self.augment is not None:
                x, y = self.augment(x, y)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                loss = self.loss_fn(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.ema.update(self.model)
            st.step += 1
            k += 1
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses):.3f}", best_miou=f"{st.best:.3f}")
        if bar is not None:
            bar.close()
        st.epoch += 1
        st.last_train_seconds = _clock() - t0
        self._last_steps = n_steps
        st.train_seconds += st.last_train_seconds
        self._row = {
            "epoch": st.epoch,
            "step": st.step,
            "train_loss": float(np.mean(losses)),
            "lr": lr,
        }

    def end_of_epoch(self) -> None:
        cfg, st = self.cfg, self.state
        last = st.epoch >= st.epochs
        report = None
        if last or st.epoch == 1 or st.epoch % (cfg.val_every or 1) == 0:
            t0 = _clock()
            report = self.validate()
            st.last_val_seconds = _clock() - t0
            st.val_seconds += st.last_val_seconds
            st.validations += 1
        row = {
            **self._row,
            "val_miou": np.nan if report is None else report.miou,
            "val_pixel_accuracy": np.nan if report is None else report.pixel_accuracy,
        }
        if report is not None:
            if np.isfinite(report.miou) and report.miou > st.best:
                st.best, st.best_epoch, st.stale = float(report.miou), st.epoch, 0
                self._save_best(report)
            else:
                st.stale += 1
        st.seconds = self.elapsed
        row["seconds"] = round(st.seconds, 1)
        st.history.append(row)
        log.info(
            "epoch %d/%d: train loss %.3f, validation mIoU %s (best %.3f at epoch %d), "
            "lr %.2e, %.0f s",
            st.epoch, st.epochs, row["train_loss"],
            "-" if report is None else f"{report.miou:.3f}", st.best, st.best_epoch,
            row["lr"], st.seconds,
        )  # fmt: skip
        if cfg.patience and st.stale >= cfg.patience:
            st.stopped = f"no improvement for {cfg.patience} validations"
            log.info("stopping early at epoch %d: %s", st.epoch, st.stopped)
        self._fit_budget()
        self._save_checkpoint()
        _write_history(self.out, st.history)

    def validate(self) -> Report:
        """Scores of the current (averaged) weights through the seamless predictor."""
        from ..evaluation._evaluate import evaluate
        from ..model._runtime import forget

        package = package_model(self.ema.module, **self.package_kwargs)
        try:
            report = evaluate(model=package, partition=self.val_chips, device=str(self.device))
        finally:
            forget(package.sha256)
        self.last_report = report
        return report

    def finish(self, compare_forest: bool) -> TrainResult:
        from ..model._package import load_model

        st = self.state
        if not self.best_path.exists():
            raise EmptySplitError(
                "no validation produced a defined mIoU (the val chips hold no labelled pixel?); "
                "check the val partition"
            )
        history = pd.DataFrame(st.history)
        plot_history(history, self.out / "curves.png")
        model = load_model(self.best_path)
        report = _best_report(model, self)
        calibration, calibrated = self.calibrate(model)
        if calibration:
            # the temperature reweighs the probabilities blended where windows overlap, so
            # the calibrated map can differ from the one validated: score the map users get
            report, model = self._rescore(calibrated, report, calibration)
        from ..evaluation._gallery import (
            save_results,  # image, reference and prediction of val chips
        )

        save_results(model, self.val_chips, self.out / "results.png", device=str(self.device))
        shares = class_shares(report)
        forest = None
        if compare_forest:
            forest = _forest_on_val(self.train_chips, self.val_chips, self.cfg.seed)
        result = TrainResult(
            model=model,
            path=self.best_path,
            history=history,
            best_epoch=st.best_epoch,
            best_miou=float(report.miou),
            out_dir=self.out,
            settings=self.cfg.to_dict(),
            reasons=self.reasons,
            val_report=report,
            forest_report=forest,
            class_shares=shares,
            calibration=calibration,
        )
        _write_report(self.out / "training_report.json", result, self.profile)
        log.info("class shares on the validation pixels:\n%s", shares.to_string())
        if forest is not None:
            _verdict(result)
        return result

    def calibrate(
        self, model: ModelPackage, max_chips: int = 256
    ) -> tuple[dict[str, float], ModelPackage]:
        """Fit a softmax temperature on the validation chips' logits (every 2nd pixel of up
        to ``max_chips`` chips): the temperature with the calibration error before and
        after, and ``model`` carrying them (in memory; :meth:`_rescore` saves it). Without
        labelled validation pixels: ``{}`` and ``model`` itself."""
        from .._torch import torch
        from ..evaluation._calibration import expected_calibration_error, fit_temperature, softmax
        from ..model._package import with_temperature

        index = ClassIndex(self.train_chips.class_ids, self.train_chips.ignore_values)
        val = ChipData(self.val_chips, index, self.data.mean[:, 0, 0], self.data.std[:, 0, 0])
        rows = np.random.default_rng(self.cfg.seed).permutation(len(val))[:max_chips]
        net = model.build_module(str(self.device))
        logits, targets = [], []
        with torch.inference_mode():
            for i in range(0, len(rows), 8):
                x, y = val.batch(rows[i : i + 8])
                logits.append(net(x.to(self.device)).float().cpu().numpy()[:, :, ::2, ::2])
                targets.append(y.numpy()[:, ::2, ::2])
        scores, truth = np.concatenate(logits), np.concatenate(targets)
        if not (truth != NODATA_LABEL).any():
            return {}, model
        t = fit_temperature(scores, truth, ignore_index=NODATA_LABEL, seed=self.cfg.seed)
        result = {
            "temperature": t,
            "ece_before": expected_calibration_error(
                softmax(scores), truth, ignore_index=NODATA_LABEL
            ),
            "ece_after": expected_calibration_error(
                softmax(scores, temperature=t), truth, ignore_index=NODATA_LABEL
            ),
        }
        errors = {k: v for k, v in result.items() if k != "temperature"}
        calibrated = with_temperature(
            model, t, None, overwrite=False, fitted_on="validation chips", **errors
        )
        log.info(
            "softmax temperature %.3f: calibration error on validation chips %.4f -> %.4f",
            t, result["ece_before"], result["ece_after"],
        )  # fmt: skip
        return result, calibrated

    def _rescore(
        self, model: ModelPackage, before: Report, calibration: dict[str, float]
    ) -> tuple[Report, ModelPackage]:
        """The calibrated package's validation scores, and the package saved (over
        ``best.xlc``) with them as its record of the best validation mIoU."""
        from ..evaluation._evaluate import evaluate
        from ..model._package import with_metadata

        report = evaluate(model=model, partition=self.val_chips, device=str(self.device))
        calibration["val_miou_before"] = float(before.miou)
        calibration["val_miou_after"] = float(report.miou)
        extra = dict(model.metadata.extra)
        extra["training"] = {**extra.get("training", {}), "val_miou": float(report.miou)}
        extra["calibration"] = {**extra.get("calibration", {}), **calibration}
        model = with_metadata(model, self.best_path, overwrite=True, extra=extra)
        self.state.best = float(report.miou)
        return report, model

    # -- helpers --------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return _clock() - self.start

    def _save_best(self, report: Report) -> None:
        st = self.state
        meta = {
            "training": {
                **self.cfg.to_dict(),
                "epoch": st.epoch,
                "step": st.step,
                "val_miou": st.best,
            },
            "recipe": {"reasons": self.reasons, "profile": asdict(self.profile)},
            "val_per_class_iou": dict(
                zip(report.class_names, _nan_to_none(report.iou), strict=True)
            ),
            **self.extra,
        }
        save_model(self.ema.module, self.best_path, extra=meta, overwrite=True,
                   **self.package_kwargs)  # fmt: skip
        self.best_report = report

    def _probes_budget(self) -> bool:
        """Whether this epoch sizes the schedule from its first steps' time: the first epoch
        of a fresh run with ``max_minutes`` whose epochs are long (100 steps or more). There,
        sizing only after the first epoch left that epoch at the start of the warm-up of a
        schedule many times longer (Dubai: 402 steps at under a sixth of the peak learning
        rate out of 1 045), then jumped."""
        st = self.state
        return (
            self.cfg.max_minutes is not None
            and st.epoch == 0
            and st.step == 0
            and st.planned > 1
            and self.steps >= 100
        )

    def _fit_budget_early(self, per_step: float) -> int:
        """Size the schedule from the time per step measured in the first epoch (validation
        estimated from its pixels, :func:`validation_cost_px`); the end of the first
        and second epochs correct it from measured times. Returns the schedule's steps."""
        cfg, st = self.cfg, self.state
        assert cfg.max_minutes is not None and cfg.batch_size is not None
        done = st.step * per_step  # as if the steps so far had all taken per_step
        remaining = cfg.max_minutes * 60.0 - self.elapsed + done
        step_px = cfg.batch_size * self.profile.chip_size**2
        per_val = per_step * validation_cost_px(self.profile) / step_px
        whole, extra = steps_that_fit(
            0.9 * remaining, per_step, per_val / (cfg.val_every or 1), self.steps, st.planned
        )
        if whole + (extra > 0) >= 1:
            st.epochs, st.total_steps = whole + (extra > 0), whole * self.steps + extra
            log.info(
                "schedule sized to the %g min budget from the first %d steps: %d of %d "
                "epochs, %d optimiser steps",
                cfg.max_minutes, st.step, st.epochs, st.planned, st.total_steps,
            )  # fmt: skip
        return self.schedule_steps

    def _fit_budget(self) -> None:
        """With ``max_minutes``: after the first and the second epoch, size the schedule to the
        budget from the measured time of the latest epoch's steps and validation (the first
        epoch also reads and caches the chips, so the second corrects its estimate, upwards
        too, up to the planned epochs); later, stop when time is up.

        The schedule is sized in optimiser steps, not whole epochs: time left after the last
        whole epoch that fits goes to a shorter last epoch. Where one epoch takes a good part
        of the budget (large data, slow machines), whole epochs left up to a third of the
        budget unused."""
        cfg, st = self.cfg, self.state
        if cfg.max_minutes is None or st.stopped:
            return
        budget = cfg.max_minutes * 60.0
        remaining = budget - st.seconds
        total = self.schedule_steps
        if st.epoch <= 2 and st.epoch < st.planned and st.step < total:
            # the latest epoch's time splits into training, validation and the rest
            # (checkpoint, history); 10 % of what remains is kept in reserve
            spent = st.seconds - st.at_last_epoch
            other = max(spent - st.last_train_seconds - st.last_val_seconds, 0.0)
            per_val = st.val_seconds / max(st.validations, 1)
            per_step = st.last_train_seconds / max(self._last_steps, 1)
            overhead = other + per_val / (cfg.val_every or 1)
            per_epoch = self.steps * per_step + overhead
            whole, extra = steps_that_fit(
                0.9 * remaining, per_step, overhead, self.steps, st.planned - st.epoch
            )
            fits = st.epoch + whole + (extra > 0)
            steps = st.step + whole * self.steps + extra
            if fits > st.epoch:
                if (fits, steps) != (st.epochs, total):
                    log.info(
                        "schedule sized to the %g min budget: %d of %d epochs, %d optimiser "
                        "steps (%.1f s per epoch of %d steps)",
                        cfg.max_minutes, fits, st.planned, steps, per_epoch, self.steps,
                    )  # fmt: skip
                st.epochs, st.total_steps = fits, steps
                return
        if remaining <= 0 and st.epoch < st.epochs:
            st.stopped = "time budget"
            warnings.warn(
                f"training stopped by max_minutes={cfg.max_minutes} at epoch {st.epoch} of "
                f"{st.epochs}, before its learning-rate schedule ended; the model is "
                "undertrained. Give more time, or fewer epochs so the schedule fits",
                ScheduleCutWarning,
                stacklevel=4,
            )

    def _save_checkpoint(self) -> None:
        from .._torch import torch

        st = self.state
        payload = {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_updates": self.ema.updates,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "state": json.dumps(_nan_to_none({**asdict(st), "best": st.best})),
        }
        atomic_write(self.out / "last.pt", lambda tmp: torch.save(payload, tmp))

    def load_checkpoint(self) -> None:
        from .._torch import torch

        path = self.out / "last.pt"
        if not path.exists():
            raise InputNotFoundError(f"cannot resume: {path} does not exist (train without resume)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.ema.module.load_state_dict(payload["ema"])
        self.ema.updates = int(payload["ema_updates"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["torch_rng"])
        self.rng.bit_generator.state = json.loads(payload["numpy_rng"])
        saved = json.loads(payload["state"])
        saved["best"] = -math.inf if saved["best"] is None else saved["best"]
        planned = self.state.epochs
        self.state = _State(**saved)
        # a budget that stopped the earlier run does not bind this one
        self.state.epochs, self.state.planned, self.state.stopped = planned, planned, ""
        self.state.total_steps = 0
        self.start = _clock() - self.state.seconds


def steps_that_fit(
    seconds: float, per_step: float, per_epoch: float, steps_per_epoch: int, epochs_left: int
) -> tuple[int, int]:
    """Whole epochs, and steps of one shorter epoch after them, that fit in ``seconds`` when
    a step takes ``per_step`` seconds and each epoch ``per_epoch`` more (validation,
    checkpoint), at most ``epochs_left`` epochs in all. The shorter epoch is kept only if it
    is worth its validation: a tenth of an epoch or more (else 0 steps)."""
    epoch = steps_per_epoch * per_step + per_epoch
    if epoch <= 0:
        return epochs_left, 0
    whole = min(max(0, int(seconds // epoch)), epochs_left)
    if whole >= epochs_left:
        return whole, 0
    left = seconds - whole * epoch - per_epoch
    extra = min(max(0, int(left // per_step)) if per_step > 0 else 0, steps_per_epoch - 1)
    return whole, extra if extra >= max(1, steps_per_epoch // 10) else 0


class _Ema:
    """An exponential moving average of a module's weights and buffers, with warm-up (the
    decay grows as ``(1 + n) / (10 + n)`` up to ``decay``, so short runs are averaged too).
    ``decay=0`` keeps the live weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model) if decay > 0 else model
        self.updates = 0

    def update(self, model: torch.nn.Module) -> None:
        from .._torch import torch

        if self.decay <= 0:
            return
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            live = model.state_dict()
            for name, avg in self.module.state_dict().items():
                value = live[name]
                if avg.dtype.is_floating_point:
                    avg.lerp_(value, 1.0 - d)
                else:
                    avg.copy_(value)


# --- schedules: learning-rate factor at training progress t in [0, 1] -----------------------


def _cos(a: float, b: float, p: float) -> float:
    return b + (a - b) * (1 + math.cos(math.pi * min(max(p, 0.0), 1.0))) / 2


def _onecycle(t: float) -> float:
    # torch's OneCycleLR shape: 30 % warm-up from lr/25, cosine down to lr/25e4
    return _cos(1 / 25, 1.0, t / 0.3) if t < 0.3 else _cos(1.0, 1 / 25e4, (t - 0.3) / 0.7)


def _cosine(t: float) -> float:
    return (0.01 + 0.99 * t / 0.05) if t < 0.05 else _cos(1.0, 0.0, (t - 0.05) / 0.95)


#: Learning-rate schedules by name: factor of the peak rate at training progress t in [0, 1].
SCHEDULES: dict[str, Callable[[float], float]] = {
    "onecycle": _onecycle,
    "cosine": _cosine,
    "poly": lambda t: max(1.0 - t, 0.0) ** 0.9,
    "constant": lambda t: 1.0,
}


def register_schedule(
    name: str, factor: Callable[[float], float], *, replace: bool = False
) -> None:
    """Make ``factor`` available as ``train(..., schedule=name)``: the factor of the peak
    learning rate at training progress ``t`` in [0, 1]."""
    if name in SCHEDULES and not replace:
        raise TrainingSettingsError(f"a schedule named {name!r} exists; pass replace=True")
    SCHEDULES[name] = factor


# --- data -------------------------------------------------------------------------------------


class ChipData:
    """Chips as normalised tensors: ``x`` float32 ``(C, s, s)``, ``y`` int64 class indices.

    Nodata image pixels become 0 (the band mean) and :data:`NODATA_LABEL` in ``y``. Chips are read
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

    def preload(self) -> None:
        """Fill the cache (when it fits), reading each source once (:meth:`Chips.read_many`)."""
        if self._cache is None:
            return
        missing = [i for i in range(len(self.chips)) if i not in self._cache]
        for i, read in self.chips.read_many(missing):
            self._cache[i] = self._convert(*read)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        pair = self._convert(*self.chips.read(i))
        if self._cache is not None:
            self._cache[i] = pair
        return pair

    def _convert(
        self, image: np.ndarray, labels: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        x = (image.astype(np.float32) - self.mean) / self.std
        x[:, ~valid] = 0.0
        y = self.index(labels)
        y[(y >= self.index.n) | ~valid] = NODATA_LABEL
        return x, y.astype(np.uint8)

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from .._torch import torch

        items = [self.item(int(i)) for i in rows]
        x = torch.from_numpy(np.stack([a for a, _ in items]))
        y = torch.from_numpy(np.stack([b for _, b in items]).astype(np.int64))
        return x, y


def band_statistics(
    chips: Chips, *, seed: int = 0, max_chips: int = 256, robust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over the valid pixels of (up to) ``max_chips``.

    ``robust``: of the values clipped to each band's 1st-99th percentiles, so a few saturated,
    cloudy or otherwise extreme pixels do not set the scale of raw digital numbers.
    """
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(chips))[:max_chips]
    parts = []
    for _, (image, _, valid) in sorted(chips.read_many(rows), key=lambda r: r[0]):
        parts.append(image[:, valid].astype(np.float64))
    px = np.concatenate(parts, axis=1) if parts else np.zeros((chips.n_bands, 0))
    if px.shape[1] == 0:
        raise EmptySplitError("the training chips hold no valid image pixel")
    if robust:
        lo, hi = np.percentile(px, [1, 99], axis=1)
        px = np.clip(px, lo[:, None], hi[:, None])
    mean = px.mean(axis=1)
    std = np.sqrt(np.maximum((px**2).mean(axis=1) - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def class_shares(report: Report) -> pd.DataFrame:
    """Share of each class among the scored pixels: in the reference and in the map."""
    cm = np.asarray(report.confusion, dtype=np.float64)
    total = max(cm.sum(), 1.0)
    return pd.DataFrame(
        {"reference": cm.sum(axis=1) / total, "predicted": cm.sum(axis=0) / total},
        index=pd.Index(report.class_names, name="class"),
    ).round(4)


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
    val = history.dropna(subset=["val_miou"])
    ax2.plot(val["epoch"], val["val_miou"], "s-", color="tab:orange", label="val mIoU")
    ax2.set_ylabel("validation mIoU (seamless)", color="tab:orange")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- internals -------------------------------------------------------------------------------


def _check_values(cfg: TrainConfig) -> None:
    def positive(name: str, value: Any, kind: type = int) -> None:
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise TrainingSettingsError(f"{name} must be a positive number, got {value!r}")
        if kind is int and value is not None and int(value) != value:
            raise TrainingSettingsError(f"{name} must be a whole number, got {value!r}")

    for name in ("epochs", "batch_size", "steps_per_epoch", "val_every", "window"):
        positive(name, getattr(cfg, name))
    if cfg.lr is not None and (not isinstance(cfg.lr, int | float) or cfg.lr < 0):
        raise TrainingSettingsError(f"lr must be a number >= 0, got {cfg.lr!r}")
    if cfg.max_minutes is not None and cfg.max_minutes < 0:
        raise TrainingSettingsError(f"max_minutes must be >= 0, got {cfg.max_minutes}")
    if cfg.ema is not None and not 0.0 <= cfg.ema < 1.0:
        raise TrainingSettingsError(f"ema is a decay in [0, 1), got {cfg.ema}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise TrainingSettingsError(f"optimizer must be 'adamw' or 'sgd', not {cfg.optimizer!r}")
    if cfg.schedule is not None and cfg.schedule not in SCHEDULES:
        raise UnknownArchitectureError(
            f"unknown schedule {cfg.schedule!r}; use one of {sorted(SCHEDULES)}"
        )
    if cfg.class_weights not in (None, "bounded", "median_frequency", "none"):
        raise TrainingSettingsError(
            f"class_weights must be 'bounded', 'median_frequency' or 'none', not "
            f"{cfg.class_weights!r}"
        )
    if cfg.normalization not in (None, "standard", "robust"):
        raise TrainingSettingsError(
            f"normalization must be 'standard' or 'robust', not {cfg.normalization!r}"
        )


def _describe(cfg: TrainConfig, reasons: Mapping[str, str]) -> str:
    keys = ("architecture", "encoder", "pixel_branch", "indices", "batch_size", "epochs",
            "steps_per_epoch", "lr", "weight_decay", "schedule", "ema", "loss",
            "class_weights", "normalization", "augment", "window", "overlap", "val_every",
            "max_minutes")  # fmt: skip
    return ", ".join(f"{k}={getattr(cfg, k)!r}" for k in keys)


def _class_weights(rule: str | None, counts: np.ndarray) -> np.ndarray | None:
    if rule == "median_frequency":
        return median_frequency_weights(counts)
    if rule == "bounded":
        return bounded_class_weights(counts)
    return None


def _best_report(model: ModelPackage, run: _Run) -> Report:
    """The validation scores of the saved checkpoint (recomputed after a resume)."""
    best = getattr(run, "best_report", None)
    if best is not None:
        return best
    from ..evaluation._evaluate import evaluate

    return evaluate(model=model, partition=run.val_chips, device=str(run.device))


def _forest_on_val(train_chips: Chips, val_chips: Chips, seed: int) -> Report | None:
    try:
        from ._baseline import forest_baseline

        return forest_baseline(train_chips, val_chips, seed=seed).report
    except ImportError:  # scikit-learn is optional
        log.info("scikit-learn is not installed: no per-pixel forest comparison")
        return None


def _verdict(result: TrainResult) -> None:
    assert result.val_report is not None and result.forest_report is not None
    net, forest = result.val_report.miou, result.forest_report.miou
    if net > forest:
        log.info(
            "validation mIoU: network %.3f, per-pixel random forest %.3f (+%.3f)",
            net, forest, net - forest,
        )  # fmt: skip
        return
    message = (
        f"THE NETWORK DOES NOT BEAT A PER-PIXEL RANDOM FOREST on the validation pixels "
        f"(mIoU {net:.3f} vs {forest:.3f}). Try: more labelled data or larger validation "
        "blocks; max_minutes=... for more steps; pixel_branch=64; class_weights='none' if "
        "rare classes flood the map (see class shares in training_report.json); or use the "
        "forest (xlandcover.random_forest_baseline)"
    )
    log.warning("%s", message)
    warnings.warn(message, WeakModelWarning, stacklevel=3)


def _write_report(path: Path, result: TrainResult, profile: DataProfile) -> None:
    doc = {
        "best_epoch": result.best_epoch,
        "val_miou": result.best_miou,
        "forest_val_miou": None if result.forest_report is None else result.forest_report.miou,
        "settings": result.settings,
        "reasons": result.reasons,
        "profile": asdict(profile),
        "class_shares": None
        if result.class_shares is None
        else result.class_shares.to_dict(orient="index"),
        "calibration": result.calibration,
        "val": None if result.val_report is None else result.val_report.summary(),
        "forest_val": None if result.forest_report is None else result.forest_report.summary(),
    }
    path.write_text(json.dumps(_nan_to_none(doc), indent=1))


def _check_names(cfg: TrainConfig) -> None:
    from .._torch import smp

    assert cfg.architecture is not None and cfg.encoder is not None
    archs = sorted(smp.MODEL_ARCHITECTURES_MAPPING)
    if not known_architecture(cfg.architecture):
        raise UnknownArchitectureError(
            f"unknown architecture {cfg.architecture!r}; segmentation-models-pytorch has {archs}"
        )
    if cfg.architecture.lower() in ARCHITECTURES:
        pass  # a registered architecture checks its own arguments
    elif cfg.encoder.startswith("tu-"):
        import timm

        if not timm.list_models(cfg.encoder[3:]):
            close = difflib.get_close_matches(cfg.encoder[3:], timm.list_models(), n=5)
            raise UnknownArchitectureError(
                f"unknown timm encoder {cfg.encoder!r}; close names: "
                f"{['tu-' + c for c in close]} (see timm.list_models())"
            )
    else:
        names = smp.encoders.get_encoder_names()
        if cfg.encoder not in names:
            close = difflib.get_close_matches(cfg.encoder, names, n=5)
            raise UnknownArchitectureError(
                f"unknown encoder {cfg.encoder!r}; close names: {close}. smp has {len(names)} "
                "(smp.encoders.get_encoder_names()), and any timm model as 'tu-<name>'"
            )
    make_loss(cfg.loss or "combo", n_classes=2)  # unknown loss names fail before any work


def _build_model(cfg: TrainConfig, arch_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    from ..model._package import build_architecture

    assert cfg.architecture is not None
    model = build_architecture(cfg.architecture, arch_kwargs)
    if cfg.encoder_weights:
        _load_encoder_weights(model, Path(cfg.encoder_weights))
    return model


def _load_encoder_weights(model: torch.nn.Module, path: Path) -> None:
    from .._torch import torch

    if not path.exists():
        raise InputNotFoundError(f"encoder weights {path} do not exist")
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


def _seed_everything(seed: int) -> None:
    from .._torch import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (third-party code may use the global state)
    torch.manual_seed(seed)


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
