"""Live streaming: sources -> FrameProcessor (pack, tile, infer, merge) -> sinks, in a threaded pipeline.

Glossary (code name -> meaning):
    sources     cameras (csi, v4l2), video files, image folders, a synthetic pattern (``parse_source``)
    sinks       window, video file, image folder, null (``parse_sink``)
    processing  one frame through a backend: planar float, tiles, uint8 BGR (``FrameProcessor``)
    banded      large images with memory bounded by one row of tiles (``upscale_image``)
    pipeline    one thread per stage, bounded queues, drops for live sources, reconnects (``Pipeline``)
    stats       per-stage latency, throughput, energy, the end-of-run summary (``RunStats``)
"""
