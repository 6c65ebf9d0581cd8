"""The message channel between the pipeline process and its viewer process: JSON datagrams on a socket pair.

Glossary (code name -> meaning):
    Channel      one end of an AF_UNIX socket pair. Each message is one datagram (SOCK_SEQPACKET on Linux,
                 SOCK_DGRAM elsewhere): one JSON object, optionally carrying file descriptors (the frame
                 slot's memory). JSON, not pickle: neither side runs code the other sent
    try_send     never blocks: False when the peer has not read enough to make room. The pipeline side
                 must not wait on a viewer process that the scheduler starves on purpose (SCHED_IDLE);
                 what it could not send is sent again, newer, on its next frame
    receive      the next message, or None when none arrived within ``timeout`` (0: just look);
                 ChannelClosed when the peer is gone
"""
from __future__ import annotations

import json
import os
import select
import socket

MAX_MESSAGE = 1 << 20  # the largest JSON body: a run summary is a few KiB
MAX_FDS = 4


class ChannelClosed(Exception):
    """The process at the other end closed its end or died."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    # SOCK_SEQPACKET keeps message boundaries and reports a closed peer as end-of-file (Linux);
    # a datagram pair keeps boundaries too, where sequenced packets are not offered.
    kind = getattr(socket, "SOCK_SEQPACKET", None)
    try:
        if kind is not None:
            return socket.socketpair(socket.AF_UNIX, kind)
    except OSError:
        pass
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)


class Channel:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.setblocking(False)

    @classmethod
    def from_fd(cls, fd: int) -> "Channel":
        return cls(socket.socket(fileno=fd))

    def try_send(self, message: dict, fds: tuple[int, ...] = ()) -> bool:
        body = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
        try:
            if fds:
                socket.send_fds(self.sock, [body], list(fds))
            else:
                self.sock.send(body)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError) as exc:
            raise ChannelClosed(str(exc)) from None

    def receive(self, timeout: float = 0.0) -> tuple[dict, list[int]] | None:
        if timeout > 0:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
        try:
            body, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        except (BlockingIOError, InterruptedError):
            return None
        except (ConnectionResetError, OSError) as exc:
            raise ChannelClosed(str(exc)) from None
        if not body:
            for fd in fds:
                _close(fd)
            raise ChannelClosed("the other process closed the channel")
        return json.loads(body), fds

    def finish(self) -> None:
        """No more messages from this end: the peer reads what is queued, then end-of-file."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already

    def close(self) -> None:
        self.sock.close()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
