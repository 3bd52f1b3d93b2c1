"""The test harness: `ScriptedPeer` / `run_script`, and the pytest plugin
(fixtures, the ``chunkings`` marker, ``--triostream-seed``).

docs/testing.md shows code from this module: `test_docs_examples_are_tested`
keeps the two in step.
"""

from __future__ import annotations

import random
import re

import pytest
import trio
import trio.testing
from hypothesis import given

from triostream import BufferedStream, CorruptFrameError, LengthPrefixed, Lines, Netstring
from triostream.testing._chunking import ChunkedStream, chunkings
from triostream.testing._conformance import check_buffered_stream
from triostream.testing._faults import Fault, FaultyStream, run_with_each_fault
from triostream.testing._scripted import ScriptedPeer, ScriptMismatch, run_script, split_chunks

pytest_plugins = ["pytester"]

Pair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]


# ---------------------------------------------------------------- the docs' example


async def serve_lines(stream: trio.abc.Stream) -> None:
    """A tiny line protocol: ``ECHO <text>`` and ``UPPER <text>``, one reply line each."""
    async with BufferedStream(stream) as buffered:
        async for line in buffered.lines(max_size=1024):
            command, _, argument = line.partition(b" ")
            if command == b"ECHO":
                reply = argument
            elif command == b"UPPER":
                reply = argument.upper()
            else:
                reply = b"ERR unknown command"
            await buffered.send_all(reply + b"\n")


async def test_line_protocol(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_lines, server)
        await run_script(
            client,
            [
                ("send_line", b"ECHO hi"),
                ("expect_line", b"hi"),
                ("send_line", b"UPPER hello"),
                ("expect_line", b"HELLO"),
                ("send", b"NOPE\r\n"),
                ("expect", b"ERR unknown command\n"),
                ("send_eof",),
                ("expect_eof",),  # the server closes when the client is done
            ],
        )


async def test_line_protocol_mismatch(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_lines, server)
        peer = ScriptedPeer(client)
        await peer.send_line(b"ECHO hi")
        await peer.expect_line(b"hi")
        await peer.send_line(b"ECHO hello")
        with pytest.raises(ScriptMismatch) as info:
            await peer.expect_line(b"help")
        await peer.close()
    assert str(info.value) == (
        "step 4 (expect_line): the bytes differ at stream offset 6 (byte 3 of this step)\n"
        "  expected: b'help\\n'\n"
        "  arrived:  b'hello\\n'\n"
        "                 ^"
    )


@pytest.mark.chunkings(n=20)
async def test_line_protocol_any_chunking(memory_stream_pair: Pair, chunk_sizes: list[int]) -> None:
    client, server = memory_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_lines, server)
        peer = ScriptedPeer(client, chunk_sizes=chunk_sizes)
        await peer.send(b"ECHO one\nUPPER two\r\nECHO three\n")
        await peer.expect(b"one\nTWO\nthree\n")
        await peer.send_eof()
        await peer.expect_eof()


@given(chunking=chunkings(max_chunk=8))
async def test_line_protocol_any_split(chunking: list[int]) -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"ECHO one\nUPPER two\r\nECHO three\n")
    await client.send_eof()
    await serve_lines(ChunkedStream(server, chunking))  # each read returns at most the next size
    await run_script(client, [("expect", b"one\nTWO\nthree\n"), ("expect_eof",)])


REQUEST = b"ECHO one\nUPPER two\nECHO three\n"
REPLIES = [b"one\n", b"TWO\n", b"three\n"]


async def test_line_protocol_reset_anywhere() -> None:
    async def scenario(fault: Fault) -> None:
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(REQUEST)
        await client.send_eof()
        faulty = FaultyStream(server, receive=fault)
        try:
            await serve_lines(faulty)
        except trio.BrokenResourceError:
            pass
        else:
            raise AssertionError("the server did not see the reset")
        assert faulty.bytes_received == fault.at_byte
        # One reply per whole line received before the reset, then the server closes.
        whole_lines = REQUEST[: faulty.bytes_received].count(b"\n")
        await run_script(client, [("expect", b"".join(REPLIES[:whole_lines])), ("expect_eof",)])

    await run_with_each_fault(scenario, len(REQUEST))


