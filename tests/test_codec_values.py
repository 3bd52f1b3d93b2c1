"""Codecs as values (issue #9): immutable, equal by configuration, typed,
picklable; the public names; a stream's decoders keyed by codec equality and
bounded."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import typing

import pytest
import trio
import trio.testing
from scripted import ScriptedStream

import triostream
from triostream import (
    BufferedStream,
    Codec,
    Delimited,
    FixedSize,
    FrameChannel,
    FrameTooLongError,
    LengthPrefixed,
    Lines,
    Netstring,
    ReceiveBuffer,
    VarintPrefixed,
)

# Two instances of each configuration, built separately: equal, not identical.
CONFIGURATIONS: list[typing.Callable[[], Codec]] = [
    lambda: Lines(100),
    lambda: Lines(100, strip_cr=False, on_too_long="discard"),
    lambda: Delimited((b"\r\n", b";"), 50, keep_delimiter=True),
    lambda: LengthPrefixed(1000, length_size=2, byteorder="little", length_offset=1, length_adjustment=-1),
    lambda: Netstring(1000, on_too_long="discard"),
    lambda: FixedSize(8),
    lambda: VarintPrefixed(5000),
]


@pytest.mark.parametrize("make", CONFIGURATIONS)
def test_codecs_are_immutable_values(make: typing.Callable[[], Codec]) -> None:
    codec, twin = make(), make()
    assert codec is not twin
    assert codec == twin
    assert hash(codec) == hash(twin)
    assert {codec: "x"}[twin] == "x", "usable as a dict key"
    assert repr(codec) == repr(twin)
    for field in dataclasses.fields(codec):  # type: ignore[arg-type]
        with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
            setattr(codec, field.name, getattr(codec, field.name))
    with pytest.raises(AttributeError):
        codec.surprise = 1  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(codec)) == codec
    assert copy.copy(codec) == codec
    assert copy.deepcopy(codec) == codec


def test_different_configurations_differ() -> None:
    codecs = [make() for make in CONFIGURATIONS] + [
        Lines(101),
        Delimited(b"\n", 100),  # not Lines(100): Lines strips a b"\r"
        LengthPrefixed(1000),
        LengthPrefixed(1000, on_too_long="discard"),
        Netstring(1000),
        VarintPrefixed(5000, on_too_long="discard"),
    ]
    assert len(set(codecs)) == len(codecs)
    assert Lines(100) != Delimited(b"\n", 100)


def test_repr_shows_the_configuration() -> None:
    assert repr(Lines(100)) == "Lines(max_size=100, strip_cr=True, on_too_long='raise')"
    assert repr(Netstring(100)) == "Netstring(max_size=100, on_too_long='raise')"
    assert repr(FixedSize(3)) == "FixedSize(n=3)"
    assert repr(Delimited((b"a", b"b"), 9)) == (
        "Delimited(delimiters=(b'a', b'b'), max_size=9, keep_delimiter=False, on_too_long='raise')"
    )


@pytest.mark.parametrize(
    ("cls", "names"),
    [
        (Lines, {"delimiters", "max_size", "keep_delimiter", "on_too_long", "strip_cr"}),
        (Delimited, {"delimiters", "max_size", "keep_delimiter", "on_too_long"}),
        (
            LengthPrefixed,
            {
                "max_size",
                "length_size",
                "byteorder",
                "length_offset",
                "length_adjustment",
                "include_header",
                "on_too_long",
            },
        ),
        (Netstring, {"max_size", "on_too_long"}),
        (VarintPrefixed, {"max_size", "on_too_long"}),
        (FixedSize, {"n"}),
        (FrameChannel, {"stream", "codec"}),
        (ReceiveBuffer, {"capacity"}),
        (triostream.FrameParser, {"codec", "decoder", "buffer"}),
    ],
)
def test_public_attributes_are_declared_with_a_type(cls: type, names: set[str]) -> None:
    hints = typing.get_type_hints(cls)
    assert names <= set(hints), f"undeclared: {names - set(hints)}"


def test_public_names() -> None:
    public = set(triostream.__all__)
    assert {"FrameParser", "FrameDecoder", "Codec", "ReceiveBuffer"} <= public
    assert not {"Decoder", "normalize_delimiters"} & public
    assert not hasattr(triostream, "Decoder")
    assert not hasattr(triostream, "normalize_delimiters")
    # One name for one thing: the buffer's discard is discard_until, like the stream's.
    assert hasattr(ReceiveBuffer, "discard_until")
    assert hasattr(BufferedStream, "discard_until")
    assert not hasattr(ReceiveBuffer, "discard_through")
    # The in-place cursor is private (the built-in decoders use it).
    for name in ("view", "cut", "make_contiguous", "byte_at"):
        assert not hasattr(ReceiveBuffer, name), name


def test_codec_interface_is_abstract() -> None:
    class Incomplete(Codec):
        @property
        def wire_limit(self) -> int:
            return 1

        def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
            return bytes(frame)

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


# ---------------------------------------------------------------- the per-stream decoders


def lp(body: bytes, size: int = 4) -> bytes:
    return LengthPrefixed(1 << 20, length_size=size).encode(body)


async def test_equal_codecs_share_one_decoder_and_its_discard_state() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right, max_buffer_size=256, receive_size=100)
    big = lp(b"B" * 300)
    await left.send_all(lp(b"ok") + big[:50])
    assert await stream.receive_frame(LengthPrefixed(10, on_too_long="discard")) == b"ok"
    with pytest.raises(FrameTooLongError):
        await stream.receive_frame(LengthPrefixed(10, on_too_long="discard"))
    # The rest of the over-long frame arrives later: the decoder must still
    # know that it is skipping it, though every call brings a fresh (equal)
    # codec; a fresh decoder would read the body as a header.
    await left.send_all(big[50:200])
    with pytest.raises(trio.WouldBlock):
        stream.receive_frame_nowait(LengthPrefixed(10, on_too_long="discard"))
    await left.send_all(big[200:] + lp(b"next"))
    assert await stream.receive_frame(LengthPrefixed(10, on_too_long="discard")) == b"next"


async def test_decoders_are_bounded_for_fresh_equal_and_for_different_codecs() -> None:
    count = 20_000
    stream = BufferedStream(ScriptedStream([b"x\n" * (2 * count)]))
    for _ in range(count):
        assert await stream.receive_frame(Lines(100)) == b"x"
    assert len(stream._decoders) == 1, "fresh but equal codecs share one decoder"
    for i in range(count):
        assert await stream.receive_frame(Lines(100 + i)) == b"x"
    assert len(stream._decoders) <= 16, f"{len(stream._decoders)} decoders kept"


async def test_a_decoder_in_the_middle_of_a_skip_is_not_evicted(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    skipping = LengthPrefixed(10, on_too_long="discard")
    big = lp(b"B" * 3000)
    await left.send_all(big[:1000])
    with trio.fail_after(3600), pytest.raises(FrameTooLongError):  # virtual time: no wall clock
        await stream.receive_frame(skipping)
    # Many other codecs come and go while the rest of the frame is on its way
    # (nothing is buffered, so each only creates its decoder).
    for i in range(200):
        with pytest.raises(trio.WouldBlock):
            stream.receive_frame_nowait(Lines(100 + i))
    assert len(stream._decoders) <= 16
    await left.send_all(big[1000:] + lp(b"next"))
    assert await stream.receive_frame(LengthPrefixed(10, on_too_long="discard")) == b"next"


async def test_receive_frame_refuses_what_is_not_a_codec() -> None:
    stream = BufferedStream(ScriptedStream([b"x\n"]))
    with pytest.raises(TypeError, match="Codec"):
        await stream.receive_frame(b"\n")  # type: ignore[arg-type]
    assert await stream.receive_frame(Lines(10)) == b"x"
