"""The training loop: distillation or plain L1, EMA, warm-up + decay, checkpoints that resume exactly.

Glossary: see :mod:`mambalitesr.models.train_config` (a = alpha, beta = feature_weight).

Runs as one process, or as several under ``torchrun`` (DistributedDataParallel;
gloo on the CPU, NCCL on GPUs): each process draws its own batches, rank 0
validates, logs and saves.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mambalitesr.errors import UserError
from mambalitesr.models.checkpoint import load_checkpoint, save_checkpoint
from mambalitesr.models.distill import FeatureProjector, output_loss
from mambalitesr.models.loader_worker import init_worker
from mambalitesr.models.train_config import TrainConfig
from mambalitesr.models.train_data import ImagePair, PatchBatches, label_with_teacher, load_lr_images, load_pairs
from mambalitesr.models.train_log import TrainLog


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of cfg.lr at ``step``: linear warm-up, then cosine to lr_min or steps at milestones."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "multistep":
        return 0.5 ** sum(step >= m for m in cfg.milestones)
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.lr_min / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler or `kill`) stops training like Ctrl-C: checkpoint first, then exit
    (mambalitesr/stopping.py, the one signal mechanism; also when train() is called outside the CLI)."""
    from mambalitesr import stopping

    with stopping.handled():
        yield


def ema_update(decay: float):
    """EMA with a warm-up: decay_n = min(decay, (1 + n) / (10 + n)) after n updates.

    A fixed decay would keep (decay)^n of the random initial weights in the average
    (over half of it after 600 steps at 0.999); the warm-up forgets them quickly.
    """

    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world


