"""The ``mambalitesr`` command: one subcommand per job.

Each subcommand lives in its own module, which exposes ``register(subparsers)``
(adds its parser and sets ``func``). Those modules import nothing heavy at top
level, so ``mambalitesr --help`` stays fast; torch and friends load when a
command runs.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from mambalitesr import __version__
from mambalitesr.errors import UserError

# name -> module holding register(); order is the order of `mambalitesr --help`.
COMMANDS = {
    "eval": "mambalitesr.models.eval_cli",
    "export": "mambalitesr.export.export_cli",
    "models": "mambalitesr.models.models_cli",
    "train": "mambalitesr.models.train_cli",
    "search": "mambalitesr.models.study.search_cli",
    "upscale": "mambalitesr.runtime.upscale_cli",
    "camera": "mambalitesr.runtime.camera_cli",
    "serve": "mambalitesr.runtime.serve.serve_cli",
    "bench": "mambalitesr.benchmarks.bench_cli",
}


def build_parser() -> argparse.ArgumentParser:
    from mambalitesr.argtypes import OneLineParser

    parser = OneLineParser(
        prog="mambalitesr",
        description="Tiny Vision-Mamba super-resolution: upscale, evaluate, train, export, stream.",
    )
    parser.add_argument("--version", action="version", version=f"mambalitesr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(sub)
    return parser


def _forget_caught_keyboard_interrupts() -> None:
    """Clear CPython's "unhandled KeyboardInterrupt" flag once main() owns the exit status.

    CPython (since 3.8; seen here on 3.11) sets that flag when a KeyboardInterrupt leaves a string
    exec/eval, even if a caller catches it later; dataclasses and namedtuple build their methods with
    exec(str), as in the torch.onnx import that the model's first forward triggers. Under
    `python -m mambalitesr`, Py_RunMain then discards our exit status and ends the process with
    SIGINT after finalisation (status -2 instead of 130). Every string exec clears the flag when it
    starts, so an empty one does; a KeyboardInterrupt that really escapes main() sets it again on
    its way out.
    """
    exec("pass", {})


def _resolve(func):
    """A subcommand's handler: a function, or "module:function" for one that lives in a higher layer than the
    module that registered the parser (``search cost`` runs in benchmarks, its parser lives with the study)."""
    if isinstance(func, str):
        module, _, name = func.partition(":")
        return getattr(importlib.import_module(module), name)
    return func


def main(argv: list[str] | None = None) -> int:
    from mambalitesr import stopping

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a refused argument (its one line is printed: status 2), --help, --version
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        with stopping.handled(f"mambalitesr {args.command}"):  # SIGINT and SIGTERM alike: mambalitesr/stopping.py
            _apply_image_limits(args)
            result = _resolve(args.func)(args)
    except UserError as exc:
        print(f"mambalitesr {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # a command's module imports an optional package (torch) the install lacks
        from mambalitesr.optional import missing

        dependency = missing(exc, f"mambalitesr {args.command}")
        if dependency is None:
            raise
        print(f"mambalitesr {args.command}: error: {dependency}", file=sys.stderr)
        return dependency.exit_code
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        what = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        print(f"mambalitesr {args.command}: {what}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return 0
    finally:
        _forget_caught_keyboard_interrupts()
    return int(result or 0)


def _apply_image_limits(args) -> None:
    """--max-image-pixels / --max-image-mb where the command has them; the environment's limits otherwise."""
    from mambalitesr.imageio import set_limits

    set_limits(getattr(args, "max_image_pixels", None), getattr(args, "max_image_mb", None))
