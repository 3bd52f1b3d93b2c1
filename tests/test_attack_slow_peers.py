"""Slow peers are cut off: ``read_timeout`` bounds the wait for a frame with
and without read-ahead, and skipping an over-long frame is not progress.

(Part of the attack suite: each test is a hostile peer a server meets.)
"""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing
import trustme

from triostream import (
    BufferedStream,
    CloseReason,
    FrameTooLongError,
    HalfCloseableBufferedStream,
    LengthPrefixed,
    Lines,
    open_connection,
)


async def trickle(stream: trio.abc.SendStream, data: bytes, interval: float) -> None:
    """Send ``data`` a byte at a time; stop when the server hangs up."""
    for byte in data:
        try:
            await stream.send_all(bytes([byte]))
        except trio.BrokenResourceError:
            return
        await trio.sleep(interval)


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "no-read-ahead"])
async def test_slowloris_is_cut_off(autojump_clock: trio.testing.MockClock, read_ahead: bool) -> None:
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        async with open_connection(right, read_timeout=2, read_ahead=read_ahead) as conn:
            await left.send_all(b"fast\n")
            assert await conn.receive_line() == b"fast"
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, left, b"x" * 1000, 0.5)  # never a newline
                with pytest.raises(trio.BrokenResourceError) as info:
                    await conn.receive_line()
                nursery.cancel_scope.cancel()
            assert trio.current_time() - start == pytest.approx(2, abs=0.6)
            assert conn.close_reason is CloseReason.TIMEOUT
            assert isinstance(info.value.__cause__, trio.TooSlowError)


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "no-read-ahead"])
async def test_retried_receive_continues_the_same_clock(
    autojump_clock: trio.testing.MockClock, read_ahead: bool
) -> None:
    """A handler that retries a receive after its own short timeout does not
    give a slowloris peer a fresh read_timeout each time."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        async with open_connection(right, read_timeout=3, read_ahead=read_ahead) as conn:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, left, b"y" * 1000, 0.5)
                with pytest.raises(trio.BrokenResourceError):
                    while True:
                        with trio.move_on_after(1):
                            await conn.receive_line()
            assert trio.current_time() - start == pytest.approx(3, abs=1.1)
            assert conn.close_reason is CloseReason.TIMEOUT


async def test_discarding_a_huge_declared_frame_is_not_progress(autojump_clock: trio.testing.MockClock) -> None:
    """A peer declares 2**63 - 1 bytes and trickles them: skipping them in
    discard mode does not count as progress against read_timeout."""
    codec = LengthPrefixed(100, length_size=8, on_too_long="discard")
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        async with open_connection(right, read_timeout=2) as conn:
            await left.send_all((2**63 - 1).to_bytes(8, "big"))
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, left, b"z" * 1000, 0.5)
                with pytest.raises((trio.BrokenResourceError, FrameTooLongError)) as first:
                    await conn.receive_frame(codec)
                if isinstance(first.value, FrameTooLongError):
                    # Reported as soon as the header showed it; the skip then
                    # runs into the timeout.
                    with pytest.raises(trio.BrokenResourceError):
                        await conn.receive_frame(codec)
                nursery.cancel_scope.cancel()
            assert trio.current_time() - start < 4
            assert conn.close_reason is CloseReason.TIMEOUT


async def test_discarding_an_over_long_line_is_not_progress(autojump_clock: trio.testing.MockClock) -> None:
    codec = Lines(10, on_too_long="discard")
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        async with open_connection(right, read_timeout=2) as conn:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, left, b"w" * 1000, 0.25)
                with pytest.raises((trio.BrokenResourceError, FrameTooLongError)) as first:
                    await conn.receive_frame(codec)
                if isinstance(first.value, FrameTooLongError):
                    with pytest.raises(trio.BrokenResourceError):
                        await conn.receive_frame(codec)
                nursery.cancel_scope.cancel()
            assert trio.current_time() - start < 6
            assert conn.close_reason is CloseReason.TIMEOUT


async def test_a_steady_stream_of_frames_is_never_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    """The clock restarts for each new frame: a peer sending a line every
    second against read_timeout=2 is served for as long as it likes."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        async with open_connection(right, read_timeout=2) as conn:

            async def steady() -> None:
                for i in range(30):
                    await left.send_all(b"line %d\n" % i)
                    await trio.sleep(1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(steady)
                for i in range(30):
                    assert await conn.receive_line() == b"line %d" % i
            assert not conn.closed


_CA = trustme.CA()


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _CA.issue_cert("example.org").configure_cert(context)
    return context


@pytest.mark.parametrize("kind", ["BufferedStream", "HalfCloseableBufferedStream", "Connection"])
async def test_start_tls_with_a_silent_peer_times_out(autojump_clock: trio.testing.MockClock, kind: str) -> None:
    context = _server_context()
    _left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(100):
        if kind == "Connection":
            async with open_connection(right) as conn:
                with pytest.raises(trio.TooSlowError):
                    await conn.start_tls(context, server_side=True, handshake_timeout=3)
        else:
            stream = BufferedStream(right) if kind == "BufferedStream" else HalfCloseableBufferedStream(right)
            start = trio.current_time()
            with pytest.raises(trio.TooSlowError):
                await stream.start_tls(context, server_side=True, handshake_timeout=3)
            assert trio.current_time() - start == pytest.approx(3)
            await stream.aclose()


@pytest.mark.parametrize("kind", ["BufferedStream", "HalfCloseableBufferedStream", "Connection"])
@pytest.mark.parametrize("failure", ["not TLS", "silent"])
async def test_after_a_failed_start_tls_nothing_goes_out_or_comes_in_as_plaintext(
    autojump_clock: trio.testing.MockClock, kind: str, failure: str
) -> None:
    """A handshake that fails (the peer answers in plaintext) or times out
    leaves the stream unusable, as documented: the next send and receive
    raise trio.BrokenResourceError (a Connection's may say it ended:
    ClosedResourceError), and nothing is sent or read in plaintext (no
    STARTTLS downgrade)."""
    context = _server_context()
    left, right = trio.testing.memory_stream_pair()
    if failure == "not TLS":
        await left.send_all(b"EHLO plaintext\r\n")
    expected = trio.TooSlowError if failure == "silent" else trio.BrokenResourceError
    with trio.fail_after(100):
        if kind == "Connection":
            async with open_connection(right) as conn:
                with pytest.raises(expected):
                    await conn.start_tls(context, server_side=True, handshake_timeout=3)
                await left.send_all(b"more plaintext\n")
                with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                    await conn.send_all(b"secret\n")
                with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                    await conn.receive_line()
        else:
            stream = BufferedStream(right) if kind == "BufferedStream" else HalfCloseableBufferedStream(right)
            with pytest.raises(expected):
                await stream.start_tls(context, server_side=True, handshake_timeout=3)
            await left.send_all(b"more plaintext\n")
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"secret\n")
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_line()
            await stream.aclose()
        sent = bytearray()
        with trio.move_on_after(1):
            while chunk := await left.receive_some():
                sent += chunk
    assert b"secret" not in sent


