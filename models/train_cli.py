"""``mambalitesr train``: distil a student from a teacher (or train from HR alone); resumable; torchrun-ready."""
from __future__ import annotations

import argparse

from mambalitesr import argtypes as t


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (distillation with --teacher); scale out with torchrun --nproc_per_node N",
        description="Without --teacher this trains on HR alone (also how a teacher is trained from scratch).",
    )
    p.add_argument("--model", default="mambalitesr_x4", help="registry name of the network to train")
    p.add_argument("--train", nargs="+", required=True, metavar="DIR", type=t.input_dir, help="folders of HR training images")
    p.add_argument("--val", metavar="DIR", type=t.input_dir, help="folder of HR images for periodic validation (e.g. Set5)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", type=t.output_dir, help="run folder: checkpoint, log.csv, log.png, model.safetensors")
    p.add_argument("--hr-scales", nargs="+", type=t.float_range(0.0, 1.0, lo_open=True), default=[1.0], metavar="F",
                   help="also train on every image shrunk by these factors (default: 1 = as they are; e.g. 1 0.8 0.6)")
    p.add_argument("--lr-images", nargs="+", type=t.input_dir, default=[], metavar="DIR",
                   help="folders of images used as LR inputs at their own size, the teacher's SR of each their only "
                        "target (needs --teacher; images too small for an HR crop count too)")
    p.add_argument("--teacher", help="registry name of the frozen teacher (e.g. dvmsr_x4)")
    p.add_argument("--teacher-weights", metavar="PATH", type=t.input_file, help="teacher weights (.pth state_dict or .safetensors)")
    p.add_argument("--alpha", type=t.fraction, default=0.8, help="a in a*L1(S,T) + (1-a)*L1(S,HR) (default 0.8)")
    p.add_argument("--loss", choices=("l1", "l2"), default="l1",
                   help="pixel distance of both output terms; l2 (the PSNR objective) for a final fine-tuning stage")
    p.add_argument("--feature-weight", type=t.nonneg_float, default=0.0, help="weight of per-group feature distillation (0 = off)")
    p.add_argument("--no-teacher-cache", action="store_true", help="run the teacher on every crop instead of once per image")
    p.add_argument("--steps", type=t.int_range(1, 10**9), default=10_000)
    p.add_argument("--batch", type=t.int_range(1, 4096), default=16, help="crops per step and process")
    p.add_argument("--patch", type=t.int_range(8, 1024), default=48, help="LR crop side")
    p.add_argument("--lr", type=t.float_range(0.0, 10.0, lo_open=True), default=2e-3)
    p.add_argument("--lr-min", type=t.float_range(0.0, 10.0), default=1e-5)
    p.add_argument("--warmup", type=t.nonneg_int, default=200)
    p.add_argument("--schedule", choices=["cosine", "multistep"], default="cosine")
    p.add_argument("--milestones", type=t.positive_int, nargs="*", default=[])
    p.add_argument("--grad-clip", type=t.nonneg_float, default=1.0)
    p.add_argument("--ema", type=t.float_range(0.0, 1.0, what="EMA decay"), default=0.999, help="EMA decay of the weights")
    p.add_argument("--seed", type=t.int_range(0, 2**32 - 1), default=0)
    p.add_argument("--workers", type=t.workers, default=1, help="data-loader worker processes")
    p.add_argument("--scan", choices=["native", "chunked", "ref"], default="native", help="selective-scan backend")
    p.add_argument("--threads", type=t.int_range(0, 1024, "0 = torch's default"), default=0, help="torch threads per process (0 = default)")
    p.add_argument("--val-every", type=t.positive_int, default=500)
    p.add_argument("--checkpoint-minutes", type=t.positive_float, default=5.0)
    p.add_argument("--log-every", type=t.positive_int, default=10)
    p.add_argument("--init", metavar="PATH", type=t.input_file, help="start from these weights")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--stop-after", type=t.positive_int, metavar="STEP", help="stop (with a checkpoint) after this step")
    t.add_overwrite(p)
    t.add_image_limits(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mambalitesr.errors import UserError
    from mambalitesr.models.train_config import TrainConfig
    from mambalitesr.models.trainer import train

    _check_before_training(args)
    s = lambda v: None if v is None else str(v)  # noqa: E731  (the config stores paths as text)
    try:
        cfg = TrainConfig(
            model=args.model, train_dirs=[str(d) for d in args.train], val_dir=s(args.val), out_dir=str(args.out),
            teacher=args.teacher, teacher_weights=s(args.teacher_weights), alpha=args.alpha, pixel_loss=args.loss,
            feature_weight=args.feature_weight,
            cache_teacher=not args.no_teacher_cache, steps=args.steps, batch=args.batch, patch=args.patch,
            lr=args.lr, lr_min=args.lr_min, warmup=args.warmup, schedule=args.schedule,
            milestones=tuple(args.milestones), grad_clip=args.grad_clip, ema_decay=args.ema, seed=args.seed,
            workers=args.workers, scan_backend=args.scan, threads=args.threads, val_every=args.val_every,
            checkpoint_minutes=args.checkpoint_minutes, log_every=args.log_every, init_weights=s(args.init),
            hr_scales=tuple(args.hr_scales), lr_dirs=tuple(str(d) for d in args.lr_images),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    result = train(cfg, resume=args.resume, stop_after=args.stop_after)
    val = result["val"]
    print(f"trained to step {result['step']} in {result['elapsed_s']:.0f} s"
          + (f"; validation PSNR-Y {val['psnr_y']:.2f} dB, SSIM-Y {val['ssim_y']:.4f}" if val else ""))
    return 0


def _check_before_training(args) -> None:
    """What can be found wrong before a step is taken: the run folder, the validation images."""
    from mambalitesr.errors import UserError
    from mambalitesr.imageio import list_images
    from mambalitesr.models.evaluate import load_hr
    from mambalitesr.models.registry import get_entry

    from mambalitesr.models.checkpoint import LATEST, LEGACY

    for checkpoint in (args.out / LATEST, args.out / LEGACY):
        if checkpoint.exists() and not args.resume and not args.overwrite:
            raise UserError(f"{args.out}: holds a run already ({checkpoint.name}); --resume continues it, "
                            "--overwrite starts afresh over it")
    if args.val is not None:
        scale = int(get_entry(args.model).config.scale)
        for path in list_images(args.val):  # a bad image here would otherwise surface at the first validation
            load_hr(path, scale)
