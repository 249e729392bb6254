"""A whole host on a plain :mod:`selectors` loop: no asyncio, no anyio, no threads.

This module is here to prove by its size what the package's layout promises: everything a host
decides (HTTP, WebSockets, the protocol, admission, timeouts, keepalive) is in the sans-IO
:class:`~io_backends.sansio.HostHub` and its :class:`~io_backends.sansio.HostConnection` objects,
so a driver only moves bytes between sockets and the hub and follows the hub's one deadline.
Workers cannot tell this host from :class:`~io_backends.host.HttpAgentServer`::

    host = SelectorsHost(port=9000)     # any HttpAgentService keyword: auth_token=, max_message_size=, ...
    host.serve_forever()                # until host.stop() (from a signal handler, say)

or ``python -m io_backends.host.selectors_host --port 9000``.

What it leaves out, on purpose: TLS, authenticators that must be awaited (a plain ``auth_token``
works) and graceful shutdown. Serve production traffic with ``HttpAgentServer``: the same hub on
asyncio, with all of those.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import selectors
import socket
import time
from typing import Any

from .._sockets import reset_on_close, set_no_delay
from ..sansio import HostConnection, Phase
from ..sansio._address import remote_host
from ._service import HttpAgentService

logger = logging.getLogger("io_backends.host")

_READ_SIZE = 262_144
_HIGH_WATER = 1 << 20  # unsent bytes of one socket above which the connection is told writing is paused
_NO_AWAIT = RuntimeError("SelectorsHost cannot await an authenticator: use HttpAgentServer, or auth_token=")


class _Socket:
    """One accepted socket: the hub's connection, and the bytes the kernel has not taken yet."""

    __slots__ = ("conn", "eof", "events", "out", "paused", "shut_after_write", "sock")

    def __init__(self, sock: socket.socket, conn: HostConnection) -> None:
        self.sock = sock
        self.conn = conn
        self.out = bytearray()
        self.paused = False
        self.shut_after_write = False
        self.events = selectors.EVENT_READ
        self.eof = False


class SelectorsHost:
    """Serve one :class:`HttpAgentService` on ``host:port`` from the calling thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, service: HttpAgentService | None = None, **kwargs: Any):
        self.service = service if service is not None else HttpAgentService(**kwargs)
        self.service.clock = time.monotonic
        self._hub = self.service.hub
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._sockets: dict[HostConnection, _Socket] = {}
        self._running = False

    def serve_forever(self) -> None:
        """Run the loop until :meth:`stop`, then close every socket."""
        self._running = True
        try:
            while self._running:
                self.run_once()
        finally:
            self.close()

    def stop(self) -> None:
        """Make :meth:`serve_forever` return after the current turn (safe from a signal handler)."""
        self._running = False

    def run_once(self, max_wait: float = 0.5) -> None:
        """One turn: wait for sockets or the next deadline (at most ``max_wait`` s), act, flush."""
        turns = [s for s in self._sockets.values() if s.conn.needs_turn]
        deadline = self._hub.next_deadline()
        wait = 0.0 if turns else max_wait
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        for key, events in self._selector.select(wait):
            if key.data is None:
                self._accept()
            else:
                if events & selectors.EVENT_WRITE:
                    self._write(key.data)
                if events & selectors.EVENT_READ:
                    self._read(key.data)
        for s in turns:
            s.conn.take_turn(time.monotonic())
        now = time.monotonic()
        deadline = self._hub.next_deadline()
        if deadline is not None and now >= deadline:
            self._hub.handle_timer(now)
        self._flush()

    def close(self) -> None:
        """Close the listener and every connection at once (pending calls fail at their callers)."""
        self.service.close_all()
        self._flush()
        for s in list(self._sockets.values()):
            self._gone(s, reset=True)
        self._selector.close()
        self._listener.close()

    # ------------------------------------------------------------------ moving bytes

    def _accept(self) -> None:
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of file descriptors, say: the hub's caps refuse the rest
            logger.warning("accept failed: %s", exc)
            return
        sock.setblocking(False)
        set_no_delay(sock)
        conn = self._hub.accept(time.monotonic(), remote_host(peer))
        s = self._sockets[conn] = _Socket(sock, conn)
        self._selector.register(sock, selectors.EVENT_READ, s)

    def _read(self, s: _Socket) -> None:
        try:
            data = s.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone(s, reset=True)
            return
        s.eof = not data  # the peer half-closed: nothing more to read, ever
        s.conn.receive_data(data, time.monotonic())

    def _write(self, s: _Socket) -> bool:
        """Hand the kernel what it takes; tell the connection when writing is paused. False: gone."""
        if s.out:
            try:
                sent = s.sock.send(s.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._gone(s, reset=True)
                return False
            del s.out[:sent]
        s.conn.unsent = len(s.out)
        paused = len(s.out) > _HIGH_WATER
        if paused != s.paused:
            s.paused = paused
            s.conn.writing_paused(paused, time.monotonic())
        return True

    def _flush(self) -> None:
        """Do what each connection the hub touched asks (closing one can touch others: loop)."""
        while dirty := self._hub.take_dirty():
            for conn in dirty:
                s = self._sockets.get(conn)
                if s is not None:
                    self._carry_out(s)

    def _carry_out(self, s: _Socket) -> None:
        """Write what the connection has, then close, half-close, and read or not as its phase says."""
        conn = s.conn
        if conn.phase is Phase.RESET:
            self._gone(s, reset=True)
            return
        verdict = conn.pending_verdict
        if verdict is not None:
            if inspect.iscoroutine(verdict):
                verdict.close()
            conn.give_verdict(_NO_AWAIT, time.monotonic())
        s.out += conn.data_to_send()
        if conn.phase is Phase.LINGERING and conn.take_half_close():
            s.shut_after_write = True
        if not self._write(s):
            return
        if not s.out and conn.phase is Phase.CLOSED:
            self._gone(s, reset=False)
            return
        if not s.out and s.shut_after_write:
            s.shut_after_write = False
            try:
                s.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        reading = selectors.EVENT_READ if conn.reading and not s.eof else 0
        self._watch(s, reading | (selectors.EVENT_WRITE if s.out else 0))

    def _watch(self, s: _Socket, events: int) -> None:
        """Select the socket for these events (none: leave it, its input waits in the kernel)."""
        if events == s.events:
            return
        if s.events == 0:
            self._selector.register(s.sock, events, s)
        elif events == 0:
            self._selector.unregister(s.sock)
        else:
            self._selector.modify(s.sock, events, s)
        s.events = events

    def _gone(self, s: _Socket, *, reset: bool) -> None:
        if s.events:
            self._selector.unregister(s.sock)
            s.events = 0
        if reset:
            reset_on_close(s.sock)
        s.sock.close()
        if self._sockets.pop(s.conn, None) is not None:
            s.conn.connection_lost(time.monotonic())
            self.service.connection_gone()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An autogen-http-runtime host on a plain selectors loop.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--auth-token", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = SelectorsHost(args.host, args.port, auth_token=args.auth_token)
    logger.info("selectors host listening on %s:%d", args.host, host.port)
    try:
        host.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

__all__ = ["SelectorsHost", "main"]
