"""A live web viewer for ``mambalitesr camera``: ``--sink http://HOST:PORT`` serves a page to watch the stream.

Glossary (code name -> meaning):
    ViewerAddress   the parsed ``http://`` sink spec: where to listen and the display options
    WebSink         the pipeline Sink (the stream registry's ``parse_sink`` builds it for ``http://`` specs): on the sink thread it
                    takes the chart points and hands the newest output to the viewer process, never waiting
    ViewerProcess   a separate process, every thread of it in SCHED_IDLE, for all the viewer's work: its own
                    interpreter, so 20 viewers add no GIL contention to the pipeline's stages
    slot, channel   how frames and figures cross: one shared-memory slot (a copy in, a copy out) and JSON
                    messages on a socket pair that the pipeline side never blocks on
    FrameEncoder    in the viewer process, JPEG-encodes the newest output (bicubic | SR side by side) once
                    per tick and publishes it; every viewer is sent that same byte string
    tick            one encode: at most ``fps`` per second, only while someone watches; outputs that arrive
                    faster are skipped (viewers see the newest, never a backlog)
    LiveTelemetry   samples the pipeline's RunStats (per-stage latency, FPS, watts) every SAMPLE_S; the
                    viewer process keeps what it was sent in a bounded TelemetryStore for the charts
    ViewerServer    the aiohttp app (viewer process) with its own event loop: the page, the MJPEG stream,
                    ``/stats`` and ``/summary``

Nothing here imports torch; aiohttp is the ``web`` extra (``pip install mambalitesr[web]``).
"""
