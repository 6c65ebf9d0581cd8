"""The torch backend on CUDA queues its work on a stream of its own, never the legacy default stream.

No GPU here: torch.cuda's Stream and stream() are replaced by recorders, the model has no parameters (so
``.to("cuda")`` moves nothing) and the forward pass is replaced by one that notes which stream is current.
"""
from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mambalitesr.runtime.backends.torch_backend import TorchBackend  # noqa: E402


class NoParams(torch.nn.Module):
    config = types.SimpleNamespace(scale=2)

    def forward(self, x):  # (B, 3, h, w) -> (B, 3, 2h, 2w)
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)


def test_cuda_work_runs_on_a_non_default_stream(monkeypatch):
    created, current, synced = [], [None], []

    class FakeStream:
        def __init__(self, device=None):
            self.device = device
            created.append(self)

        def synchronize(self):
            synced.append(self)

    @contextlib.contextmanager
    def fake_stream(stream):
        previous, current[0] = current[0], stream
        try:
            yield
        finally:
            current[0] = previous

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", fake_stream)
    backend = TorchBackend(module=NoParams(), device="cuda:0")
    backend.load()
    assert len(created) == 1 and str(created[0].device) == "cuda:0"

    seen = []

    def forward(batch):
        seen.append(current[0])
        return np.zeros((1, 3, 8, 8), np.float32)

    monkeypatch.setattr(backend, "_forward", forward)
    backend._run(np.zeros((1, 3, 4, 4), np.float32))
    assert seen == [created[0]], "the forward pass did not run on the backend's own stream"
    assert synced == [created[0]], "the backend's stream was not synchronised before returning"


def test_cpu_needs_no_stream():
    backend = TorchBackend(module=NoParams(), device="cpu")
    backend.load()
    assert backend._stream is None
    assert backend._run(np.ones((1, 3, 4, 4), np.float32)).shape == (1, 3, 8, 8)
