"""Training hyper-parameters (a typed dataclass; the CLI fills it, checkpoints store it).

Glossary (code name -> paper symbol):
    alpha          a     weight of L1(student, teacher); (1 - a) weighs L1(student, HR)
    feature_weight beta  weight of the per-group feature distillation (0 = off)
    pixel_loss     the distance in both output terms: "l1", or "l2" for a PSNR fine-tuning stage
    patch          LR crop side (HR crop = scale * patch)
    holdout_every  every k-th loaded training image is held out and validated in memory (0 = none)
    hr_scales      each training image is also used shrunk by these factors (1.0 = as it is)
    lr_dirs        folders of images used as LR inputs at their own size, the teacher's SR their target
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    model: str = "mambalitesr_x4"
    train_dirs: list[str] = field(default_factory=list)
    val_dir: str | None = None
    out_dir: str = "runs/student"
    teacher: str | None = None  # registry name; None trains from HR alone
    teacher_weights: str | None = None
    alpha: float = 0.8
    feature_weight: float = 0.0
    pixel_loss: str = "l1"  # or "l2"
    cache_teacher: bool = True  # teacher SR of each whole training image, computed once
    steps: int = 10_000
    batch: int = 16
    patch: int = 48
    lr: float = 2e-3
    lr_min: float = 1e-5
    warmup: int = 200
    schedule: str = "cosine"  # or "multistep"
    milestones: tuple[int, ...] = ()
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    workers: int = 1
    scan_backend: str = "native"
    threads: int = 0  # torch intra-op threads; 0 = leave the default
    val_every: int = 500
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    init_weights: str | None = None  # start from these weights (fine-tuning)
    model_config_json: str | None = None  # an SRConfig (JSON) overriding the registry entry's config (studies)
    cache_dir: str | None = None  # teacher-output cache folder; None = <out_dir>/cache
    min_lr_side: int | None = None  # skip images with an LR side below this; None = patch (match another run's cache)
    holdout_every: int = 0
    hr_scales: tuple[float, ...] = (1.0,)
    lr_dirs: tuple[str, ...] = ()  # teacher-labelled LR images (no ground truth); needs the teacher cache

    def __post_init__(self):
        for name in ("steps", "batch", "patch", "val_every", "log_every"):  # 0 "trains" nothing and exits 0
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel_loss must be l1 or l2, got {self.pixel_loss}")
        if self.schedule not in ("cosine", "multistep"):
            raise ValueError(f"schedule must be cosine or multistep, got {self.schedule}")
        if self.min_lr_side is not None and self.min_lr_side < self.patch:
            raise ValueError(f"min_lr_side ({self.min_lr_side}) must be at least the patch ({self.patch})")
        if self.holdout_every == 1 or self.holdout_every < 0:
            raise ValueError(f"holdout_every must be 0 (none) or at least 2, got {self.holdout_every}")
        if not self.hr_scales or any(not 0.0 < f <= 1.0 for f in self.hr_scales):
            raise ValueError(f"hr_scales must be factors in (0, 1], got {list(self.hr_scales)}")
        self.hr_scales = tuple(float(f) for f in self.hr_scales)
        self.lr_dirs = tuple(str(d) for d in self.lr_dirs)
        if self.lr_dirs and (self.teacher is None or not self.cache_teacher or self.feature_weight > 0):
            raise ValueError("lr_dirs (--lr-images) needs a teacher whose SR of each whole image is cached: their "
                             "only target is that SR (give --teacher; drop --no-teacher-cache and --feature-weight)")
        self.milestones = tuple(self.milestones)
        self.train_dirs = list(self.train_dirs)

    @property
    def distill(self) -> bool:
        return self.teacher is not None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls(**json.loads(text))
