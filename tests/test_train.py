"""Training on the tiny variant: it learns, it resumes exactly, it runs under torchrun (gloo)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mambalitesr.imageio import write_image
from mambalitesr.models import create_model
from mambalitesr.models.distill import output_loss
from mambalitesr.models.train_config import TrainConfig
from mambalitesr.models.trainer import lr_factor, train


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    """Small smooth-plus-texture images, so there is something to learn."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder, count in (("train", 6), ("val", 2)):
        (root / folder).mkdir()
        for i in range(count):
            yy, xx = np.mgrid[0:96, 0:112] / 16.0
            base = np.stack([np.sin(xx + i), np.cos(yy * 1.3 - i), np.sin(xx * 0.7 + yy)], -1)
            img = (base * 90 + 128 + rng.normal(0, 1, base.shape)).clip(0, 255).astype(np.uint8)
            write_image(root / folder / f"img{i}.png", img)
    return root


def tiny_config(image_dirs, out, **overrides):
    cfg = dict(model="test_x4", train_dirs=[str(image_dirs / "train")], val_dir=str(image_dirs / "val"), out_dir=str(out),
               steps=30, batch=4, patch=12, lr=3e-3, warmup=3, workers=0, scan_backend="chunked", val_every=15,
               log_every=1, seed=7)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def read_losses(run_dir):
    with open(run_dir / "log.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_training_lowers_the_loss(image_dirs, tmp_path):
    result = train(tiny_config(image_dirs, tmp_path), progress=False)
    losses = read_losses(tmp_path)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "log.png").is_file()
    assert result["val"]["psnr_y"] > 10
    create_model("test_x4", tmp_path / "model.safetensors")  # the saved student loads with its config


def test_resume_reproduces_the_uninterrupted_run(image_dirs, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny_config(image_dirs, straight, steps=20), progress=False)
    train(tiny_config(image_dirs, resumed, steps=20), stop_after=9, progress=False)
    assert len(read_losses(resumed)) == 9
    train(tiny_config(image_dirs, resumed, steps=20), resume=True, progress=False)
    np.testing.assert_allclose(read_losses(resumed), read_losses(straight), rtol=1e-6)
    a = create_model("test_x4", straight / "model.safetensors").state_dict()
    b = create_model("test_x4", resumed / "model.safetensors").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)


def test_distillation_from_a_teacher(image_dirs, tmp_path):
    """A frozen teacher (here the tiny 4-direction variant, freshly saved) is cached once and used."""
    from mambalitesr.models.weights_io import save_weights

    teacher_path = tmp_path / "teacher.safetensors"
    save_weights(create_model("test_xs4_x4", pretrained=False), teacher_path, "test_xs4_x4")
    cfg = tiny_config(image_dirs, tmp_path / "run", steps=6, teacher="test_xs4_x4", teacher_weights=str(teacher_path))
    train(cfg, progress=False)
    assert list((tmp_path / "run" / "cache").glob("teacher-test_xs4_x4-*.npz"))
    cfg_feat = tiny_config(image_dirs, tmp_path / "feat", steps=4, teacher="test_xs4_x4",
                           teacher_weights=str(teacher_path), feature_weight=0.5)
    train(cfg_feat, progress=False)
    assert len(read_losses(tmp_path / "feat")) == 4


def test_output_distillation_loss():
    s, hr, t = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert output_loss(s, hr, t, 0.8).item() == pytest.approx(0.8 * 0.5 + 0.2 * 1.0)
    assert output_loss(s, hr, None, 0.8).item() == pytest.approx(1.0)
    # l2: squared distances, 0.8 * 0.25 + 0.2 * 1.0
    assert output_loss(s, hr, t, 0.8, "l2").item() == pytest.approx(0.8 * 0.25 + 0.2 * 1.0)


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, lr_min=1e-5)
    assert lr_factor(cfg, 0) == pytest.approx(0.1)
    assert lr_factor(cfg, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100) == pytest.approx(0.01)
    multi = TrainConfig(steps=100, warmup=0, schedule="multistep", milestones=(50, 80))
    assert [lr_factor(multi, s) for s in (0, 50, 80)] == [1.0, 0.5, 0.25]


def test_torchrun_two_processes_on_gloo(image_dirs, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "mambalitesr", "train", "--model", "test_x4", "--train", str(image_dirs / "train"),
           "-o", str(tmp_path / "ddp"), "--steps", "4", "--batch", "2", "--patch", "12", "--scan", "chunked",
           "--workers", "0", "--log-every", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "checkpoint.safetensors").is_file()
    assert len(read_losses(tmp_path / "ddp")) == 4


