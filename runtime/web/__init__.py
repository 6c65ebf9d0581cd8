"""A live web viewer for ``mambalitesr camera``: ``--sink http://HOST:PORT`` serves a page to watch the stream.

Glossary (code name -> meaning):
    ViewerAddress   the parsed ``http://`` sink spec: where to listen and the display options
    FrameEncoder    the one thread that JPEG-encodes the newest output (bicubic | SR side by side) once per
                    tick and publishes it; every viewer is sent that same byte string
    tick            one encode: at most ``fps`` per second, only while someone watches; outputs that arrive
                    faster are skipped (viewers see the newest, never a backlog)
    LiveTelemetry   samples the pipeline's RunStats (per-stage latency, FPS, watts) every SAMPLE_S into a
                    bounded history for the charts
    ViewerServer    the aiohttp app in a background thread with its own event loop: the page, the MJPEG
                    stream, ``/stats`` and ``/summary``
    WebSink         the pipeline Sink tying them together (``parse_sink`` builds it for ``http://`` specs)

Nothing here imports torch; aiohttp is the ``web`` extra (``pip install mambalitesr[web]``).
"""
