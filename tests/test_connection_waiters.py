"""Any number of tasks may wait on a Connection's write queue, and all are
woken: by the queue draining, or by the connection ending (then with an
exception, never a silent return). The read-ahead stays within its bound."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from triostream import Connection, open_connection

WAITS = ("drain", "flush", "wait_send_all_might_not_block")


async def wait_on(conn: Connection, how: str) -> None:
    if how == "send_all":
        await conn.send_all(b"y" * 3000)
    else:
        await getattr(conn, how)()


def combinations() -> list[tuple[str, ...]]:
    """Ten waiters: every mix of the three kinds of wait, with and without
    one task in send_all (only one task may send at a time)."""
    mixes = []
    for kinds in itertools.chain.from_iterable(itertools.combinations(WAITS, r) for r in (1, 2, 3)):
        waiters = tuple(itertools.islice(itertools.cycle(kinds), 10))
        mixes.append(waiters)
        mixes.append(("send_all", *waiters[1:]))
    return mixes


async def read_all(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = await stream.receive_some()
        assert chunk, "unexpected EOF"
        got += chunk
    return got


@pytest.mark.parametrize("waiters", combinations(), ids="+".join)
async def test_every_waiter_is_woken_when_the_queue_drains(waiters: tuple[str, ...]) -> None:
    # Lockstep: the writer's send blocks until the peer reads, so the queue
    # stays full until the test lets it drain.
    client, server = trio.testing.lockstep_stream_pair()
    with trio.fail_after(10):
        async with open_connection(server, write_high_water=100, write_low_water=0) as conn:
            conn.write(b"x" * 5000)
            done: list[int] = []

            async def waiter(i: int, how: str) -> None:
                await wait_on(conn, how)
                done.append(i)

            async with trio.open_nursery() as nursery:
                for i, how in enumerate(waiters):
                    nursery.start_soon(waiter, i, how)
                await trio.testing.wait_all_tasks_blocked()
                assert done == [], "nobody may return while the queue is full"
                expected = 5000 + (3000 if "send_all" in waiters else 0)
                assert await read_all(client, expected) == b"x" * 5000 + b"y" * (expected - 5000)
            assert sorted(done) == list(range(10))
            await conn.flush()


@pytest.mark.parametrize("close", ["forceful", "transport_error"])
async def test_every_waiter_is_woken_with_an_exception_when_the_connection_ends(close: str) -> None:
    client, server = trio.testing.lockstep_stream_pair()
    errors: list[type[BaseException]] = []
    with trio.fail_after(10):
        async with open_connection(server, write_high_water=100, write_low_water=0) as conn:
            conn.write(b"x" * 5000)

            async def waiter(how: str) -> None:
                try:
                    await wait_on(conn, how)
                except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                    errors.append(type(exc))

            async with trio.open_nursery() as nursery:
                for how in ("send_all", *itertools.islice(itertools.cycle(WAITS), 9)):
                    nursery.start_soon(waiter, how)
                await trio.testing.wait_all_tasks_blocked()
                if close == "forceful":
                    await trio.aclose_forcefully(conn)
                else:
                    await client.aclose()  # the writer's send fails
    assert len(errors) == 10, "every waiter raised: none returned as if its data were sent"
    expected = trio.ClosedResourceError if close == "forceful" else trio.BrokenResourceError
    assert set(errors) == {expected}


@pytest.mark.parametrize("size", [500, 5000], ids=["fits-the-queue", "larger-than-the-queue"])
async def test_send_all_blocked_by_backpressure_raises_after_forceful_close(size: int) -> None:
    """Trio's contract: a send whose data was dropped does not return normally."""
    client, server = trio.testing.lockstep_stream_pair()
    outcome: list[str] = []
    with trio.fail_after(10):
        async with open_connection(server, write_high_water=10, max_write_buffer_size=1000) as conn:

            async def producer() -> None:
                try:
                    await conn.send_all(b"z" * size)
                    outcome.append("returned")
                except trio.ClosedResourceError:
                    outcome.append("ClosedResourceError")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                await trio.aclose_forcefully(conn)
    assert outcome == ["ClosedResourceError"]
    await client.aclose()


async def test_producer_in_send_all_and_another_task_flushing_both_finish() -> None:
    client, server = trio.testing.lockstep_stream_pair()
    finished: list[str] = []
    with trio.fail_after(10):
        async with open_connection(server, write_high_water=100, write_low_water=0) as conn:

            async def producer() -> None:
                await conn.send_all(b"p" * 4000)
                finished.append("send_all")

            async def flusher() -> None:
                await conn.flush()
                finished.append("flush")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(flusher)
                await trio.testing.wait_all_tasks_blocked()
                assert await read_all(client, 4000) == b"p" * 4000
        # The graceful close at the block's end found no send still running.
    assert sorted(finished) == ["flush", "send_all"]
    assert await client.receive_some() == b""


async def test_read_ahead_never_buffers_past_max_buffer_size_while_a_receive_waits() -> None:
    client, server = trio.testing.memory_stream_pair()
    most = 0
    async with open_connection(server, max_buffer_size=1000) as conn:

        async def receiver() -> None:
            with pytest.raises(Exception, match="max_size=1000"):
                await conn.receive_until(b"END", max_size=1000)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            for _ in range(30):
                await client.send_all(b"x" * 100)
                await trio.testing.wait_all_tasks_blocked()
                most = max(most, len(conn._buffer))
    assert most == 1000
