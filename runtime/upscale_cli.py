"""``mambalitesr upscale``: super-resolve image and video files, tiled so any size fits in memory.

Glossary (code name -> meaning):
    IN...        image files, video files, or folders (their images); -o OUT a file for one input, else a folder
    --tile t     LR tile height (0 = whole images); --tile-width: LR tile width, 0 (default) = the full
                 image width, i.e. strips: the model's row-major scan sees whole rows, so strips match the
                 untiled result within 1/255 while narrower tiles do not (runtime/core/processing.py);
                 --tile-overlap o, the outer quarter of each overlap discarded, the middle feathered
                 (runtime/core/tiles.py)
    job          one input -> one output, written atomically; a failed job is reported and the rest go on,
                 and the exit status is non-zero when any failed
"""
from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

from mambalitesr import argtypes
from mambalitesr.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
DEFAULT_TILE = 64  # LR rows per strip
DEFAULT_OVERLAP = 16  # LR rows shared by neighbouring strips: 4 discarded at each edge, 8 feathered


def register(subparsers) -> None:
    from mambalitesr.runtime.backends.options import add_backend_arguments

    p = subparsers.add_parser(
        "upscale",
        help="super-resolve images and videos (tiled, any size)",
        description="Super-resolve image and video files. Large inputs are split into overlapping strips of full "
        "rows (the model scans whole rows) and merged with feathering, so memory stays bounded by the strip "
        "size, and the result matches the untiled one within 1/255. Outputs are written atomically.",
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="image or video files, or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUT", type=argtypes.output_path,
                   help="output file (one input) or folder (several inputs, or an existing folder)")
    add_backend_arguments(p, ("torch", "onnxruntime"))
    p.add_argument("--tile", type=argtypes.tile, default=DEFAULT_TILE,
                   help=f"LR tile height in pixels, 0 for whole images (default {DEFAULT_TILE})")
    p.add_argument("--tile-width", type=argtypes.tile, default=0,
                   help="LR tile width, 0 for the full image width (default: strips; narrower tiles bound memory "
                   "for very wide images, but the model's row scan then loses context: measured up to 40/255 off "
                   "the untiled result)")
    p.add_argument("--tile-overlap", type=argtypes.int_range(0, argtypes.MAX_SIDE), default=DEFAULT_OVERLAP,
                   help=f"LR overlap between tiles (default {DEFAULT_OVERLAP}; its outer quarter on each side is "
                   "discarded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    argtypes.add_overwrite(p)
    p.add_argument("--allow-truncated", action="store_true",
                   help="a video with fewer frames than its header declares (cut short, damaged) is written with a "
                   "warning naming the missing frames, instead of failing")
    argtypes.add_image_limits(p)
    p.set_defaults(func=run)


def _kind(path: Path) -> str:
    from mambalitesr.imageio import IMAGE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise UserError(f"{path}: unknown file type {suffix!r} (images: {', '.join(IMAGE_SUFFIXES)}; "
                    f"videos: {', '.join(VIDEO_SUFFIXES)})")


def expand_inputs(inputs: list[str]) -> tuple[list[Path], bool]:
    """Files named plus the images of folders named; and whether a folder was among them."""
    from mambalitesr.imageio import list_images

    files, had_folder = [], False
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files.extend(list_images(path))
            had_folder = True
        else:
            files.append(path)  # existence is checked per job, so one missing file does not stop the rest
    return files, had_folder


def plan_outputs(files: list[Path], output: Path, had_folder: bool, overwrite: bool = False
                 ) -> list[tuple[Path, Path]]:
    """(input, output) pairs; UserError when outputs would collide, overwrite an input, replace an existing
    file without ``overwrite``, or when -o names one file for several inputs."""
    from mambalitesr.argtypes import check_new_output
    from mambalitesr.imageio import IMAGE_SUFFIXES
    from mambalitesr.runtime.stream.sinks import VIDEO_FOURCC

    single = len(files) == 1 and not had_folder and not output.is_dir() and output.suffix != ""
    if not single and not output.is_dir() and output.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise UserError(f"{output}: one file name for {len(files)} inputs" + (" (a folder among them)" if had_folder
                        else "") + "; give a folder as -o")
    pairs = []
    for src in files:
        if single:
            dst = output
        else:
            if output.exists() and not output.is_dir():
                raise UserError(f"{output}: exists and is not a folder (several inputs need an output folder)")
            dst = output / src.name
        if src.suffix.lower() in VIDEO_SUFFIXES and dst.suffix.lower() not in VIDEO_FOURCC:
            if single:
                raise UserError(f"{dst}: cannot write {dst.suffix!r} video; use one of {', '.join(VIDEO_FOURCC)}")
            dst = dst.with_suffix(".mp4")  # e.g. .webm in a folder job: OpenCV writes no VP8/9 without extra codecs
        pairs.append((src, dst))
    if single:
        in_kind, out_kind = (_kind(files[0]) if files[0].suffix else None), None
        try:
            out_kind = _kind(output)
        except UserError:
            raise UserError(f"{output}: unknown output type {output.suffix!r}") from None
        if in_kind and in_kind != out_kind:
            raise UserError(f"{files[0]} is an {in_kind} but {output} names a {out_kind}")
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        key = dst.resolve()
        if key in seen:
            raise UserError(f"{src} and {seen[key]} would both be written to {dst}")
        if key == src.resolve():
            raise UserError(f"{src}: the output would overwrite the input; choose another -o")
        seen[key] = src
        check_new_output(dst, overwrite)
    return pairs


def upscale_one_image(processor, src: Path, dst: Path, progress) -> str:
    from mambalitesr.imageio import read_image, write_image
    from mambalitesr.runtime.core.banded import upscale_image
    from mambalitesr.runtime.core.frames import Frame

    rgb = read_image(src)
    out = upscale_image(processor, Frame(rgb, 0, time.perf_counter(), "rgb"), order="rgb", progress=progress)
    write_image(dst, out)
    return f"{rgb.shape[1]}x{rgb.shape[0]} -> {out.shape[1]}x{out.shape[0]}"


def upscale_one_video(processor, src: Path, dst: Path, progress, allow_truncated: bool = False) -> str:
    """Frames in, frames out, into a temporary file that is reopened and counted before the rename."""
    import cv2

    from mambalitesr.imageio import atomic_path, check_video, free_bytes
    from mambalitesr.runtime.core.banded import upscale_image
    from mambalitesr.runtime.stream.sinks import VIDEO_FOURCC
    from mambalitesr.runtime.stream.sources import VideoFileSource

    source = VideoFileSource(str(src), allow_truncated=allow_truncated)
    source.open()
    state = {"frames": 0, "size": None}
    try:
        fps = source.fps or 30.0
        with atomic_path(dst, check=lambda tmp: check_video(tmp, state["frames"], state["size"], dst)) as tmp:
            writer = None
            try:
                while True:
                    frame = source.read()
                    if frame is None:
                        break
                    out = upscale_image(processor, frame, order="bgr", progress=progress)
                    if writer is None:
                        state["size"] = out.shape[1], out.shape[0]
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC[dst.suffix.lower()]),
                                                 fps, state["size"])
                        if not writer.isOpened():
                            raise UserError(f"{dst}: OpenCV cannot write this video format here")
                    elif (out.shape[1], out.shape[0]) != state["size"]:
                        raise UserError(f"{src}: frame {state['frames']} changes size; a video keeps one size")
                    if free_bytes(tmp.parent) < min(out.nbytes, 1 << 20):  # the writer would fail silently
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    writer.write(out)
                    state["frames"] += 1
            finally:
                if writer is not None:
                    writer.release()
            if state["frames"] == 0:
                raise UserError(f"{src}: no frames could be decoded")
    finally:
        source.close()
    size = state["size"]
    return f"{state['frames']} frames at {fps:g} fps, {size[0]}x{size[1]} (audio not copied)"