@pytest.mark.parametrize("kind", ["BufferedStream", "HalfCloseableBufferedStream", "Connection"])
async def test_aclose_during_a_start_tls_handshake_closes_at_once(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    """Another task closes the stream while start_tls waits for a silent
    peer's handshake: aclose returns at once (it does not wait for the
    handshake, nor raise because the handshake holds the send side) and
    start_tls raises (the transport is closed under it)."""
    context = _server_context()
    _left, right = trio.testing.memory_stream_pair()
    raised: list[type[BaseException]] = []

    async def upgrade(stream: BufferedStream) -> None:
        with pytest.raises((trio.ClosedResourceError, trio.BrokenResourceError)) as info:
            await stream.start_tls(context, server_side=True)
        raised.append(info.type)

    async def close_during_handshake(stream: BufferedStream) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upgrade, stream)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await stream.aclose()
            assert trio.current_time() == start  # no wait on the (virtual) clock

    with trio.fail_after(100):
        if kind == "Connection":
            async with open_connection(right) as conn:
                await close_during_handshake(conn)
        else:
            stream = BufferedStream(right) if kind == "BufferedStream" else HalfCloseableBufferedStream(right)
            await close_during_handshake(stream)
    assert len(raised) == 1


@pytest.mark.parametrize("kind", ["BufferedStream", "HalfCloseableBufferedStream"])
async def test_aclose_over_tls_to_a_peer_that_stops_reading_is_bounded(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    """After start_tls, closing means a close_notify the peer must read
    (trio.SSLStream.aclose waits for it): against a peer that stops
    reading, aclose gives up after close_timeout seconds and closes the
    transport forcefully."""
    server_ctx = _server_context()
    client_ctx = ssl.create_default_context()
    _CA.configure_trust(client_ctx)
    left, right = trio.testing.lockstep_stream_pair()  # every send waits for the peer's read
    kinds = {"BufferedStream": BufferedStream, "HalfCloseableBufferedStream": HalfCloseableBufferedStream}
    stream = kinds[kind](right, close_timeout=3)  # (the new stream start_tls returns keeps it)
    client = trio.SSLStream(left, client_ctx, server_hostname="example.org")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        upgraded = await stream.start_tls(server_ctx, server_side=True)
    assert upgraded.close_timeout == 3
    with trio.fail_after(100):
        start = trio.current_time()
        await upgraded.aclose()  # the client never reads again
        assert trio.current_time() - start == pytest.approx(3)
    with pytest.raises(trio.ClosedResourceError):
        await right.receive_some()  # the transport is closed


def test_close_timeout_is_checked_at_the_call() -> None:
    transport = trio.testing.memory_stream_pair()[1]
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="close_timeout"):
            BufferedStream(transport, close_timeout=bad)
    for wrong in (None, "10", True):
        with pytest.raises(TypeError, match="close_timeout"):
            BufferedStream(transport, close_timeout=wrong)  # type: ignore[arg-type]
    assert BufferedStream(transport).close_timeout == 10


async def test_start_tls_refuses_a_bad_handshake_timeout() -> None:
    _left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    with pytest.raises(ValueError, match="handshake_timeout"):
        await stream.start_tls(_server_context(), server_side=True, handshake_timeout=-1)
    async with open_connection(trio.testing.memory_stream_pair()[1]) as conn:
        with pytest.raises(TypeError, match="handshake_timeout"):
            await conn.start_tls(_server_context(), server_side=True, handshake_timeout="10")  # type: ignore[arg-type]


async def test_read_timeout_does_not_cut_an_idle_client_between_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """read_timeout is for frames that have begun: a client that got its
    answer and stays quiet is idle_timeout's business (Redis keeps such
    clients by default); one that then starts a request and stalls is cut."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(1000):
        async with open_connection(right, read_timeout=2) as conn:
            await left.send_all(b"PING\n")
            assert await conn.receive_line() == b"PING"
            conn.write(b"PONG\n")
            start = trio.current_time()

            async def quiet_then_stall() -> None:
                await trio.sleep(100)  # idle between requests: fine
                await left.send_all(b"PI")  # a request begins, and stalls

            async with trio.open_nursery() as nursery:
                nursery.start_soon(quiet_then_stall)
                with pytest.raises(trio.BrokenResourceError):
                    await conn.receive_line()
            assert trio.current_time() - start == pytest.approx(102, abs=0.5)
            assert conn.close_reason is CloseReason.TIMEOUT
