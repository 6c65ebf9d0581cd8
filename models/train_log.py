"""The training log: one CSV row per logged step, and a PNG of loss and validation PSNR."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from mambalitesr.imageio import atomic_path, write_bytes_atomic, write_failure

FIELDS = ["step", "loss", "train_psnr", "lr", "val_psnr", "val_ssim", "elapsed_s"]


class TrainLog:
    def __init__(self, run_dir: Path, resume_step: int = 0):
        self.path = Path(run_dir) / "log.csv"
        rows = self.read() if self.path.is_file() else []
        rows = [r for r in rows if int(r["step"]) <= resume_step]  # a resumed run rewrites what follows
        text = io.StringIO()
        writer = csv.DictWriter(text, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        write_bytes_atomic(self.path, text.getvalue())

    def read(self) -> list[dict]:
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def append(self, **row) -> None:
        try:  # appended in place: a log line lost to a full disk costs a line, not the run's checkpoint
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, FIELDS).writerow({k: row.get(k, "") for k in FIELDS})
        except OSError as exc:
            raise write_failure(self.path, exc) from None

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read()
        loss = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r["val_psnr"]]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        if loss:
            ax.plot(*zip(*loss), color="tab:blue", lw=0.8, label="training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("L1 loss")
        ax.set_yscale("log")
        if val:
            ax2 = ax.twinx()
            ax2.plot(*zip(*val), "o-", color="tab:red", label="validation PSNR-Y")
            ax2.set_ylabel("validation PSNR-Y (dB)")
        fig.legend(loc="upper right")
        fig.tight_layout()
        out = self.path.with_suffix(".png")
        try:
            with atomic_path(out) as tmp:
                fig.savefig(tmp, dpi=100)
        finally:
            plt.close(fig)
        return out