async def test_buffered_stream_passes_the_conformance_kit() -> None:
    report = await check_buffered_stream(
        lambda transport, nursery: BufferedStream(transport, max_buffer_size=4 << 20),
        max_buffered=4 << 20,
        receive_line=lambda stream: stream.receive_line(max_size=2 << 20),
        max_line=2 << 20,
    )
    assert report.not_run == []


# ---------------------------------------------------------------- ScriptedPeer


async def test_peer_steps_offsets_and_leftovers(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client)
    assert peer.transport_stream is client  # one name across the library, as BufferedStream's
    assert not hasattr(peer, "transport")
    await server.send_all(b"one\ntwo\nthree")
    await peer.expect_line(b"one")
    assert (peer.steps, peer.offset) == (1, 4)
    await peer.expect(b"tw")  # the rest of the chunk stays buffered for the next step
    await peer.expect(b"o\nthr")
    assert (peer.steps, peer.offset) == (3, 11)
    await peer.send(bytearray(b"x"))
    await peer.send_line(memoryview(b"y"), ending=b"\r\n")
    assert peer.bytes_sent == 4
    assert await server.receive_some() == b"xy\r\n"
    await server.send_eof()
    with pytest.raises(ScriptMismatch, match=r"expected EOF at stream offset 11, but data arrived\n  arrived:  b'ee'"):
        await peer.expect_eof()
    await peer.expect(b"ee")
    await peer.expect_eof()
    await peer.expect_eof()  # EOF stays EOF
    async with peer:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await peer.expect(b"x")


async def test_mismatch_is_an_assertion_error_reported_early(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client, timeout=None)
    await server.send_all(b"HEX")  # the difference is visible before all 6 bytes came
    with pytest.raises(AssertionError) as info:
        await peer.expect(b"HELLO\n")
    exc = info.value
    assert isinstance(exc, ScriptMismatch)
    assert (exc.step, exc.action, exc.expected, exc.arrived, exc.offset) == (1, "expect", b"HELLO\n", b"HEX", 2)
    # Nothing was consumed: the bytes are still there for another try.
    assert peer.offset == 0
    await peer.expect(b"HEX")


async def test_mismatch_on_eof(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client)
    await server.send_all(b"ok\nHEL")
    await server.send_eof()
    await peer.expect_line(b"ok")
    with pytest.raises(ScriptMismatch) as info:
        await peer.expect_line(b"HELLO")
    assert str(info.value) == (
        "step 2 (expect_line): the stream ended (EOF) at stream offset 6, after 3 of the 6 expected bytes\n"
        "  expected: b'HELLO\\n'\n"
        "  arrived:  b'HEL' then EOF\n"
        "                 ^"
    )
    assert info.value.offset == 6


async def test_timeout_says_what_was_awaited_and_what_arrived(
    memory_stream_pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client, timeout=5)
    await server.send_all(b"HEL")  # ... and then nothing
    start = trio.current_time()
    with pytest.raises(ScriptMismatch) as info:
        await peer.expect_line(b"HELLO")
    assert trio.current_time() - start == pytest.approx(5)
    assert str(info.value) == (
        "step 1 (expect_line): timed out after 5 s waiting at stream offset 3; 3 of the 6 expected bytes arrived\n"
        "  expected: b'HELLO\\n'\n"
        "  arrived:  b'HEL'\n"
        "                 ^"
    )
    # The step consumed nothing: the next one sees b"HEL" again, at once.
    with pytest.raises(ScriptMismatch, match=r"expected EOF at stream offset 0, but data arrived"):
        await peer.expect_eof()


