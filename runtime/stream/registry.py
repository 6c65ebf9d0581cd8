"""Sources and sinks by name: the one place that maps a ``--source`` / ``--sink`` spec to the code that builds it.

Glossary (code name -> meaning):
    spec        ``KIND:REST`` (``csi:0:1280x720@30``, ``file:out.mp4``, ``http://0.0.0.0:8080``) or a bare ``KIND``
    Registered  one entry: the factory as ``"module:function"`` (imported only when its kind is asked for, so
                a missing extra such as aiohttp costs nothing until it is used) and the form shown in errors
    factory     ``function(rest) -> Source | Sink``; a sink factory returns None when ``rest`` is not its form

Adding a source or a sink (an RTSP camera, a Triton or GStreamer sink) is one module of its own plus one line
here; nothing in the frame core or the pipeline changes, and nothing imports back up from this package.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from mambalitesr.errors import UserError


@dataclass(frozen=True)
class Registered:
    factory: str  # "package.module:function"
    form: str  # the spec's form, for help and errors

    def build(self, rest: str):
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)(rest)


_STREAM = "mambalitesr.runtime.stream"
SOURCES: dict[str, Registered] = {
    "csi": Registered(f"{_STREAM}.sources:csi_source", "csi:N[:WxH[@FPS]]"),
    "v4l2": Registered(f"{_STREAM}.sources:v4l2_source", "v4l2:/dev/videoN[:WxH[@FPS]]"),
    "file": Registered(f"{_STREAM}.sources:file_source", "file:PATH"),
    "images": Registered(f"{_STREAM}.sources:images_source", "images:DIR"),
    "synthetic": Registered(f"{_STREAM}.synthetic:synthetic_source", "synthetic[:WxH][@FPS][:drop_at=N][:gap=S]"),
    # IP cameras (runtime/stream/ip_camera.py): FFmpeg, or GStreamer + nvv4l2decoder on a Jetson
    **{scheme: Registered(f"{_STREAM}.ip_camera:{scheme}_source", form) for scheme, form in (
        ("rtsp", "rtsp://HOST[:PORT]/PATH"), ("rtsps", "rtsps://HOST[:PORT]/PATH"), ("http", "http://HOST/PATH (MJPEG)"),
        ("https", "https://HOST/PATH (MJPEG)"), ("gst", "gst:rtsp://...[#h265] (GStreamer)"),
        ("ffmpeg", "ffmpeg:rtsp://... (FFmpeg)"))},
}
SINKS: dict[str, Registered] = {
    "window": Registered(f"{_STREAM}.sinks:window_sink", "window"),
    "file": Registered(f"{_STREAM}.sinks:file_sink", "file:PATH"),
    "images": Registered(f"{_STREAM}.sinks:images_sink", "images:DIR"),
    "null": Registered(f"{_STREAM}.sinks:null_sink", "null"),
    "http": Registered("mambalitesr.runtime.web.sink:web_sink", "http://HOST:PORT"),
}
SOURCE_FORMS = tuple(r.form for r in SOURCES.values())
SINK_FORMS = tuple(r.form for r in SINKS.values())


def parse_source(spec: str):
    """Build the source a ``--source`` spec names (see SOURCE_FORMS); UserError for anything else."""
    kind, _, rest = spec.partition(":")
    if kind not in SOURCES:
        raise UserError(f"unknown source {spec!r}; use one of: {', '.join(SOURCE_FORMS)}")
    return SOURCES[kind].build(rest)


def parse_sink(spec: str):
    """Build the sink a ``--sink`` spec names (see SINK_FORMS); UserError for anything else."""
    kind, _, rest = spec.partition(":")
    sink = SINKS[kind].build(rest) if kind in SINKS else None
    if sink is None:
        raise UserError(f"unknown sink {spec!r}; use one of: {', '.join(SINK_FORMS)}")
    return sink