def _tile_count(processor, src: Path) -> int | None:
    """Tiles the job will run, for the progress bar; None when the header cannot tell (the job then says why)."""
    try:
        if _kind(src) == "image":
            from mambalitesr.imageio import declared_size

            w, h = declared_size(src)
            return processor.plan(h, w).tiles
        import cv2

        cap = cv2.VideoCapture(str(src))
        try:
            n, w, h = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH,
                                                  cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        return n * processor.plan(h, w).tiles if n > 0 and w > 0 and h > 0 else None
    except (UserError, OSError, ValueError):
        return None


def announce_fixed_tiles(processor, pairs) -> None:
    """A fixed-shape graph tiles every larger image: say so, with the seam error measured on the first image."""
    backend = processor.backend
    if backend.fixed_hw is None:
        return
    th, tw = backend.fixed_hw
    first = next((src for src, _ in pairs if src.suffix.lower() not in VIDEO_SUFFIXES and src.is_file()), None)
    text = (f"upscale: the model's input is fixed at {tw}x{th}: larger images are cut into {tw}x{th} tiles "
            f"(overlap {processor.overlap}, feathered) and merged, with seams; a dynamic graph (the shipped one: "
            "omit --onnx, or `mambalitesr export onnx`) runs whole images")
    if first is not None:
        from mambalitesr.imageio import read_image

        try:
            rgb = read_image(first)
        except UserError:
            rgb = None
        if rgb is not None and (rgb.shape[0] > th or rgb.shape[1] > tw):
            from mambalitesr.runtime.core.seams import seam_crop, seam_spread

            crop = seam_crop(rgb, backend.fixed_hw)
            worst, mean = seam_spread(processor, crop)
            text += (f". Seam error measured on {first.name} ({crop.shape[1]}x{crop.shape[0]} crop): two tilings "
                     f"offset by half a tile differ by up to {worst:.0f}/255 (mean {mean:.2f}/255)")
    print(text, file=sys.stderr, flush=True)


