"""What a data-loader worker process does before its first batch.

Glossary (code name -> meaning):
    worker          a ``torch.utils.data.DataLoader`` worker process (``TrainConfig.workers`` of them)
    fd server       the thread ``multiprocessing.resource_sharer`` starts in a worker to hand a batch's
                    shared-memory file descriptor to the trainer (torch's ``file_descriptor`` strategy)

Why this exists: when the trainer stops on a signal, it can exit while it is fetching a batch's file
descriptor. The worker's fd server then loses its peer mid-handshake and reports the
``ConnectionResetError`` through ``sys.excepthook`` (it catches everything itself, so ``threading.excepthook``
never sees it): a traceback on the stderr the worker shares with the trainer, after the trainer's own
one-line "terminated (SIGTERM)". Nothing is lost (the batch was never used, and the checkpoint is already
saved), so only that case is silenced; every other error in a worker still prints.
"""
from __future__ import annotations

import sys
import traceback
from types import TracebackType

_FD_SERVER_FILE = "resource_sharer.py"
_PEER_GONE = (ConnectionError, EOFError)


def _is_fd_server_losing_its_peer(exc_type: type[BaseException], tb: TracebackType | None) -> bool:
    if not issubclass(exc_type, _PEER_GONE) or tb is None:
        return False
    frames = traceback.extract_tb(tb)
    return bool(frames) and frames[0].filename.endswith(_FD_SERVER_FILE)


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training loader: install the error filter above."""
    default = sys.excepthook

    def hook(exc_type, exc, tb) -> None:
        if not _is_fd_server_losing_its_peer(exc_type, tb):
            default(exc_type, exc, tb)

    sys.excepthook = hook
