"""Training throughput of the recipe's network: chips per second, fp32 against bf16 autocast.

One optimiser step is what ``train`` runs per batch, in parts: the network's forward and
backward with AdamW (the recipe's U-Net, MobileNetV3-small encoder, light decoder, per-pixel
branch, channels-last on CPU), the augmentation (kornia) and the loss (cross-entropy + Dice)
timed on their own, for batch sizes and precisions measured side by side in one process
(interleaved rounds, medians). On CPUs with AMX or AVX512-BF16, bf16 autocast (``train(...,
amp="on")``) is what a time budget could buy; prints and saves
``benchmarks/results/train_throughput-<machine>.json``::

    python benchmarks/train_throughput.py                 # 256 px chips, batch 4 and 8
    python benchmarks/train_throughput.py --size 64 --batches 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(repeats: int, fn: Any, *args: Any) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="chip side in pixels")
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--batches", default="4,8", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=6, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch

    from xlandcover.model._package import build_architecture
    from xlandcover.training._augment import Augment, AugmentConfig
    from xlandcover.training._losses import make_loss

    batches = [int(b) for b in args.batches.split(",")]
    kwargs = {"encoder_name": "tu-mobilenetv3_small_100", "in_channels": args.bands,
              "classes": args.classes, "decoder_channels": [128, 64, 32, 16, 16],
              "pixel_branch": 16}  # fmt: skip
    model = build_architecture("Unet", kwargs).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = make_loss("combo", n_classes=args.classes, class_weights=np.ones(args.classes))
    augment = Augment(AugmentConfig(), n_bands=args.bands)
    gen = torch.Generator().manual_seed(0)

    def data(bs: int) -> tuple[Any, Any]:
        x = torch.randn(bs, args.bands, args.size, args.size, generator=gen)
        y = torch.randint(0, args.classes, (bs, args.size, args.size), generator=gen)
        return x.contiguous(memory_format=torch.channels_last), y

    def step(x: Any, y: Any, amp: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    runs: dict[str, list[float]] = {}
    parts: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for bs in batches:
            x, y = data(bs)
            for amp in (False, True):
                key = f"batch {bs} {'bf16' if amp else 'fp32'}"
                step(x, y, amp)  # warm-up (oneDNN picks its kernels)
                runs.setdefault(key, []).append(_median_ms(args.steps, step, x, y, amp))
            parts.setdefault(f"batch {bs} augment", []).append(
                _median_ms(args.steps, augment, x, y)
            )
            logits = torch.randn(bs, args.classes, args.size, args.size, requires_grad=True)
            parts.setdefault(f"batch {bs} loss", []).append(
                _median_ms(args.steps, lambda z, t: loss_fn(z, t).backward(), logits, y)
            )
    chips_per_s = {
        k: round(int(k.split()[1]) / (statistics.median(v) / 1000.0), 2) for k, v in runs.items()
    }
    bf16_speedup = {
        f"batch {bs}": round(chips_per_s[f"batch {bs} bf16"] / chips_per_s[f"batch {bs} fp32"], 3)
        for bs in batches
    }
    cores = len(os.sched_getaffinity(0))
    doc = {
        "machine": f"{platform.machine()} x{cores} cores",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "chip_size": args.size,
        "model_step_chips_per_s": chips_per_s,
        "bf16_speedup": bf16_speedup,
        "other_ms_per_batch": {k: round(statistics.median(v), 1) for k, v in parts.items()},
    }
    print(json.dumps(doc), flush=True)
    out = args.out or ROOT / "benchmarks" / "results" / f"train_throughput-cpu-{cores}core.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
