"""The Optuna study: a resumable, multi-objective search over the student's config and a.

Glossary (code name -> paper symbol): objectives (PSNR up, |theta| down, latency down), see
:mod:`mambalitesr.models.study.space` for C, G, M, N, E, r, K, a; half_psnr the held-out PSNR-Y at
half the step budget; bicubic_psnr, nearest_psnr those of bicubic and nearest-neighbour upsampling
on the same held-out images (nearest is where an anchor-skip network starts).

Storage is SQLite (by default ``study.db`` in ``mambalitesr.paths.user_dir("study")``; the committed study is
``sqlite:///models/study/study.db`` in a checkout): every trial's parameters, objectives and measurements live
there, and ``mambalitesr search report`` rebuilds the report from it alone.

Determinism: the sampler (multi-objective TPE) is re-seeded before each trial from (seed, number
of trials so far), so the next config is a function of the study's seed and its stored history,
and a resumed study continues as an uninterrupted one would. A trial interrupted by a crash or
Ctrl-C is marked FAIL and its parameters enqueued again.

Pruning (Optuna's pruners need ``trial.report``, which multi-objective studies do not have), a
rule applied at half budget, both parts documented in the report:
  1. diverged: half_psnr not finite, or below nearest_psnr (worse than the untrained network);
  2. dominated: some completed trial with no more parameters and no more MACs already had a
     half_psnr higher by ``PRUNE_MARGIN_DB`` or more (this trial is larger, costlier and behind,
     so it cannot reach the Pareto front unless it overtakes in the second half).
Configs above ``space.MAX_PARAMS`` are rejected (state PRUNED, user attribute "rejected") untrained.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import sys
from pathlib import Path

from mambalitesr.errors import UserError
from mambalitesr.models.study import space
from mambalitesr.models.study.trial import Budget, Data
from mambalitesr.optional import require
from mambalitesr.paths import user_dir

STUDY_DIR = Path(__file__).resolve().parent  # the committed study (read-only data) and its report, in a checkout
USER_STUDY_DIR = user_dir("study")  # where `search` writes when no --storage / --out is given
DEFAULT_STORAGE = f"sqlite:///{USER_STUDY_DIR / 'study.db'}"
STUDY_NAME = "mambalitesr_x4"
DIRECTIONS = ("maximize", "minimize", "minimize")  # PSNR (dB), params, CPU latency (ms)
OBJECTIVES = ("psnr", "params", "latency_ms")
PRUNE_MARGIN_DB = 0.1
PRUNE_MIN_COMPLETE = 5  # the dominance rule waits for this many completed trials
STARTUP_TRIALS = 12  # random sampling before TPE models the front


def _optuna():
    optuna = require("optuna", "the study needs optuna", extra="study")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def sqlite_path(storage: str) -> Path | None:
    return Path(storage[len("sqlite:///"):]) if storage.startswith("sqlite:///") else None


def load_study(storage: str = DEFAULT_STORAGE, name: str = STUDY_NAME):
    """The stored study, read-only use (report); UserError when there is none."""
    optuna = _optuna()
    path = sqlite_path(storage)
    if path is not None and not path.is_file():
        raise UserError(f"no study database at {path}; run `mambalitesr search run` first")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no study named {name!r} in {storage}") from None


def _sampler(seed: int, n_trials: int):
    import warnings

    optuna = _optuna()
    with warnings.catch_warnings():  # multivariate TPE is marked experimental; it is what models joint effects
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed * 100_003 + n_trials, n_startup_trials=STARTUP_TRIALS,
                                          multivariate=True)


@contextlib.contextmanager
def _exclusive(storage: str):
    """One search process per SQLite study: a second one would take the first's running trial for a crash."""
    path = sqlite_path(storage)
    if path is None:
        yield
        return
    import hashlib
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock lives in the temp folder, not beside the database that is committed
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"mambalitesr-search-{key}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `mambalitesr search run` is using {path}") from None
        yield


