"""The Ticker on a fake loop and a fake clock, over a real sans-IO Session
pair: when its one timer is set, what a tick does, how a silent peer is
reported, and why the time a tick was late (our own loop was blocked) is
not the peer's silence. No hub, no sleeps."""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

import pytest

from onedrive_rpc.driver import ticker as ticker_module
from onedrive_rpc.driver.ticker import STALL_THRESHOLD, Ticker
from onedrive_rpc.errors import PeerLost
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.testing.helpers import envelopes, framed, open_session_pair, wire

# open_session_pair(): both sides open at t=0, heartbeat every 1 s, the
# peer lost after 3 s of silence.
INTERVAL = 1.0
BOUND = 3.0

HEARTBEAT = framed(wire_pb2.Envelope(heartbeat=wire_pb2.Heartbeat(sent_us=1)))


class FakeTimer:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started: Optional[Tuple[Any, tuple]] = None
        self.closed = False

    def start(self, callback: Any, *args: Any) -> None:
        assert self.started is None, "a timer is started once"
        self.started = (callback, args)

    def close(self) -> None:
        self.closed = True

    def fire(self) -> None:
        assert self.started is not None, "fired a timer never started"
        callback, args = self.started
        callback(*args)


class FakeLoop:
    def __init__(self) -> None:
        self.timers: List[FakeTimer] = []

    def timer(self, delay: float) -> FakeTimer:
        timer = FakeTimer(delay)
        self.timers.append(timer)
        return timer

    @property
    def live(self) -> List[FakeTimer]:
        return [t for t in self.timers if not t.closed]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A Ticker for the client of a session pair; on_output "writes" what
    the session queued (as the Outbox would, stamping our last send)."""

    def __init__(self) -> None:
        self.client, _ = open_session_pair()
        self.loop = FakeLoop()
        self.clock = Clock()
        self.silences: List[PeerLost] = []
        self.written: List[bytes] = []
        #: Set to pretend the connection stopped reading (its backpressure).
        self.paused = False
        self.ticker = Ticker(self.loop, self.silences.append, self._output, clock=self.clock,
                             reading_paused=lambda: self.paused)

    def _output(self) -> None:
        self.written.append(wire(self.client, self.clock.now))

    def timer(self) -> FakeTimer:
        [timer] = self.loop.live
        return timer

    def tick_at(self, now: float) -> None:
        """The live timer fires at `now` (late if now is past its due)."""
        timer = self.timer()
        self.clock.now = now
        timer.fire()

    def peer_speaks(self, now: float) -> None:
        """The client reads a heartbeat from its peer at `now`."""
        self.client.receive_data(HEARTBEAT, now)


@pytest.fixture(autouse=True)
def fresh_blocked_report(monkeypatch):
    # report_blocked_loop logs once a second at most, process-wide: start
    # each test as if it never logged.
    monkeypatch.setattr(ticker_module, "_last_blocked_report", [float("-inf")])


def kinds(data: bytes) -> List[str]:
    return [env.WhichOneof("kind") for env in envelopes(data)]


def test_start_arms_one_timer_at_the_sessions_next_deadline():
    rig = Rig()
    rig.clock.now = 0.25
    rig.ticker.start(rig.client)
    timer = rig.timer()
    assert rig.client.next_deadline() == INTERVAL
    assert timer.delay == pytest.approx(INTERVAL - 0.25)
    assert rig.ticker.due == pytest.approx(INTERVAL)
    assert timer.started is not None and timer.started[1] == ()
    # Re-arming replaces the timer: one is live at a time.
    rig.ticker.arm(0.1)
    assert timer.closed and rig.timer().delay == 0.1
    assert rig.ticker.due == pytest.approx(0.35)


def test_a_tick_queues_a_heartbeat_tells_on_output_and_rearms():
    rig = Rig()
    rig.ticker.start(rig.client)
    first = rig.timer()
    rig.tick_at(INTERVAL)
    assert first.closed
    assert len(rig.written) == 1 and kinds(rig.written[0]) == ["heartbeat"]
    assert rig.silences == []
    # Sent at t=1: the next heartbeat is due one interval later.
    assert rig.timer().delay == pytest.approx(INTERVAL)
    assert rig.ticker.due == pytest.approx(2 * INTERVAL)


def test_a_tick_with_nothing_due_writes_nothing():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.ticker.arm(0.5)  # early: nothing is due at t=0.5
    rig.tick_at(0.5)
    assert rig.written == [] and rig.silences == []
    assert rig.ticker.due == pytest.approx(INTERVAL)


def test_a_silent_peer_is_reported_once_and_the_ticker_stops():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.tick_at(1.0)
    rig.tick_at(2.0)
    assert rig.silences == [] and len(rig.written) == 2
    assert rig.ticker.due == pytest.approx(BOUND)
    last = rig.timer()
    rig.tick_at(BOUND)
    assert len(rig.silences) == 1
    silent = rig.silences[0]
    assert isinstance(silent, PeerLost)
    assert silent.message == "peer lost: no sign of life for 3.000s (heartbeat bound 3.000s)"
    # Stopped: no timer left, nothing due, and a stray late firing is ignored.
    assert rig.loop.live == [] and rig.ticker.due == float("inf")
    rig.clock.now = BOUND + 1
    last.fire()
    assert len(rig.silences) == 1 and rig.loop.live == []
    # The session queued the Close that tells the peer why (on_output is
    # not called for it: the connection flushes it as it handles the loss).
    assert kinds(wire(rig.client)) == ["close"]


def test_a_peer_we_stopped_reading_is_not_reported_until_we_read_again():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.paused = True  # backpressure: what the peer sends waits unread
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        rig.tick_at(now)
    assert rig.silences == [] and len(rig.written) == 5  # our heartbeats still go out
    rig.paused = False  # reading again: from now on its silence counts
    rig.tick_at(6.0)
    rig.tick_at(7.0)
    assert rig.silences == []
    rig.tick_at(5.0 + BOUND)
    assert len(rig.silences) == 1


def test_a_peer_that_speaks_is_not_reported():
    rig = Rig()
    rig.ticker.start(rig.client)
    for second in range(1, 10):
        rig.peer_speaks(second - 0.5)
        rig.tick_at(rig.ticker.due)
    assert rig.silences == [] and len(rig.written) == 9


def test_a_late_tick_blames_our_loop_and_does_not_count_its_lateness_as_silence(caplog):
    rig = Rig()
    rig.ticker.start(rig.client)
    caplog.set_level(logging.WARNING, logger="onedrive_rpc")
    # Our loop was blocked from t=0 to t=5: the timer due at 1 fires at 5,
    # past the silence bound, with whatever the peer sent meanwhile unread.
    rig.tick_at(5.0)
    assert rig.silences == []
    # Not judged, but shown we are alive at once: a peer stuck with us (the
    # same process, a paused VM) is judging our silence just as long.
    assert [kinds(data) for data in rig.written] == [["heartbeat"]]
    blocked = [r for r in caplog.records if "event loop of this process was blocked" in r.message]
    assert len(blocked) == 1 and blocked[0].levelno == logging.WARNING
    assert "4.000s" in blocked[0].getMessage()  # how late the tick was
    # Of its 5 s of silence, 4 were ours: it has the rest of its bound.
    assert rig.client.liveness.silent_for(5.0) == pytest.approx(1.0)
    assert rig.ticker.due == pytest.approx(5.0 + INTERVAL)
    # The reader catches up on what the peer sent while we were stuck.
    rig.peer_speaks(5.01)
    rig.tick_at(rig.ticker.due)
    assert rig.silences == []


def test_after_a_stall_a_peer_still_silent_is_reported_once_its_own_silence_is_past_the_bound():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.tick_at(5.0)  # 4 s late: heard at 0, excused up to 4
    while not rig.silences:
        assert rig.clock.now < 4.0 + BOUND, "the silent peer was not found"
        rig.tick_at(rig.ticker.due)  # on time now: the peer really says nothing
    assert rig.clock.now == pytest.approx(4.0 + BOUND)
    assert rig.silences[0].message == (
        "peer lost: no sign of life for 3.000s (heartbeat bound 3.000s)")
    assert rig.loop.live == []


@pytest.mark.parametrize("late", [STALL_THRESHOLD, 0.4, 0.9 * INTERVAL])
def test_a_loop_late_on_every_tick_still_finds_a_dead_peer(late):
    """Each tick excuses only its own lateness, never more than the time
    since the tick before: the peer's silence grows until it is judged."""
    rig = Rig()
    rig.ticker.start(rig.client)
    stalls = 0.0
    for _ in range(100):
        if rig.silences:
            break
        rig.tick_at(rig.ticker.due + late)
        stalls += late
    assert len(rig.silences) == 1
    # Found once it was silent for its bound while we were there to hear.
    assert rig.clock.now <= BOUND + stalls + late


