"""MambaLiteSR networks, the selective scan, training and evaluation.

Glossary (code name -> paper symbol):
    embed_dim     C   channels of the shallow features and tokens
    groups        G   residual groups
    mixers        M   Mamba mixers per group
    d_state       N   state size of the selective scan
    expand        E   d_inner = E * C, the scan's channel count D
    dt_rank       R   rank of the delta projection
    rank          r   rank of the low-rank in_proj / out_proj factorisation
    directions    K   scan orders over the H x W token grid (1 or 4)
    scale         s   upscaling factor
"""


def __getattr__(name: str):
    # Lazy, so that importing a command module does not load torch.
    if name in ("selective_scan", "selective_scan_ref"):
        from mambalitesr.models import scan

        return getattr(scan, name)
    if name in ("create_model", "list_models"):
        from mambalitesr.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["selective_scan", "selective_scan_ref", "create_model", "list_models"]