def _batch_psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    mse = torch.mean((sr.detach().clamp(0, 1) - hr) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def validate(model, folder: str, scale: int) -> dict:
    from mambalitesr.models.evaluate import evaluate, torch_upscaler

    result = evaluate(torch_upscaler(model), folder, scale, progress=False, model_name="ema")
    model.train()
    return result


def validate_pairs(model, pairs: list[ImagePair], scale: int) -> dict:
    """The protocol of :func:`validate` (whole images, PSNR-Y / SSIM-Y, shave = s) on in-memory pairs."""
    from mambalitesr.models.evaluate import super_resolve, torch_upscaler
    from mambalitesr.models.metrics import psnr_y, ssim_y

    upscaler = torch_upscaler(model)
    rows = []
    for pair in pairs:
        sr = super_resolve(upscaler, pair.lr, scale, pair.name)
        rows.append({"name": pair.name, "psnr_y": psnr_y(sr, pair.hr, scale), "ssim_y": ssim_y(sr, pair.hr, scale)})
    model.train()
    return {"model": "ema", "dataset": "holdout", "scale": scale, "psnr_y": float(np.mean([r["psnr_y"] for r in rows])),
            "ssim_y": float(np.mean([r["ssim_y"] for r in rows])), "images": rows}


def split_holdout(pairs: list[ImagePair], every: int) -> tuple[list[ImagePair], list[ImagePair]]:
    """(training pairs, held-out pairs): image i is held out when i % every == every - 1 (every = 0: none)."""
    if not every:
        return pairs, []
    return [p for i, p in enumerate(pairs) if i % every != every - 1], pairs[every - 1::every]


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True, pairs: list[ImagePair] | None = None):
        """``pairs``: the loaded training images (all of them, before any hold-out), to skip decoding them again."""
        from torch.optim.swa_utils import AveragedModel

        from mambalitesr.models.registry import create_model, get_entry
        from mambalitesr.models.weights_io import load_weights

        self.cfg, self.progress = cfg, progress
        self.rank, self.world = _dist_info()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.run_dir = Path(cfg.out_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.model_config_json:
            from mambalitesr.models.config import SRConfig
            from mambalitesr.models.network import MambaSR

            self.student = MambaSR(SRConfig.from_json(cfg.model_config_json)).set_scan_backend(cfg.scan_backend).train()
        else:
            self.student = create_model(cfg.model, pretrained=False, scan_backend=cfg.scan_backend).train()
        # The channel-major mixer graph is the same math (tests/test_models.py, test_train.py) with fewer layout
        # copies: 3.3 vs 3.8 s a step on one core at batch 16, 64 px crops, and 2.7 s since each of its projections
        # is one GEMM per batch element (mixer.py, _left_matmul). Not state:
        # the weights are the same tensors whichever graph trained them.
        self.student.set_graph_layout("channel_major")
        self.given_pairs, self.train_pairs, self.holdout = pairs, None, []
        if cfg.init_weights:
            load_weights(self.student, cfg.init_weights)
        self.scale = self.student.config.scale
        self.teacher = None
        if cfg.distill:
            if get_entry(cfg.teacher).config.scale != self.scale:
                raise UserError(f"teacher {cfg.teacher} and student {cfg.model} have different scales")
            self.teacher = create_model(cfg.teacher, cfg.teacher_weights, scan_backend=cfg.scan_backend)
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.projector = None
        if cfg.feature_weight > 0:
            if self.teacher is None:
                raise UserError("--feature-weight needs a teacher (--teacher)")
            self.projector = FeatureProjector(
                self.student.config.embed_dim, self.teacher.config.embed_dim, self.student.config.groups
            )
        params = list(self.student.parameters()) + (list(self.projector.parameters()) if self.projector else [])
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(cfg, s))
        self.ema = AveragedModel(self.student, multi_avg_fn=ema_update(cfg.ema_decay), use_buffers=True)
        self.model = self.student
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.student)
            if self.projector is not None:
                self.projector = torch.nn.parallel.DistributedDataParallel(self.projector)
        self.step = 0
        self.elapsed = 0.0

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        projector = self.projector.module if hasattr(self.projector, "module") else self.projector
        return {
            "train_config": self.cfg.to_json(),
            "step": self.step,
            "elapsed_s": self.elapsed,
            "student": self.student.state_dict(),
            "ema": self.ema.state_dict(),
            "projector": projector.state_dict() if projector is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self, state: dict, source: Path | None = None) -> None:
        """Continue from a checkpoint; UserError (one line) when it is of another structure."""
        try:
            self._restore(state)
        except UserError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"{source or self.run_dir / 'checkpoint.pt'}: not a checkpoint of this run's model and "
                            f"trainer ({type(exc).__name__}: {first})") from None

    def _restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"holds a {type(state).__name__}, not a dict")
        stored = TrainConfig.from_json(state["train_config"])
        # The total step count may change on resume (lengthen or shorten a run; the schedule follows it).
        for key in ("model", "model_config_json", "teacher", "alpha", "pixel_loss", "batch", "patch", "seed", "lr",
                    "schedule", "holdout_every", "hr_scales", "lr_dirs"):
            if getattr(stored, key) != getattr(self.cfg, key):
                raise UserError(
                    f"--resume: the checkpoint was made with {key}={getattr(stored, key)!r}, "
                    f"this run asks {key}={getattr(self.cfg, key)!r}"
                )
        self.student.load_state_dict(state["student"])
        self.ema.load_state_dict(state["ema"])
        if self.projector is not None:
            projector = self.projector.module if hasattr(self.projector, "module") else self.projector
            projector.load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])

    # -- data ------------------------------------------------------------------------------------
    def _prepare_pairs(self) -> None:
        from mambalitesr.models.weights_io import sha256_file

        cfg = self.cfg
        pairs = self.given_pairs
        if pairs is None:
            pairs = load_pairs(cfg.train_dirs, self.scale, cfg.min_lr_side or cfg.patch,
                               progress=self.progress and self.rank == 0, hr_scales=cfg.hr_scales)
        elif self.teacher is None:  # given pairs may carry teacher outputs this run must not use
            pairs = [ImagePair(p.name, p.hr, p.lr) for p in pairs]
        # Teacher-labelled LR images share the paired images' teacher cache, and never enter the hold-out.
        unlabelled = (load_lr_images(list(cfg.lr_dirs), cfg.min_lr_side or cfg.patch,
                                     progress=self.progress and self.rank == 0) if cfg.lr_dirs else [])
        everything = list(pairs) + unlabelled
        needs_teacher = any(p.teacher is None for p in everything)
        if self.teacher is not None and cfg.cache_teacher and self.projector is None and needs_teacher:
            from mambalitesr.models.registry import get_entry
            from mambalitesr.models.teacher_cache import attach_teacher_outputs

            weights = cfg.teacher_weights or get_entry(cfg.teacher).weights_path
            digest = sha256_file(weights) if weights else "random"
            cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else self.run_dir / "cache"
            if self.rank == 0:
                attach_teacher_outputs(everything, self.teacher, cfg.teacher, digest, cache_dir)
            if self.world > 1:
                dist.barrier()
            if self.rank != 0:
                attach_teacher_outputs(everything, self.teacher, cfg.teacher, digest, cache_dir)
        label_with_teacher(unlabelled)
        train_pairs, self.holdout = split_holdout(pairs, cfg.holdout_every)
        self.train_pairs = train_pairs + unlabelled

    def _loader(self):
        cfg = self.cfg
        if self.train_pairs is None:
            self._prepare_pairs()
        dataset = PatchBatches(self.train_pairs, self.scale, cfg.patch, cfg.batch, cfg.seed, self.rank)
        return torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(self.step, cfg.steps), num_workers=cfg.workers,
            prefetch_factor=4 if cfg.workers else None, worker_init_fn=init_worker if cfg.workers else None,
        )

    # -- loop ------------------------------------------------------------------------------------
    def _loss(self, lr: torch.Tensor, hr: torch.Tensor, cached_teacher: torch.Tensor):
        cfg = self.cfg
        if self.projector is None:
            sr = self.model(lr)
            teacher_sr = cached_teacher
            if self.teacher is not None and cached_teacher.numel() == 0:
                with torch.no_grad():
                    teacher_sr = self.teacher(lr)
            return sr, output_loss(sr, hr, teacher_sr, cfg.alpha, cfg.pixel_loss)
        sr, s_feats = self.model(lr, return_features=True)
        with torch.no_grad():
            teacher_sr, t_feats = self.teacher(lr, return_features=True)
        loss = output_loss(sr, hr, teacher_sr, cfg.alpha, cfg.pixel_loss) + cfg.feature_weight * self.projector(s_feats, t_feats)
        return sr, loss

    def fit(self, stop_after: int | None = None) -> dict:
        with _sigterm_as_interrupt():
            return self._fit(stop_after)

    def _fit(self, stop_after: int | None) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        is_main = self.rank == 0
        loader = self._loader()  # decodes (and validates) the data first: a bad image leaves no fresh log behind
        log = TrainLog(self.run_dir, self.step) if is_main else None
        last_ckpt = time.monotonic()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.progress and is_main), file=sys.stderr,
                   unit="step", dynamic_ncols=True)
        window_loss, window_psnr, window_n = 0.0, 0.0, 0
        val = {}
        t_prev = time.monotonic()
        try:
            for lr, hr, cached_teacher in loader:
                sr, loss = self._loss(lr, hr, cached_teacher)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.ema.update_parameters(self.student)
                self.step += 1
                now = time.monotonic()
                self.elapsed += now - t_prev
                t_prev = now
                window_loss += loss.item()
                window_psnr += _batch_psnr(sr, hr)
                window_n += 1
                bar.update(1)
                if is_main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    row = {"step": self.step, "loss": f"{window_loss / window_n:.6f}",
                           "train_psnr": f"{window_psnr / window_n:.3f}",
                           "lr": f"{self.scheduler.get_last_lr()[0]:.3e}", "elapsed_s": f"{self.elapsed:.1f}"}
                    if (cfg.val_dir or self.holdout) and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                        val = (validate(self.ema.module, cfg.val_dir, self.scale) if cfg.val_dir
                               else validate_pairs(self.ema.module, self.holdout, self.scale))
                        row.update(val_psnr=f"{val['psnr_y']:.3f}", val_ssim=f"{val['ssim_y']:.4f}")
                    log.append(**row)
                    bar.set_postfix(loss=row["loss"], psnr=row["train_psnr"],
                                    val=row.get("val_psnr", f"{val.get('psnr_y', 0):.2f}" if val else "-"))
                    window_loss, window_psnr, window_n = 0.0, 0.0, 0
                if is_main and now - last_ckpt > 60 * cfg.checkpoint_minutes:
                    save_checkpoint(self.run_dir, self.state())
                    last_ckpt = now
                if stop_after is not None and self.step >= stop_after:
                    break
        except KeyboardInterrupt:
            if is_main:
                save_checkpoint(self.run_dir, self.state())
                print(f"\ninterrupted at step {self.step}: checkpoint saved in {self.run_dir}", file=sys.stderr)
            raise
        finally:
            bar.close()
        if is_main:
            save_checkpoint(self.run_dir, self.state())
            log.plot()
            if self.step >= cfg.steps:
                self.save_final(val)
        if self.world > 1:
            dist.barrier()
        return {"step": self.step, "elapsed_s": self.elapsed, "val": val}

    def save_final(self, val: dict) -> Path:
        from mambalitesr.models.weights_io import save_weights

        path = self.run_dir / "model.safetensors"
        extra = {"train_config": self.cfg.to_json(), "steps": str(self.step), "train_seconds": f"{self.elapsed:.0f}"}
        if val:
            extra["val_psnr_y"] = f"{val['psnr_y']:.3f}"
        save_weights(self.ema.module, path, self.cfg.model, **extra)
        return path


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None, progress: bool = True) -> dict:
    trainer = Trainer(cfg, progress=progress)
    if resume:
        trainer.restore(load_checkpoint(trainer.run_dir))
    return trainer.fit(stop_after=stop_after)
