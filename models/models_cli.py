"""``mambalitesr models``: every registry entry with its parameters and MACs."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from mambalitesr.argtypes import side

    p = subparsers.add_parser("models", help="list the model variants with parameters and MACs")
    p.add_argument("--height", type=side(1), default=180, help="LR input height for MACs (default 180)")
    p.add_argument("--width", type=side(1), default=320, help="LR input width for MACs (default 320)")
    p.add_argument("--measure", action="store_true", help="also measure MACs by running each model (slower)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mambalitesr.models.complexity import analytic_macs, analytic_params, measure_macs, scan_updates
    from mambalitesr.models.registry import REGISTRY, create_model

    if args.height < 1 or args.width < 1:
        from mambalitesr.errors import UserError

        raise UserError(f"--height and --width must be positive, got {args.height} x {args.width}")
    header = f"{'model':<22} {'params':>9} {'GMACs':>8} {'Gscan':>7}  {'C':>3} {'GxM':>5} {'N':>3} {'r':>4} {'K':>2} {'x':>2}  weights"
    if args.measure:
        header += "  measured GMACs"
    print(f"MACs at {args.width}x{args.height} LR input (convs + matmuls); Gscan = scan state updates (1e9)")
    print(header)
    for name, entry in REGISTRY.items():
        c = entry.config
        weights = "shipped" if entry.weights_path and entry.weights_path.is_file() else "-"
        row = (
            f"{name:<22} {analytic_params(c):>9,} {analytic_macs(c, args.height, args.width) / 1e9:>8.2f} "
            f"{scan_updates(c, args.height, args.width) / 1e9:>7.2f}  {c.embed_dim:>3} {f'{c.groups}x{c.mixers}':>5} "
            f"{c.d_state:>3} {str(c.rank):>4} {c.directions:>2} {c.scale:>2}  {weights}"
        )
        if args.measure:
            row += f"  {measure_macs(create_model(name, pretrained=False, scan_backend='chunked'), args.height, args.width) / 1e9:.2f}"
        print(row)
    return 0
