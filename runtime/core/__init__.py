"""The frame core: one frame (or image) through a backend, with no threads, no devices and no torch.

Glossary (code name -> meaning):
    frames      ``Frame`` (a captured picture) and ``Output`` (its super-resolved result)
    tiles       the tile grid and feathered-merge weights of a frame too large for one backend call
    framepath   the C frame path (pack to planar float, split tiles, merge, unpack to uint8) via ctypes
    processing  ``FrameProcessor``: plan, pack, infer, merge for frames of any size
    inference   ``InferenceQueue``: the one chunk -> submit -> store loop every caller runs
    banded      large images with memory bounded by one row of tiles (``upscale_image``)

Streaming (sources, sinks, the threaded pipeline) and the web viewer are built on top of this package;
nothing here imports them.
"""
