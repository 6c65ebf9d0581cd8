"""``mambalitesr search``: the hyper-parameter study (run / report / cost / rerun / promote).

Glossary: see :mod:`mambalitesr.models.study` (C, G, M, N, E, r, K, a; PSNR held-out PSNR-Y).
"""
from __future__ import annotations

import argparse
import sys

from mambalitesr import argtypes as t


def register(subparsers) -> None:
    from mambalitesr.models.study.search import DEFAULT_STORAGE, STUDY_NAME, USER_STUDY_DIR

    p = subparsers.add_parser(
        "search", help="hyper-parameter study of the student (Optuna, multi-objective); its report",
        description="Short distillation runs over C, G, M, N, E, r, K and a; PSNR on held-out training images, "
                    "parameters and CPU latency at 320x180 as objectives. Report: models/study/README.md.",
    )
    sub = p.add_subparsers(dest="search_command", metavar="ACTION")
    sub.required = True

    def common(q):
        q.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default: %(default)s)")
        q.add_argument("--study-name", default=STUDY_NAME)

    def data_args(q):
        q.add_argument("--train", nargs="+", metavar="DIR", type=t.input_dir, help="folders of HR training images (a tenth is held out)")
        q.add_argument("--teacher", default="dvmsr_x4")
        q.add_argument("--teacher-weights", metavar="PATH", type=t.input_file)
        q.add_argument("--teacher-cache", default="runs/study/cache", metavar="DIR", type=t.output_dir,
                       help="folder of the teacher-output cache (reused when its image list matches; default %(default)s)")
        q.add_argument("--min-lr-side", type=t.int_range(1, 10**9), default=48,
                       help="skip images with an LR side below this; match the run whose teacher cache you reuse")

    r = sub.add_parser("run", help="run (or resume) the study until it holds --trials completed trials")
    common(r)
    data_args(r)
    r.add_argument("--trials", type=t.int_range(1, 10**9), default=30, help="completed trials to reach (default %(default)s)")
    r.add_argument("--max-attempts", type=t.int_range(1, 10**9), help="stop after this many new trials (default 4 x --trials)")
    r.add_argument("--steps", type=t.int_range(1, 10**9), default=120, help="training steps per trial (even; default %(default)s)")
    r.add_argument("--batch", type=t.int_range(1, 10**9), default=8)
    r.add_argument("--patch", type=t.int_range(1, 10**9), default=24, help="LR crop side (default %(default)s)")
    r.add_argument("--lr", type=t.float_range(0.0, 10.0, lo_open=True), default=2e-3)
    r.add_argument("--seed", type=t.int_range(0, 2**32 - 1), default=0, help="seeds the sampler and every trial's training")
    r.add_argument("--holdout-every", type=t.int_range(1, 10**9), default=10, help="hold out every k-th training image (default %(default)s)")
    r.add_argument("--latency-runs", type=t.int_range(1, 10**9), default=2, help="timed forward passes per config after a warm-up")
    r.add_argument("--scan", choices=["native", "chunked", "ref"], default="native")
    r.add_argument("--no-references", action="store_true", help="do not enqueue the paper's choice and the student")
    r.add_argument("--no-prune", action="store_true", help="train every trial to the end (no half-budget rule)")
    r.add_argument("--report", action="store_true", help="write the report when done")
    r.set_defaults(func=_run)

    rep = sub.add_parser("report", help="regenerate models/study/README.md and its plots from the stored study")
    common(rep)
    rep.add_argument("--out", default=str(USER_STUDY_DIR), metavar="DIR", type=t.output_dir,
                     help="where README.md and the PNGs go (default %(default)s; the committed report: "
                          "--storage sqlite:///models/study/study.db --out models/study in a checkout)")
    rep.add_argument("--budget-params", type=t.int_range(1, 10**9), default=150_000, help="parameter budget of the decision")
    rep.add_argument("--tolerance", type=t.nonneg_float, default=0.1, help="dB: smallest model within this of the best")
    rep.set_defaults(func=_report)

    c = sub.add_parser("cost", help="training cost of rank r against full rank (paper, shipped and picked configs); "
                                    "writes train_cost.json next to the study database, which the report reads")
    common(c)
    c.add_argument("--steps", type=t.int_range(1, 10**9), default=8, help="timed steps per process (default %(default)s)")
    c.add_argument("--batch", type=t.int_range(1, 10**9), default=8)
    c.add_argument("--patch", type=t.int_range(1, 10**9), default=32, help="LR patch side (default %(default)s)")
    c.add_argument("--repeats", type=t.int_range(1, 10**9), default=2, help="processes per variant (default %(default)s)")
    c.add_argument("--scan", choices=["native", "chunked", "ref"], default="native")
    c.add_argument("--budget-params", type=t.int_range(1, 10**9), default=150_000)
    c.add_argument("--tolerance", type=t.nonneg_float, default=0.1)
    # The measurement reads board power (runtime.power), which the model layer must not know: the benchmarks
    # layer runs it, and the top-level CLI imports it by this name when the action is chosen.
    c.set_defaults(func="mambalitesr.benchmarks.train_cost:cost_command")

    rr = sub.add_parser("rerun", help="train stored trials again (config, a, budget): another seed (noise) or more steps "
                                      "(does the ranking hold?); results are stored with the study and reported")
    common(rr)
    data_args(rr)
    rr.add_argument("--trial", type=t.nonneg_int, required=True, action="append", help="trial number (repeatable)")
    rr.add_argument("--seed", type=t.int_range(0, 2**32 - 1), help="training seed (default: the study's)")
    rr.add_argument("--steps", type=t.int_range(1, 10**9), help="training steps (default: the study's budget)")
    rr.set_defaults(func=_rerun)

    pr = sub.add_parser("promote", help="re-train the candidates of the decision with a longer budget (both references "
                                        "and the PSNR-parameters front); the report decides on the longest such rung")
    common(pr)
    data_args(pr)
    pr.add_argument("--steps", type=t.int_range(1, 10**9), required=True, help="training steps of the longer budget")
    pr.add_argument("--limit", type=t.int_range(1, 10**9), default=6, help="at most this many trials (default %(default)s)")
    pr.add_argument("--budget-params", type=t.int_range(1, 10**9), default=150_000)
    pr.set_defaults(func=_promote)


