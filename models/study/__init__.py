"""The PSNR-oriented hyper-parameter study: which student to ship, chosen by measurement.

Glossary (code name -> paper symbol): C embed_dim, G groups, M mixers per group, N d_state,
E expand, r rank (None = full), K directions, a alpha (distillation weight), s scale;
params |theta|, MACs per frame at the latency input (320 x 180, H x W = 180 x 320),
PSNR the held-out PSNR-Y (dB) after a fixed short distillation budget.

Modules: space (the search space and the two reference configs), latency (CPU latency and
measured MACs of a config), trial (one short distillation run of a config), search (the
Optuna study: storage, pruning rule, resume), fit (PSNR against size, Pareto front, decision),
train_cost (low-rank vs full-rank training cost), report (models/study/README.md), plots
(its figures), search_cli (`mambalitesr search ...`).
"""