def _check_settings(study, key: str, value) -> None:
    stored = study.user_attrs.get(key)
    if stored is None:
        study.set_user_attr(key, value)
    elif stored != value:
        raise UserError(f"the stored study was run with {key}={stored}; this run asks {value}. "
                        "Every trial must share one budget: use another --storage or --study-name")


def _recover_interrupted(study) -> int:
    """Trials left RUNNING by a killed process: FAIL them and enqueue their parameters again."""
    optuna = _optuna()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "failed", "interrupted (process ended mid-trial)")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if set(t.params) == set(space.distributions()):
            study.enqueue_trial(t.params, user_attrs={k: v for k, v in t.user_attrs.items() if k == "reference"})
        n += 1
    return n


def holdout_baselines(pairs: list, every: int, scale: int) -> dict:
    """Mean PSNR-Y (shave s) of bicubic and of nearest-neighbour upsampling on the held-out images."""
    import numpy as np

    from mambalitesr.models.bicubic import upsample
    from mambalitesr.models.metrics import psnr_y
    from mambalitesr.models.trainer import split_holdout

    _, held = split_holdout(pairs, every)
    nearest = lambda lr: lr.repeat(scale, axis=0).repeat(scale, axis=1)  # noqa: E731
    return {"images": len(held), "of": len(pairs),
            "bicubic_psnr": round(float(np.mean([psnr_y(upsample(p.lr, scale), p.hr, scale) for p in held])), 4),
            "nearest_psnr": round(float(np.mean([psnr_y(nearest(p.lr), p.hr, scale) for p in held])), 4)}


def _prune_rule(study, nearest: float, params: int, macs: int):
    """The half-budget rule (see the module docstring): returns f(half_psnr) -> reason or None."""
    optuna = _optuna()
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]

    def reason(half: float) -> str | None:
        if not math.isfinite(half) or half < nearest:
            return f"diverged: half-budget PSNR {half:.2f} dB below nearest-neighbour upsampling ({nearest:.2f} dB)"
        if len(done) < PRUNE_MIN_COMPLETE:
            return None
        for t in done:
            a = t.user_attrs
            if a["params"] <= params and a["macs"] <= macs and a["half_psnr"] >= half + PRUNE_MARGIN_DB:
                return (f"dominated at half budget by trial {t.number} ({a['params']} params, "
                        f"half-budget PSNR {a['half_psnr']:.2f} vs {half:.2f} dB)")
        return None

    return reason


def run_search(target_complete: int, budget: Budget, data: Data, *, storage: str = DEFAULT_STORAGE,
               name: str = STUDY_NAME, seed: int = 0, max_attempts: int | None = None,
               enqueue_references: bool = True, prune: bool = True, latency_runs: int = 3, latency_hw: tuple[int, int] | None = None,
               progress: bool = True,
               say=lambda m: print(m, file=sys.stderr, flush=True)) -> object:
    """Run trials until the study holds ``target_complete`` completed ones, or after ``max_attempts`` new
    trials (default 4 x ``target_complete``). ``prune=False`` trains every trial to the end."""
    optuna = _optuna()
    from mambalitesr.models.study.latency import LATENCY_HW, measure_cost
    from mambalitesr.models.study.trial import load_training_pairs, run_trial

    State = optuna.trial.TrialState
    with _exclusive(storage):
        study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                                    load_if_exists=True, sampler=_sampler(seed, 0))
        _check_settings(study, "budget", json.loads(budget.to_json()))
        _check_settings(study, "seed", seed)
        _check_settings(study, "max_params", space.MAX_PARAMS)
        _check_settings(study, "objectives", list(OBJECTIVES))
        latency_hw = tuple(latency_hw or LATENCY_HW)
        _check_settings(study, "latency_hw", list(latency_hw))
        if (n := _recover_interrupted(study)):
            say(f"search: {n} interrupted trial(s) marked FAIL and enqueued again")
        if enqueue_references and not study.user_attrs.get("references_enqueued"):
            study.enqueue_trial(space.PAPER, user_attrs={"reference": "paper"})
            study.enqueue_trial(space.student_params(), user_attrs={"reference": "student"})
            study.set_user_attr("references_enqueued", True)
        pairs = load_training_pairs(budget, data, progress=progress)
        baselines = holdout_baselines(pairs, budget.holdout_every, space.SCALE)
        _check_settings(study, "holdout", {"every": budget.holdout_every, **baselines,
                                           "train_dirs": [Path(d).name for d in data.train_dirs]})
        _check_settings(study, "prune", prune)
        if max_attempts is None:
            max_attempts = 4 * target_complete
        attempts = 0
        while True:
            complete = len(study.get_trials(deepcopy=False, states=(State.COMPLETE,)))
            if complete >= target_complete or attempts >= max_attempts:
                break
            attempts += 1
            study.sampler = _sampler(seed, len(study.trials))
            trial = study.ask(space.distributions())
            measure = lambda cfg: measure_cost(cfg, runs=latency_runs, backend=budget.scan_backend, hw=latency_hw)  # noqa: E731
            nearest = baselines["nearest_psnr"] if prune else None
            _run_one(study, trial, budget, data, pairs, nearest, measure, run_trial, say)
    return study