def test_checkpoint_is_safetensors_without_pickle(image_dirs, tmp_path):
    """The checkpoint a run writes is a safetensors file (no pickle), and the legacy .pt still resumes."""
    import torch

    from mambalitesr.models.checkpoint import LEGACY, LATEST, load_checkpoint

    run = tmp_path / "run"
    train(tiny_config(image_dirs, run, steps=6), stop_after=3, progress=False)
    assert (run / LATEST).read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then a JSON header
    assert not (run / LEGACY).exists()
    state = load_checkpoint(run)
    assert state["step"] == 3 and isinstance(state["optimizer"]["param_groups"][0]["betas"], tuple)
    torch.save(state, run / LEGACY)
    (run / LATEST).unlink()
    train(tiny_config(image_dirs, run, steps=6), resume=True, progress=False)
    assert load_checkpoint(run)["step"] == 6


def test_shrunk_copies_of_the_training_images(image_dirs):
    """--hr-scales 1 0.5: every 96x112 image once as it is and once at 48x56 (LR 12x14), each LR its HR's bicubic."""
    from mambalitesr.models.bicubic import downsample
    from mambalitesr.models.train_data import load_pairs

    plain = load_pairs([str(image_dirs / "train")], 4, 8, progress=False)
    both = load_pairs([str(image_dirs / "train")], 4, 8, progress=False, hr_scales=(1.0, 0.5))
    assert len(both) == 2 * len(plain) == 12
    shrunk = [p for p in both if p.name.endswith("@0.5")]
    assert [p.name.removesuffix("@0.5") for p in shrunk] == [p.name for p in plain]
    for pair in shrunk:
        assert pair.hr.shape == (48, 56, 3) and np.array_equal(pair.lr, downsample(pair.hr, 4))
    assert len(load_pairs([str(image_dirs / "train")], 4, 13, progress=False, hr_scales=(1.0, 0.5))) == 6  # 12 < 13


def test_hr_scales_outside_0_1_are_refused():
    with pytest.raises(ValueError, match="hr_scales"):
        TrainConfig(hr_scales=(1.0, 1.5))


def test_lr_images_are_labelled_by_the_teacher_and_never_held_out(image_dirs, tmp_path):
    """--lr-images: each image is an LR input at its own size; the teacher's SR (cached) is its HR; and it
    trains beside the paired images, outside the hold-out."""
    from mambalitesr.models.trainer import Trainer
    from mambalitesr.models.weights_io import save_weights

    teacher_path = tmp_path / "teacher.safetensors"
    save_weights(create_model("test_xs4_x4", pretrained=False), teacher_path, "test_xs4_x4")
    cfg = tiny_config(image_dirs, tmp_path / "run", steps=4, teacher="test_xs4_x4", teacher_weights=str(teacher_path),
                      lr_dirs=(str(image_dirs / "val"),), holdout_every=3)
    trainer = Trainer(cfg, progress=False)
    trainer._prepare_pairs()
    labelled = [p for p in trainer.train_pairs if p.name.startswith("lr:")]
    assert [p.name for p in labelled] == ["lr:val/img0.png", "lr:val/img1.png"]
    for pair in labelled:
        assert pair.lr.shape == (96, 112, 3) and pair.hr.shape == pair.teacher.shape == (384, 448, 3)
        np.testing.assert_array_equal(pair.hr, np.rint(pair.teacher.astype(np.float32) * 255).astype(np.uint8))
    assert len(trainer.holdout) == 2 and not any(p.name.startswith("lr:") for p in trainer.holdout)  # 6 paired / 3
    assert len(trainer.train_pairs) == 4 + 2
    assert trainer.fit()["step"] == 4
    with pytest.raises(Exception, match="lr_dirs"):  # a resumed run may not change its data
        train(tiny_config(image_dirs, tmp_path / "run", steps=6, teacher="test_xs4_x4",
                          teacher_weights=str(teacher_path), holdout_every=3), resume=True, progress=False)


def test_lr_images_need_a_cached_teacher():
    for extra in ({}, {"teacher": "dvmsr_x4", "cache_teacher": False}, {"teacher": "dvmsr_x4", "feature_weight": 0.5}):
        with pytest.raises(ValueError, match="lr_dirs"):
            TrainConfig(lr_dirs=("some/folder",), **extra)


@pytest.mark.parametrize("name", ["test_x4", "test_xs4_x4"])
def test_the_training_graph_gives_the_gradients_of_the_plain_one(name):
    """The trainer runs the mixers' channel-major graph (fewer layout copies); its loss and gradients are the
    token-major graph's."""
    model = create_model(name, pretrained=False, scan_backend="chunked").train()
    x, target = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0)), torch.rand(2, 3, 48, 40)
    results = []
    for layout in ("tokens", "channel_major"):
        model.set_graph_layout(layout)
        model.zero_grad()
        loss = (model(x) - target).abs().mean()
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
