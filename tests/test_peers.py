"""The peer networks of `mambalitesr bench peers` and the acceptance sentences computed from its rows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mambalitesr.benchmarks.peers import PEER_NAMES, PEERS, build_peer, render_markdown, summarize
from mambalitesr.errors import UserError


@pytest.mark.parametrize("name,params", [("safmn", (230_000, 250_000)), ("span", (400_000, 450_000)),
                                         ("fsrcnn", (12_000, 30_000))])
def test_peer_sizes_and_shapes(name, params):
    model = build_peer(name)
    n = sum(p.numel() for p in model.parameters())
    assert params[0] <= n <= params[1], f"{name}: {n} parameters"
    with torch.no_grad():
        y = model(torch.rand(1, 3, 12, 20))
    assert y.shape == (1, 3, 48, 80)


def test_unknown_peer_is_a_user_error():
    with pytest.raises(UserError, match="unknown peer"):
        build_peer("edsr")
    assert set(PEER_NAMES) == set(PEERS)


def _rows():
    rows = []
    for model, h, w, wall, cpu in [("mambalitesr_x4", 180, 320, 1.0, 0.5), ("dvmsr_x4", 180, 320, 3.3, 1.6),
                                   ("safmn", 180, 320, 1.2, 0.6), ("mambalitesr_x4", 360, 640, 4.4, 2.0)]:
        rows.append(dict(model=model, label=model, kind="ours", params=1, h=h, w=w, median_s=wall, min_s=wall,
                         cpu_median_s=cpu, psnr_set5=None, psnr_kind=""))
    return rows


def test_summary_ratios():
    lines = summarize(_rows())
    assert "  320x180: teacher/student = 3.30 (3.300 s / 1.000 s)" in lines  # wall
    assert "  320x180: teacher/student = 3.20 (1.600 s / 0.500 s)" in lines  # CPU
    assert "  320x180: student 1.000 s vs SAFMN 1.200 s (0.83x SAFMN's time)" in lines
    assert "  mambalitesr_x4: 640x360 costs 4.00x the 320x180 frame (4x the pixels)" in lines


def test_markdown_lists_every_row():
    result = {"device": "d", "created": "now", "command": "mambalitesr bench peers", "repeats": 2, "note": None,
              "machine": {"torch": "x", "threads": 1, "affinity": [0], "loadavg_before": (1.0, 1, 1),
                          "loadavg_after": (2.0, 1, 1)}, "rows": _rows()}
    result["summary"] = summarize(result["rows"])
    text = render_markdown(result, "d-peers.png")
    assert text.count("| mambalitesr_x4 |") == 2 and "teacher/student" in text


COMMITTED = sorted((Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "peers").glob("*.json"))


@pytest.mark.skipif(not COMMITTED, reason="no peers results committed")
@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_peers_markdown_is_generated_from_its_json(path):
    result = json.loads(path.read_text())
    assert result["schema"] == "mambalitesr-peers-1" and path.stem == result["device"]
    assert result["summary"] == summarize(result["rows"])  # the sentences are the rows' arithmetic
    assert path.with_suffix(".md").read_text() == render_markdown(result, path.stem + ".png")