def _run_one(study, trial, budget, data, pairs, nearest, measure_cost, run_trial, say) -> None:
    optuna = _optuna()
    from mambalitesr.models.complexity import analytic_params

    State = optuna.trial.TrialState
    cfg, alpha = space.decode(trial.params)
    trial.set_user_attr("config", cfg.to_json())
    size = analytic_params(cfg)
    label = (f"trial {trial.number} C{cfg.embed_dim} G{cfg.groups} M{cfg.mixers} N{cfg.d_state} E{cfg.expand} "
             f"r{cfg.rank} K{cfg.directions} a{alpha:.2f} ({size:,} params)")
    if size > space.MAX_PARAMS:
        trial.set_user_attr("rejected", f"{size} params > {space.MAX_PARAMS}")
        study.tell(trial, state=State.PRUNED)
        say(f"search: {label}: rejected, over the parameter budget")
        return
    try:
        cost = measure_cost(cfg)
        for key, value in cost.items():
            trial.set_user_attr(key, value)
        why = {}

        def prune(half: float) -> bool:
            if nearest is None:  # pruning off
                return False
            why["reason"] = _prune_rule(study, nearest, cost["params"], cost["macs"])(half)
            return why["reason"] is not None

        result = run_trial(cfg, alpha, budget, data, pairs, prune_at_half=prune)
    except KeyboardInterrupt:
        trial.set_user_attr("failed", "interrupted (Ctrl-C)")
        study.tell(trial, state=State.FAIL)
        study.enqueue_trial(trial.params, user_attrs={k: v for k, v in trial.user_attrs.items() if k == "reference"})
        raise
    except (UserError, RuntimeError, ValueError) as exc:  # a config that cannot train is a failed trial, not a crash
        trial.set_user_attr("failed", f"{type(exc).__name__}: {exc}"[:500])
        study.tell(trial, state=State.FAIL)
        say(f"search: {label}: FAILED ({exc})")
        return
    for key, value in result.items():
        trial.set_user_attr(key, value)
    if result["pruned"]:
        trial.set_user_attr("pruned_reason", why["reason"])
        study.tell(trial, state=State.PRUNED)
        say(f"search: {label}: pruned at half budget ({why['reason']}); latency {cost['latency_ms']:.0f} ms")
        return
    study.tell(trial, [result["psnr"], cost["params"], cost["latency_ms"]])
    say(f"search: {label}: PSNR {result['psnr']:.3f} dB (half {result['half_psnr']:.3f}), "
        f"latency {cost['latency_ms']:.0f} ms CPU, train {result['train_cpu_s']:.0f} s CPU")