def run(args) -> int:
    from tqdm import tqdm

    from mambalitesr.argtypes import check_input_file, printable
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import backend_options
    from mambalitesr.runtime.core.processing import FrameProcessor

    if any(t and args.tile_overlap >= t for t in (args.tile, args.tile_width)):
        raise UserError(f"--tile-overlap must be in [0, tile), got {args.tile_overlap}")
    options = backend_options(args)
    files, had_folder = expand_inputs(args.inputs)
    pairs = plan_outputs(files, Path(args.output), had_folder, args.overwrite)
    backend = create_backend(args.backend, **options)
    processor = FrameProcessor(backend, tile=args.tile or None, overlap=args.tile_overlap,
                               tile_width=args.tile_width or None)
    print(f"upscale: {backend.describe()}", file=sys.stderr)
    announce_fixed_tiles(processor, pairs)
    failures = 0
    for src, dst in pairs:
        bar = None
        try:
            check_input_file(src)  # before anything opens it: a FIFO would block, a non-UTF-8 name crashes OpenCV
            bar = tqdm(desc=src.name, unit="tile", total=_tile_count(processor, src),
                       disable=args.no_progress or None, leave=False, file=sys.stderr)
            if _kind(src) == "image":
                what = upscale_one_image(processor, src, dst, bar.update)
            else:
                what = upscale_one_video(processor, src, dst, bar.update, args.allow_truncated)
            print(f"{src} -> {dst}: {what}", file=sys.stderr)
        except (UserError, MemoryError) as exc:
            failures += 1
            why = exc if isinstance(exc, UserError) else "out of memory (too large for this machine; crop it)"
            print(f"mambalitesr upscale: {printable(src)}: error: {why}", file=sys.stderr)
        finally:
            if bar is not None:
                bar.close()
    backend.close()
    if failures:
        print(f"mambalitesr upscale: {failures} of {len(pairs)} input(s) failed", file=sys.stderr)
        return 1
    return 0
