"""The ``--sink http://HOST[:PORT][/][?fps=F&quality=Q&width=W]`` spec: where the viewer listens, how it encodes.

Glossary (code name -> meaning):
    host        ``localhost`` binds 127.0.0.1 (this machine only); any other address is the user's explicit
                choice (``0.0.0.0``: every interface) and is announced with a warning
    port        TCP port (default 8080; 0 picks a free one, printed when the server is up)
    fps         most JPEG encodes per second shared by all viewers (default 30)
    quality     JPEG quality 1..100 (default 85)
    width       most pixels across the encoded bicubic | SR picture; wider outputs are scaled down for
                display (default 3840: two 1920-wide halves)
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from mambalitesr.errors import UserError

DEFAULT_PORT = 8080
SPEC_FORM = "http://HOST[:PORT][?fps=F&quality=Q&width=W]"
_OPTIONS = {"fps": float, "quality": int, "width": int}


@dataclass(frozen=True)
class ViewerAddress:
    host: str  # what the socket binds
    port: int
    fps: float = 30.0
    quality: int = 85
    width: int = 3840

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def url(self, port: int | None = None) -> str:
        host = "localhost" if self.host == "127.0.0.1" else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port if port is None else port}/"

    def exposure_warning(self, port: int) -> str | None:
        """The warning printed when the viewer is reachable from other machines; None on loopback."""
        if self.loopback:
            return None
        where = "every network interface" if self.host in ("0.0.0.0", "::") else self.host
        return (f"web viewer: WARNING: listening on {where}, port {port}: anyone who can reach this machine "
                f"there can watch the stream (no password); use --sink http://localhost:{port} to keep it local")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to is the user's choice


def parse_address(spec: str) -> ViewerAddress:
    """``http://...`` sink spec -> ViewerAddress; UserError naming the problem otherwise."""
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"web sink {spec!r}: {exc}; use {SPEC_FORM}") from None
    if parts.scheme != "http":
        raise UserError(f"web sink {spec!r}: only http:// is served; use {SPEC_FORM}")
    if not parts.hostname:
        raise UserError(f"web sink {spec!r}: give a host, e.g. http://localhost:8080")
    if parts.path not in ("", "/") or parts.fragment or parts.username or parts.password:
        raise UserError(f"web sink {spec!r}: the page is served at the root; use {SPEC_FORM}")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    options: dict = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise UserError(f"web sink: unknown option {key!r} (use {', '.join(_OPTIONS)})")
        try:
            options[key] = _OPTIONS[key](value)
        except ValueError:
            raise UserError(f"web sink: {key}={value!r} needs a number") from None
    address = ViewerAddress(host, DEFAULT_PORT if port is None else port, **options)
    if not 0 < address.fps <= 120:
        raise UserError(f"web sink: fps must be in (0, 120], got {address.fps:g}")
    if not 1 <= address.quality <= 100:
        raise UserError(f"web sink: quality must be in 1..100, got {address.quality}")
    if address.width < 64:
        raise UserError(f"web sink: width must be >= 64 pixels, got {address.width}")
    return address


def check_bindable(address: ViewerAddress) -> None:
    """Bind and release the address once: UserError now for a busy port or a host that is not this
    machine's. (The server binds again at ``open``; something may still take the port in between.)"""
    if address.port == 0:
        return
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(sockaddr)
    except OSError as exc:
        raise UserError(f"web viewer: cannot listen on {address.host}:{address.port} "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