def test_timer_jitter_is_not_a_stall():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.tick_at(1.0 + STALL_THRESHOLD / 2)
    rig.tick_at(2.0 + STALL_THRESHOLD / 2)
    rig.tick_at(rig.ticker.due)
    assert len(rig.silences) == 1
    assert rig.clock.now == pytest.approx(BOUND)


def test_a_tick_a_little_late_judges_a_peer_that_spoke_meanwhile_alive():
    rig = Rig()
    rig.ticker.start(rig.client)
    rig.tick_at(5.0)
    rig.peer_speaks(5.02)
    rig.tick_at(rig.ticker.due + 2 * STALL_THRESHOLD)
    assert rig.silences == []


def test_the_blocked_loop_warning_is_rate_limited(caplog):
    rig = Rig()
    other = Rig()
    other.clock = rig.clock
    other.ticker = Ticker(other.loop, other.silences.append, other._output, clock=rig.clock)
    rig.ticker.start(rig.client)
    other.ticker.start(other.client)
    caplog.set_level(logging.WARNING, logger="onedrive_rpc")
    rig.tick_at(5.0)
    other.tick_at(5.0)  # a second connection finds the same stall: not logged again
    assert sum("was blocked" in r.message for r in caplog.records) == 1


def test_stop_closes_the_timer_and_later_ticks_do_nothing():
    rig = Rig()
    rig.ticker.start(rig.client)
    timer = rig.timer()
    rig.ticker.stop()
    assert timer.closed and rig.ticker.due == float("inf")
    rig.clock.now = 100.0  # long past the silence bound
    timer.fire()
    assert rig.silences == [] and rig.written == [] and rig.loop.live == []
    rig.ticker.arm()  # nothing to arm for until start()
    assert rig.loop.live == []
    rig.ticker.start(rig.client)  # a new stream: ticks again
    assert len(rig.loop.live) == 1
