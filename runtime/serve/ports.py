"""Free-port checks before a server starts, so a taken port is one clear line instead of a server log.

Glossary (code name -> meaning):
    host   the address the server binds (127.0.0.1 by default: loopback only)
    ports  {"HTTP": 8000, "gRPC": 8001, "metrics": 8002}: role -> TCP port
"""
from __future__ import annotations

import socket

from mambalitesr.errors import UserError


def check_free(host: str, ports: dict[str, int]) -> None:
    """UserError naming the first port that cannot be bound on ``host`` (in use, or not ours to bind)."""
    seen: dict[int, str] = {}
    for role, port in ports.items():
        if not 0 < port < 65536:
            raise UserError(f"--{role.lower()}-port must be 1..65535, got {port}")
        if port in seen:
            raise UserError(f"the {role} and {seen[port]} ports are both {port}; give each its own")
        seen[port] = role
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as exc:
                what = "is already in use (another server running?)" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
                raise UserError(f"{role} port {port} on {host} {what}; choose another with --{role.lower()}-port") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
