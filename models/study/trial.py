"""One trial: a short distillation run of a config at the study's fixed budget, scored on held-out images.

Glossary (code name -> paper symbol): a alpha; PSNR the held-out PSNR-Y (dB, shave s) of the EMA
weights; half_psnr the same at half the budget (what the pruning rule sees); Budget the fixed
training recipe every trial shares (steps, batch B, LR patch p, learning rate, seed).

Every trial trains on the same batches (PatchBatches draws batch k from (seed, k)) from the
same initial seed, so two trials differ only by their config and a: a paired comparison.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from mambalitesr.models.config import SRConfig


@dataclass(frozen=True)
class Budget:
    """The training recipe shared by every trial of a study (stored with the study; a resume must match)."""

    steps: int = 150
    batch: int = 8
    patch: int = 32
    lr: float = 2e-3
    seed: int = 0
    holdout_every: int = 10
    scan_backend: str = "native"

    def __post_init__(self):
        if self.steps < 4 or self.steps % 2:
            raise ValueError(f"steps must be even and at least 4 (half is the pruning point), got {self.steps}")

    @property
    def half(self) -> int:
        return self.steps // 2

    @property
    def ema_decay(self) -> float:
        # The EMA must forget the random initialisation within the budget: a window of ~5% of the steps.
        return max(0.0, 1.0 - 20.0 / self.steps)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Data:
    """Where the training images and the teacher's cached outputs come from."""

    train_dirs: tuple[str, ...]
    teacher: str = "dvmsr_x4"
    teacher_weights: str | None = None
    cache_dir: str | None = None  # reuse a run's teacher cache (the key is the image list, so min_lr_side must match it)
    min_lr_side: int = 48


def train_config(cfg: SRConfig, alpha: float, budget: Budget, data: Data, out_dir: str):
    from mambalitesr.models.train_config import TrainConfig

    return TrainConfig(
        model="study-trial", model_config_json=cfg.to_json(), train_dirs=list(data.train_dirs), out_dir=out_dir,
        teacher=data.teacher, teacher_weights=data.teacher_weights, alpha=alpha, steps=budget.steps,
        batch=budget.batch, patch=budget.patch, lr=budget.lr, warmup=max(1, budget.steps // 10),
        ema_decay=budget.ema_decay, seed=budget.seed, workers=0, scan_backend=budget.scan_backend, threads=1,
        val_every=budget.half, log_every=math.gcd(10, budget.half), checkpoint_minutes=1e9,
        cache_dir=data.cache_dir, min_lr_side=max(data.min_lr_side, budget.patch),
        holdout_every=budget.holdout_every,
    )


def run_trial(cfg: SRConfig, alpha: float, budget: Budget, data: Data, pairs=None,
              prune_at_half: Callable[[float], bool] = lambda psnr: False) -> dict:
    """Train ``cfg`` for ``budget.steps``; {half_psnr, psnr, ssim, pruned, train_cpu_s, holdout_images}.

    ``pairs``: the loaded training images with teacher outputs (all of them; the trainer holds out
    every ``holdout_every``-th), so a study decodes them once. ``prune_at_half(half_psnr)`` may stop the
    trial at half budget (then ``psnr`` is None).
    """
    from mambalitesr.models.trainer import Trainer

    t0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="mambalitesr-trial-") as tmp:
        trainer = Trainer(train_config(cfg, alpha, budget, data, tmp), progress=False, pairs=pairs)
        half = trainer.fit(stop_after=budget.half)["val"]
        result = {"half_psnr": half["psnr_y"], "holdout_images": len(half["images"]), "psnr": None, "ssim": None,
                  "pruned": False}
        if prune_at_half(half["psnr_y"]):
            result["pruned"] = True
        else:
            final = trainer.fit()["val"]
            result.update(psnr=final["psnr_y"], ssim=final["ssim_y"])
    result["train_cpu_s"] = time.process_time() - t0
    return result


def load_training_pairs(budget: Budget, data: Data, progress: bool = True) -> list:
    """Every training image (before the hold-out split) with the teacher's outputs, decoded once for a study.

    The teacher outputs come from ``data.cache_dir`` when a cache of the same image list exists there,
    else the teacher runs once and the cache is written there.
    """
    from mambalitesr.models.trainer import Trainer

    tiny = SRConfig(embed_dim=8, groups=1, mixers=1, d_state=4, scale=4)  # the student is not used here
    with tempfile.TemporaryDirectory(prefix="mambalitesr-study-") as tmp:
        cfg = train_config(tiny, 0.8, dataclasses.replace(budget, holdout_every=0), data, tmp)
        trainer = Trainer(cfg, progress=progress)
        trainer._prepare_pairs()
        return trainer.train_pairs
