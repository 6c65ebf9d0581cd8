"""Live streaming on top of the frame core: sources -> FrameProcessor -> sinks, in a threaded pipeline.

Glossary (code name -> meaning):
    registry    ``--source`` / ``--sink`` specs -> the factory that builds them (``parse_source``, ``parse_sink``)
    sources     cameras (csi, v4l2), video files, image folders
    synthetic   a deterministic moving pattern that can simulate a camera disconnect
    sinks       window, video file, image folder, null
    pipeline    one thread per stage, bounded queues, drops for live sources, reconnects (``Pipeline``)
    stats       per-stage latency, throughput, energy, the end-of-run summary (``RunStats``)

The frame itself (planar float, tiles, inference, merge) is ``mambalitesr.runtime.core``.
"""
