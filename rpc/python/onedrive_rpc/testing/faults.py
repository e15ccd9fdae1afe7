"""A fault-injecting proxy for tests: pass, delay, cut, black-hole, cut after N bytes.

    proxy = FaultProxy(server.url).start()      # listens on tcp://127.0.0.1:<port>
    peer = rpc.connect(proxy.url)
    proxy.blackhole()        # stop forwarding; connections stay open (a dead link)
    proxy.cut()              # close every proxied connection now (a reset)
    proxy.cut_after(1000)    # forward 1000 more bytes (either way), then cut
    proxy.delay(0.05)        # forward everything 50 ms late, in order
    proxy.heal()             # back to passing everything through
    proxy.stop()

It speaks bytes, not frames, so it can cut a connection in the middle of
a frame. It works with any transport URL our library can connect to. A
tls:// target is passed through encrypted, over tcp: the proxy's URL is
tls:// too, and the client's TLS runs end to end with the server.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import gevent

from ..transport import ConnectionClosed, Listener, Stream, connect_stream, listen

__all__ = ["FaultProxy"]

log = logging.getLogger("onedrive_rpc.testing")

_CHUNK = 64 * 1024


class _Link:
    """One proxied connection: two pumps, one per direction."""

    def __init__(self, proxy: "FaultProxy", downstream: Stream, upstream: Stream) -> None:
        self.proxy = proxy
        self.streams = (downstream, upstream)
        self.closed = False
        self.pumps = [gevent.spawn(self._pump, downstream, upstream),
                      gevent.spawn(self._pump, upstream, downstream)]

    def _pump(self, src: Stream, dst: Stream) -> None:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        try:
            while not self.closed:
                n = src.recv_into(view)
                if n == 0:
                    break
                self.proxy.forward(self, dst, view[:n])
        except ConnectionClosed:
            pass
        if self.proxy.mode == "blackhole" and not self.closed:
            # A dead link carries no FIN either: the other side hears nothing.
            src.close()
            return
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in self.streams:
            stream.close()
        self.proxy.forget(self)


class FaultProxy:
    """A TCP (or any-scheme) proxy in this process whose behaviour tests change."""

    def __init__(self, target: str, listen_url: str = "tcp://127.0.0.1:0") -> None:
        self.target = target
        # TLS passes through as the TCP bytes it is.
        self._tls = target.startswith("tls://")
        self._upstream = "tcp://" + target[len("tls://"):] if self._tls else target
        self._listen_url = listen_url
        self._listener: Optional[Listener] = None
        self._acceptor: Optional[gevent.Greenlet] = None
        self._links: List[_Link] = []
        self._mode = "pass"
        self._delay = 0.0
        self._budget: Optional[int] = None
        #: Bytes forwarded (both directions) and dropped while black-holed.
        self.forwarded = 0
        self.dropped = 0

    @property
    def url(self) -> str:
        assert self._listener is not None, "start() the proxy first"
        url = self._listener.url
        if self._tls and url.startswith("tcp://"):
            return "tls://" + url[len("tcp://"):]
        return url

    @property
    def connections(self) -> int:
        return len(self._links)

    def start(self) -> "FaultProxy":
        self._listener = listen(self._listen_url)
        self._acceptor = gevent.spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.kill()
        if self._listener is not None:
            self._listener.close()
        self.cut()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------ the faults

    def heal(self) -> None:
        """Pass everything through again, at once."""
        self._mode, self._delay, self._budget = "pass", 0.0, None

    def delay(self, seconds: float) -> None:
        """Forward every chunk `seconds` late (order is kept)."""
        self._mode, self._delay = "delay", seconds

    def blackhole(self) -> None:
        """Drop everything both ways; keep the connections open (no FIN, no RST)."""
        self._mode = "blackhole"

    def cut(self) -> None:
        """Close every proxied connection now; new ones are accepted as usual."""
        for link in list(self._links):
            link.close()

    def cut_after(self, nbytes: int) -> None:
        """Forward `nbytes` more bytes (both directions counted), then cut
        whatever connection carries the byte after them, mid-frame or not;
        after that one cut, everything passes again."""
        self._mode, self._budget = "budget", nbytes

    # -------------------------------------------------------------- plumbing

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                downstream = self._listener.accept()
            except ConnectionClosed:
                return
            try:
                upstream = connect_stream(self._upstream, timeout=5.0)
            except OSError as exc:
                log.warning("proxy cannot reach %s: %s", self.target, exc)
                downstream.close()
                continue
            self._links.append(_Link(self, downstream, upstream))

    @property
    def mode(self) -> str:
        """What the proxy does to bytes now: pass, delay, blackhole or budget."""
        return self._mode

    def forget(self, link: _Link) -> None:
        """`link` closed: it no longer counts."""
        if link in self._links:
            self._links.remove(link)

    def forward(self, link: _Link, dst: Stream, data: memoryview) -> None:
        mode = self._mode
        if mode == "blackhole":
            self.dropped += len(data)
            return
        if mode == "delay" and self._delay > 0:
            gevent.sleep(self._delay)
        if mode == "budget" and self._budget is not None:
            if len(data) > self._budget:
                data = data[:self._budget]
                self._send(dst, data)
                self.heal()  # one cut; connections made after it pass
                link.close()
                return
            self._budget -= len(data)
        self._send(dst, data)

    def _send(self, dst: Stream, data: memoryview) -> None:
        while data:
            n = dst.send_nowait([data])
            self.forwarded += n
            data = data[n:]
            if data:
                dst.wait_writable()
