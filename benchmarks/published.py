"""Published Set5 x4 figures of other SR networks, shown beside our measurements and labelled as published.

Glossary (code name -> meaning):
    psnr_y     Set5 x4 PSNR on the Y channel (dB) as printed in ``source``; not measured here
    params     parameter count as printed there
    source     the paper (and table) the figure is taken from
    note       how sure we are of the figure and how it relates to ours

These are other people's numbers under their training setups (data, iterations, crops). They are
never mixed into the measured tables; the report and the PSNR-vs-parameters plot mark them
"published, not measured".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    name: str
    psnr_y: float
    params: int
    source: str
    note: str = ""


PUBLISHED_SET5_X4 = (
    Published("FSRCNN", 30.71, 12_000,
              "Dong, Loy, Tang, \"Accelerating the Super-Resolution Convolutional Neural Network\", ECCV 2016; "
              "x4 figure as re-reported in later lightweight-SR comparison tables (e.g. CARN, ECCV 2018)",
              "the FSRCNN paper itself reports x2/x3; x4 comes from later re-trainings"),
    Published("ESPCN", 30.52, 25_000,
              "Shi et al., \"Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel "
              "Convolutional Neural Network\", CVPR 2016; x4 figure as commonly re-reported in later tables",
              "not checked against the paper's own table in this repository's sources; the paper's x4 "
              "figure depends on its training set (91 images vs ImageNet); parameters approximate (~25K)"),
    Published("IMDN", 32.21, 715_000,
              "Hui, Gao, Yang, Wang, \"Lightweight Image Super-Resolution with Information Multi-distillation "
              "Network\", ACM MM 2019, Table (x4)"),
    Published("SAFMN", 32.18, 240_000,
              "Sun, Pan, Zhu, Tang, \"Spatially-Adaptive Feature Modulation for Efficient Image "
              "Super-Resolution\", ICCV 2023, Table (x4)"),
    Published("SwinIR-light", 32.44, 897_000,
              "Liang et al., \"SwinIR: Image Restoration Using Swin Transformer\", ICCV Workshops 2021, "
              "lightweight SR table (x4)"),
    Published("MambaIR-light", 32.42, 924_000,
              "Guo et al., \"MambaIR: A Simple Baseline for Image Restoration with State-Space Model\", ECCV 2024, "
              "lightweight SR table (x4)"),
    Published("DVMSR", 32.19, 424_000,
              "Lei, Zhang, Cao, \"DVMSR: Distillated Vision Mamba for Efficient Super-Resolution\", CVPR "
              "Workshops 2024; figure as listed in the MambaLiteSR paper's Table II (arXiv 2502.14090v1)",
              "our teacher (dvmsr_x4) loads these published weights; its measured row is in the quality table"),
    Published("MambaLiteSR (paper)", 28.28, 370_000,
              "Aalishah et al., \"MambaLiteSR: Image Super-Resolution with Low-Rank Mamba using Knowledge "
              "Distillation\", ISQED 2025 (arXiv 2502.14090v1), Table II",
              "the paper's student after 2,500 training iterations (DVMSR: 500,000); not our student"),
)