async def test_timeout_with_nothing_arrived(memory_stream_pair: Pair, autojump_clock: trio.testing.MockClock) -> None:
    client, _server = memory_stream_pair
    peer = ScriptedPeer(client, timeout=2.5)
    with pytest.raises(ScriptMismatch, match=r"^step 1 \(expect\): timed out after 2.5 s .*; nothing arrived\n"):
        await peer.expect(b"x")
    with pytest.raises(ScriptMismatch, match=r"^step 2 \(expect_eof\): timed out after 2.5 s waiting for EOF"):
        await peer.expect_eof()


async def test_long_data_is_cut_around_the_difference(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    expected = bytes(range(256)) * 8
    arrived = bytearray(expected)
    arrived[1000] ^= 0xFF
    await server.send_all(arrived)
    with pytest.raises(ScriptMismatch) as info:
        await ScriptedPeer(client).expect(expected)
    message = str(info.value)
    assert "stream offset 1000 (byte 1000 of this step)" in message
    assert max(len(line) for line in message.splitlines()) < 400
    _, expected_line, arrived_line, caret_line = message.splitlines()
    assert expected_line.startswith("  expected: ...b'") and expected_line.endswith("... (2048 bytes)")
    assert arrived_line.startswith("  arrived:  ...b'")
    column = caret_line.index("^")
    assert caret_line.strip() == "^"
    assert expected_line[12:column] == arrived_line[12:column]  # the same escaped prefix ...
    assert expected_line[column : column + 4] != arrived_line[column : column + 4]  # ... the caret under \xNN


async def test_escaping_keeps_the_caret_aligned(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    await server.send_all(b"'\\\x00\r\n\"X")
    with pytest.raises(ScriptMismatch) as info:
        await ScriptedPeer(client).expect(b"'\\\x00\r\n\"Y")
    _, expected_line, arrived_line, caret_line = str(info.value).splitlines()
    assert expected_line == "  expected: b'\\'\\\\\\x00\\r\\n\"Y'"
    column = caret_line.index("^")
    assert (expected_line[column], arrived_line[column]) == ("Y", "X")


async def test_frames(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    codec = LengthPrefixed(1024)
    peer = ScriptedPeer(client, codec=codec)
    await peer.send_frame(b"ping")
    assert await server.receive_some() == b"\x00\x00\x00\x04ping"
    await server.send_all(codec.encode(b"pong") + codec.encode(b"pang"))
    await peer.expect_frame(b"pong")
    with pytest.raises(ScriptMismatch) as info:
        await peer.expect_frame(b"ping")
    assert str(info.value) == (
        "step 3 (expect_frame): the frame at stream offset 8 (8 bytes on the wire) differs from the expected frame"
        " at byte 1 of the frame (4 bytes, 4 expected)\n"
        "  expected: b'ping'\n"
        "  arrived:  b'pang'\n"
        "               ^"
    )
    await peer.expect(codec.encode(b"pang"))  # a mismatching frame stays unconsumed too
    await server.send_all(b"\xff\xff\xff\xffhuge")
    with pytest.raises(ScriptMismatch, match=r"stream offset 16 are not a valid frame of LengthPrefixed") as info:
        await peer.expect_frame(b"x")
    assert type(info.value.__cause__).__name__ == "FrameTooLongError"


async def test_frames_decode_any_valid_encoding(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client, codec=Lines(100))
    await server.send_all(b"crlf\r\nlf\npartial")
    await server.send_eof()
    await peer.expect_frame(b"crlf")
    await peer.expect_frame(b"lf")
    with pytest.raises(ScriptMismatch, match=r"stream ended \(EOF\) at stream offset 16, inside a frame") as info:
        await peer.expect_frame(b"partial")
    assert info.value.arrived == b"partial"


async def test_eof_inside_a_skipped_frame_is_not_called_between_frames(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client, codec=LengthPrefixed(10, on_too_long="discard"))
    await server.send_all(b"\x00\x00\x00\x64" + b"x" * 5)  # declares 100 bytes, sends 5
    await server.send_eof()
    with pytest.raises(ScriptMismatch, match="not a valid frame"):
        await peer.expect_frame(b"x")
    with pytest.raises(ScriptMismatch, match="inside an over-long frame being skipped") as info:
        await peer.expect_frame(b"x")
    assert "between frames" not in str(info.value)


async def test_frame_errors(memory_stream_pair: Pair, autojump_clock: trio.testing.MockClock) -> None:
    client, server = memory_stream_pair
    peer = ScriptedPeer(client, codec=Netstring(100), timeout=1)
    await server.send_all(b"5:hel")
    with pytest.raises(ScriptMismatch) as info:
        await peer.expect_frame(b"hello")
    assert str(info.value) == (
        "step 1 (expect_frame): timed out after 1 s waiting for a frame of Netstring(max_size=100,"
        " on_too_long='raise') at stream offset 0; 5 bytes of it arrived\n"
        "  expected: b'hello'\n"
        "  arrived:  b'5:hel'"
    )
    await server.send_all(b"lo;")
    with pytest.raises(ScriptMismatch, match=r"not a valid frame of Netstring.*CorruptFrameError: ") as info:
        await peer.expect_frame(b"hello")
    assert isinstance(info.value.__cause__, CorruptFrameError)
    assert info.value.arrived == b"5:hello;"
    with pytest.raises(ValueError, match="over max_size"):
        await peer.send_frame(b"x" * 101)  # the codec refuses it: a bug in the test, not a mismatch


async def test_frame_steps_need_a_codec(memory_stream_pair: Pair) -> None:
    client, _ = memory_stream_pair
    with pytest.raises(TypeError, match="needs a codec"):
        await ScriptedPeer(client).send_frame(b"x")
    with pytest.raises(ValueError, match="needs a codec"):
        await run_script(client, [("expect_frame", b"x")])


async def test_script_is_checked_before_it_runs(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    with pytest.raises(ValueError, match=r"script step 2: unknown action 'expect_lines'"):
        await run_script(client, [("send", b"a"), ("expect_lines", b"b")])
    with pytest.raises(ValueError, match=r"script step 1: 'send_eof' takes no argument"):
        await run_script(client, [("send_eof", b"")])
    with pytest.raises(ValueError, match=r"script step 1: 'send' takes one bytes argument"):
        await run_script(client, [("send",)])
    with pytest.raises(TypeError, match=r"script step 1's argument must be bytes.*not str"):
        await run_script(client, [("send", "text")])  # type: ignore[list-item]
    await client.send_eof()
    assert await server.receive_some() == b""  # nothing was sent


async def test_send_to_a_peer_that_is_gone(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    await server.aclose()
    with pytest.raises(ScriptMismatch, match=r"^step 1 \(send_line\): the other end is gone after 0 of 3 bytes"):
        await ScriptedPeer(client).send_line(b"hi")


async def test_send_to_a_peer_that_does_not_read(autojump_clock: trio.testing.MockClock) -> None:
    client, _server = trio.testing.lockstep_stream_pair()  # send_all waits for the reader
    with pytest.raises(ScriptMismatch, match=r"timed out after 5 s sending 3 bytes .*: the other end is not reading"):
        await ScriptedPeer(client).send_line(b"hi")


async def test_chunk_sizes_pace_the_sends(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    seen: list[bytes] = []

    async def reader() -> None:
        while chunk := await server.receive_some():
            seen.append(bytes(chunk))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        peer = ScriptedPeer(client, chunk_sizes=[1, 2, 3])
        await peer.send(b"abcdefghij")
        await peer.send(b"klm")  # no piece spans two sends; the sizes go on with the next one
        await peer.send_eof()
    assert seen == [b"a", b"bc", b"def", b"g", b"hi", b"j", b"k", b"lm"]


def test_split_chunks() -> None:
    assert split_chunks(b"abcdefg", [1, 2]) == [b"a", b"bc", b"d", b"ef", b"g"]
    assert split_chunks(b"", [3]) == []
    assert split_chunks(memoryview(b"abc"), iter([5])) == [b"abc"]
    with pytest.raises(ValueError, match="empty"):
        split_chunks(b"abc", [])
    with pytest.raises(ValueError, match=">= 1"):
        split_chunks(b"abc", [1, 0])


def test_bad_arguments() -> None:
    client, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="timeout"):
        ScriptedPeer(client, timeout=0)
    with pytest.raises(ValueError, match="chunk"):
        ScriptedPeer(client, chunk_sizes=[])


async def test_send_eof_needs_a_half_closeable_stream(memory_stream_pair: Pair) -> None:
    client, server = memory_stream_pair
    await ScriptedPeer(BufferedStream(client)).send_eof()
    assert await server.receive_some() == b""

    class NoEOF(trio.abc.Stream):
        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            raise NotImplementedError

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            raise NotImplementedError

        async def wait_send_all_might_not_block(self) -> None:
            raise NotImplementedError

        async def aclose(self) -> None:
            pass

    with pytest.raises(NotImplementedError, match="cannot send EOF"):
        await ScriptedPeer(NoEOF()).send_eof()


async def test_works_over_tcp(socket_stream_pair: tuple[trio.SocketStream, trio.SocketStream]) -> None:
    client, server = socket_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_lines, server)
        await run_script(
            client,
            [("send_line", b"UPPER tcp"), ("expect_line", b"TCP"), ("send_eof",), ("expect_eof",)],
            chunk_sizes=[1],
        )


# ---------------------------------------------------------------- the fixtures


def test_memory_stream_pair_in_a_sync_test(memory_stream_pair: Pair) -> None:
    left, right = memory_stream_pair
    assert isinstance(left, trio.StapledStream) and isinstance(right, trio.StapledStream)


async def test_memory_stream_pair(memory_stream_pair: Pair) -> None:
    left, right = memory_stream_pair
    await left.send_all(b"->")
    await right.send_all(b"<-")
    assert await right.receive_some() == b"->"
    assert await left.receive_some() == b"<-"


async def test_buffered_stream_pair(buffered_stream_pair: tuple[BufferedStream, BufferedStream]) -> None:
    left, right = buffered_stream_pair
    assert isinstance(left, BufferedStream) and isinstance(right, trio.abc.HalfCloseableStream)
    await left.send_all(b"a line\nrest")
    assert await right.receive_line() == b"a line"
    assert right.peek() == b"rest"


async def test_socket_stream_pair(socket_stream_pair: tuple[trio.SocketStream, trio.SocketStream]) -> None:
    client, server = socket_stream_pair
    assert isinstance(client, trio.SocketStream) and isinstance(server, trio.SocketStream)
    assert client.socket.getpeername() == server.socket.getsockname()
    await client.send_all(b"ping")
    assert await server.receive_some() == b"ping"
    await server.send_eof()
    assert await client.receive_some() == b""
    await client.aclose()  # closing early is fine: teardown closes again


def test_chunking_seeds_are_stable_and_distinct() -> None:
    from triostream.testing._plugin import chunking_seeds

    seeds = chunking_seeds("tests/x.py::test_y", 50)
    assert seeds == chunking_seeds("tests/x.py::test_y", 50)
    assert len(set(seeds)) == 50
    assert seeds != chunking_seeds("tests/x.py::test_z", 50)


_seen_seeds: list[int] = []


@pytest.mark.chunkings(n=7, max_chunk=3, count=10)
def test_chunkings_marker_in_this_suite(chunking_seed: int, chunk_sizes: list[int]) -> None:
    rng = random.Random(chunking_seed)
    assert chunk_sizes == [rng.randint(1, 3) for _ in range(10)]
    assert chunking_seed not in _seen_seeds
    _seen_seeds.append(chunking_seed)


# ---------------------------------------------------------------- the plugin, from outside

INNER = """
import pytest
import trio

from triostream.testing._scripted import ScriptedPeer

@pytest.mark.chunkings(n=5)
async def test_sizes(chunk_sizes, memory_stream_pair):
    assert len(chunk_sizes) == 64 and all(1 <= size <= 16 for size in chunk_sizes)
    await ScriptedPeer(memory_stream_pair[0], chunk_sizes=chunk_sizes).send(b"x" * 100)

@pytest.mark.chunkings(n=3)
def test_fails(chunking_seed):
    assert chunking_seed < 0

def test_once(chunk_sizes):
    assert chunk_sizes

async def test_socket(socket_stream_pair):
    client, server = socket_stream_pair
    await client.send_all(b"x")
    assert await server.receive_some() == b"x"
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER)
    return pytester


def _ids(result: pytest.RunResult, test: str) -> list[int]:
    return [int(seed) for seed in re.findall(rf"test_inner.py::{test}\[seed=(\d+)\]", result.stdout.str())]


def test_plugin_generates_repetitions_and_reports_seeds(inner: pytest.Pytester) -> None:
    result = inner.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=3)
    seeds = _ids(result, "test_sizes")
    assert len(seeds) == len(set(seeds)) == 5  # 5 distinct seeds, in the ids
    failing = set(_ids(result, "test_fails"))
    assert len(failing) == 3
    for seed in failing:
        result.stdout.fnmatch_lines([f"*triostream chunking seed: {seed} (replay with --triostream-seed={seed})*"])
    assert result.stdout.str().count("triostream chunking seed:") == 3  # only failures get the section
    assert len(_ids(result, "test_once")) == 1  # an unmarked test using the fixtures runs once, seed in its id
    # Reproducible: the same seeds on every run.
    again = inner.runpytest("-v", "-p", "no:cacheprovider")
    assert _ids(again, "test_sizes") == seeds


def test_plugin_replays_one_seed(inner: pytest.Pytester) -> None:
    result = inner.runpytest("-v", "-p", "no:cacheprovider", "--triostream-seed=123")
    result.assert_outcomes(passed=3, failed=1)
    assert set(_ids(result, "test_sizes")) == set(_ids(result, "test_fails")) == {123}
    result.stdout.fnmatch_lines(["*triostream chunking seed: 123*"])


def test_plugin_socket_pair_is_closed_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_closing="""
        kept = []

        async def test_use(socket_stream_pair):
            kept.extend(socket_stream_pair)

        def test_closed():
            assert len(kept) == 2
            assert all(stream.socket.fileno() == -1 for stream in kept)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_plugin_leaves_seeds_pinned_by_parametrize_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_pinned="""
        import pytest

        @pytest.mark.parametrize("chunking_seed", [1, 2])
        def test_x(chunk_sizes, chunking_seed):
            assert chunking_seed in (1, 2)
        """
    )
    recorder = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = recorder.listoutcomes()
    assert (len(skipped), len(failed)) == (0, 0)
    assert sorted(report.nodeid.rsplit("::", 1)[1] for report in passed) == ["test_x[1]", "test_x[2]"]


def test_plugin_refuses_a_marker_without_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_misuse="""
        import pytest

        @pytest.mark.chunkings(n=3)
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*chunkings needs the test to use the chunk_sizes or chunking_seed fixture*"])


def test_plugin_refuses_bad_marker_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_misuse="""
        import pytest

        @pytest.mark.chunkings(n=0)
        def test_x(chunk_sizes):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*chunkings(n=...) must be an int >= 1, not 0*"])


def test_plugin_is_registered_and_documents_itself(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*chunkings(n=20, [*], max_chunk=16, count=64): run the test n times*"])
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--triostream-seed=N*"])