def _data(args):
    from mambalitesr.errors import UserError
    from mambalitesr.models.study.trial import Data

    if not args.train:
        raise UserError("--train DIR ... is required")
    return Data(train_dirs=tuple(str(d) for d in args.train), teacher=args.teacher,
                teacher_weights=str(args.teacher_weights) if args.teacher_weights else None,
                cache_dir=str(args.teacher_cache), min_lr_side=args.min_lr_side)


def _run(args: argparse.Namespace) -> int:
    from mambalitesr.errors import UserError
    from mambalitesr.models.study import fit
    from mambalitesr.models.study.search import run_search
    from mambalitesr.models.study.trial import Budget

    try:
        budget = Budget(steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed,
                        holdout_every=args.holdout_every, scan_backend=args.scan)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.holdout_every < 2:
        raise UserError("--holdout-every must be at least 2: the study validates on held-out images")
    study = run_search(args.trials, budget, _data(args), storage=args.storage, name=args.study_name, seed=args.seed,
                       max_attempts=args.max_attempts, enqueue_references=not args.no_references,
                       prune=not args.no_prune,
                       latency_runs=args.latency_runs)
    rows = fit.trial_rows(study)
    print(f"study {args.study_name}: {len(fit.complete(rows))} completed of {len(rows)} trials in {args.storage}")
    if args.report:
        from mambalitesr.models.study.report import build_report

        print(f"report: {build_report(args.storage, args.study_name)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mambalitesr.models.study.report import build_report

    print(build_report(args.storage, args.study_name, Path(args.out), args.budget_params, args.tolerance))
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from mambalitesr.models.study.search import load_study

    study = load_study(args.storage, args.study_name)
    _retrain(study, args.trial, _data(args), seed=args.seed, steps=args.steps)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from mambalitesr.models.study import fit
    from mambalitesr.models.study.search import load_study

    study = load_study(args.storage, args.study_name)
    numbers = fit.promotion_candidates(fit.trial_rows(study), args.budget_params, args.limit)
    seed = study.user_attrs["seed"]
    todo = [n for n in numbers if f"rerun:{n}:seed{seed}:steps{args.steps}" not in study.user_attrs]
    print(f"promoting trials {numbers} to {args.steps} steps ({len(numbers) - len(todo)} already done)", file=sys.stderr)
    if todo:
        _retrain(study, todo, _data(args), seed=None, steps=args.steps)
    return 0


def _retrain(study, numbers: list[int], data, seed: int | None, steps: int | None) -> None:
    """Train stored trials again with the study's budget (seed and steps optionally changed); store each result."""
    import dataclasses

    from mambalitesr.errors import UserError
    from mambalitesr.models.config import SRConfig
    from mambalitesr.models.study.trial import Budget, load_training_pairs, run_trial

    budget = Budget(**study.user_attrs["budget"])
    try:
        budget = dataclasses.replace(budget, **{k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for number in numbers:
        if not 0 <= number < len(study.trials) or "config" not in study.trials[number].user_attrs:
            raise UserError(f"trial {number} has no stored config")
    pairs = load_training_pairs(budget, data)
    for number in numbers:
        t = study.trials[number]
        result = run_trial(SRConfig.from_json(t.user_attrs["config"]), t.params["alpha"], budget, data, pairs)
        stored = t.user_attrs.get("psnr")
        study.set_user_attr(f"rerun:{number}:seed{budget.seed}:steps{budget.steps}", {
            "trial": number, "seed": budget.seed, "steps": budget.steps, "psnr": result["psnr"],
            "half_psnr": result["half_psnr"], "stored_psnr": stored, "train_cpu_s": result["train_cpu_s"]})
        print(f"trial {number} seed {budget.seed} steps {budget.steps}: PSNR {result['psnr']:.3f} dB"
              + (f" (stored, seed {study.user_attrs['seed']}: {stored:.3f} dB)" if stored is not None else ""), flush=True)
