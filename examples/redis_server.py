"""An in-memory Redis-protocol (RESP2, and RESP3 enough for redis-py 8) key-value server
built on `triostream.serve_tcp` and `triostream.Connection`.

Run it (from a checkout, without installing triostream)::

    PYTHONPATH=. python examples/redis_server.py --port 6380

and talk to it with any Redis client::

    $ redis-cli -p 6380 set greeting hello
    OK
    $ redis-cli -p 6380 get greeting
    "hello"
    $ printf 'PING\\r\\nINCR visits\\r\\n' | nc -N 127.0.0.1 6380     # inline commands
    +PONG
    :1
    $ redis-benchmark -p 6380 -q -t set,get -P 16

    >>> import redis                      # redis-py 8, default options:
    >>> r = redis.Redis(port=6380)        # it opens with HELLO 3, which works
    >>> r.set("k", "v"), r.get("k"), r.incr("n")
    (True, b'v', 1)

On startup it prints ``listening on HOST:PORT`` (flushed) for each listening
socket, so ``--port 0`` is usable from scripts. Ctrl-C or SIGTERM shut it down
gracefully: it stops accepting, lets commands in flight finish and flushes
every reply (`triostream.serve_tcp`'s shutdown).

Commands
--------

``PING [msg]``, ``ECHO msg``, ``GET``, ``STRLEN``, ``SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]``,
``DEL``, ``EXISTS``, ``INCR``, ``DECR``, ``INCRBY``, ``DECRBY``, ``MGET``, ``MSET``,
``KEYS pattern`` (Redis's own glob: ``* ? [abc] [^a-z] \\x``), ``DBSIZE``,
``FLUSHDB``/``FLUSHALL [ASYNC|SYNC]``, ``EXPIRE``/``PEXPIRE key n [NX|XX|GT|LT]``,
``TTL``, ``PTTL``, ``PERSIST``, ``MULTI``/``EXEC``/``DISCARD`` (no ``WATCH``),
``QUIT``; and for client start-up: ``HELLO [2|3] [AUTH user pass] [SETNAME name]``,
``AUTH``, ``SELECT 0``, ``CLIENT SETNAME|GETNAME|ID|SETINFO|INFO|LIST|HELP``,
``COMMAND [COUNT|DOCS|INFO|LIST|HELP]``, ``CONFIG GET``, ``INFO [section]``.
Replies and error messages are Redis 7's, byte for byte (the tests compare
them with a real ``redis-server``); the differences are listed below.

**RESP3.** redis-py 8 opens every connection with ``HELLO 3`` and gives up if
the reply is not a RESP3 map with ``proto`` 3 (it does not fall back on
``-NOPROTO``). So ``HELLO 3`` is supported: the connection then gets RESP3
nulls (``_``), a map for ``HELLO`` and ``CONFIG GET``, and verbatim strings for
``INFO``; every other reply of these commands is the same in both protocols.
A default ``redis.Redis()`` works; ``protocol=2`` works too.

Framing
-------

RESP is framed element by element with the stream's own receives, never with
a parser of our own over raw chunks: ``receive_until(b"\\r\\n")`` for the
``*<n>`` and ``$<n>`` headers, ``receive_exactly(n + 2)`` for a bulk string
and its CRLF (``receive_exactly(n)`` then ``receive_exactly(2)`` for large
ones, to avoid copying them to cut the CRLF), ``receive_line`` for inline
commands (what ``nc``/telnet send: LF or CRLF). Why not a `triostream.Codec`
for whole commands? A command is up to ``--max-args`` elements: a codec's
frame must be buffered whole, so the stream's ``max_buffer_size`` would have
to hold the largest command, and each read would re-walk its elements. Element
by element, the buffer needs to hold only the largest bulk string
(``--max-bulk`` + 2 bytes), elements leave the buffer as they are parsed, and
a partial command waits in a small state machine (`RespReader`).

**The fast path.** Element by element costs a few ``*_nowait`` calls per
command, which a pipeline of small commands feels (``redis-benchmark -P
16``: 0.33x the hand-written Trio server). So plain commands (multibulk,
small bulk strings) are first cut from the buffered bytes in one pass:
`parse_commands` runs ``bytes.find`` over ``conn.peek()``, as a hand-written
parser would, and one ``skip_nowait`` drops every command it found from the
buffer (no copy: the commands were cut from the peeked bytes). It stops at
the first command that is incomplete or anything but plain, where the
element reader takes over, so it never answers differently.
Between commands the server waits with ``await conn.fill()`` (more bytes,
nothing consumed).

**Pipelining.** Every complete command already buffered is parsed (the fast
path, or the ``*_nowait`` receives: ``receive_until_nowait``,
``receive_exactly_nowait``, ``receive_line_nowait``; `trio.WouldBlock` means
"wait for more bytes"), executed, and all their replies go out in one
``conn.write`` (no checkpoint per command; over TCP the write goes straight
to the socket when nothing is queued). Only when the buffer holds no
complete element does the server await the element it is missing. Replies larger than 64 KiB in total are
sent as they are produced, with backpressure (`Connection.send_all`), so a
pipeline of ``GET`` on a large value cannot make the server build gigabytes
of replies.

Limits (Redis's own error replies)
----------------------------------

* ``--max-bulk`` (1 MiB; Redis: ``proto-max-bulk-len`` 512 MB): a longer
  declared bulk string is answered ``-ERR Protocol error: invalid bulk
  length`` and the connection closed. Nothing is allocated from a declared
  length: the bytes are read as they come, into a buffer bounded by
  ``max_buffer_size = max(--max-bulk + 2, 65537)``.
* ``--max-args`` (1048576; Redis: 2147483647, or 1048576 for a client that
  is not authenticated): ``-ERR Protocol error: invalid multibulk length``,
  closed.
* ``--max-request`` (8 MiB, counting 32 bytes per argument; Redis:
  ``client-query-buffer-limit`` 1 GB): the connection is closed without a
  reply, as Redis does.
* Inline commands and ``*``/``$`` headers are limited to 64 KiB like Redis's
  (``-ERR Protocol error: too big inline request`` / ``too big mbulk count
  string`` / ``too big bulk count string``, closed).
* ``--timeout`` (0 = none, Redis's ``timeout``): close a client idle that
  long. ``--read-timeout`` (60 s): a command started must be complete
  within that time (slowloris). ``--write-timeout`` (60 s): a client that
  stops reading its replies is dropped once one send has been blocked that
  long; meanwhile the server stops reading its commands when its write queue
  is full (1 MiB), so it cannot make the server buffer more.

Every protocol error is answered the way Redis answers it, after the replies
to the commands before it, and then the connection is closed where Redis
closes it (``Protocol error``, ``QUIT``, and, as Redis's HTTP guard does, a
``POST`` or ``Host:`` command, closed without a reply).

Differences from Redis 7.0, all deliberate
------------------------------------------

* One database (``SELECT`` 0 only: others get ``-ERR DB index is out of
  range``), strings only, no persistence, no ``WATCH``, no pub/sub, no ACL
  (``AUTH``/``HELLO AUTH`` answer as a server without a password does).
* ``CLIENT SETINFO`` answers ``+OK`` (Redis 7.2) rather than 7.0's unknown
  subcommand; ``HELLO`` reports ``server: triostream-redis-example`` and
  version 7.0.0; ``INFO``, ``CLIENT INFO/LIST`` and ``COMMAND`` carry a few
  fields, not all of Redis's.
* The limits above, stricter than Redis's defaults; and a client that does
  not read its replies is cut off (``--write-timeout``) where Redis (whose
  ``client-output-buffer-limit`` for normal clients is unlimited) buffers
  replies without bound.
* Header lines must end in ``\\r\\n``: Redis finds the first ``\\r`` and skips
  the byte after it without looking (``*1\\rX`` is a valid header for Redis,
  ``invalid multibulk length`` here). Redis's inline and header limits
  depend on how the bytes were split into reads; here they apply to the
  bytes, whatever their timing.
* ``DBSIZE`` counts live keys only (Redis counts expired keys it has not
  reclaimed yet). ``KEYS`` patterns nested deeper than 500 ``*`` do not match.

``--workers N``
---------------

Trio runs one thread; to use more than one core, ``--workers N`` starts N
processes, each running its own Trio loop and its own keyspace (like N Redis
shards on one port: a key set through one connection is seen only by the
connections the kernel hands to the same worker), all listening on the same
port with ``SO_REUSEPORT`` so that the kernel spreads connections across them
(Linux, BSD): each worker calls ``triostream.serve_tcp(..., reuse_port=True)``,
which sets ``SO_REUSEPORT`` before binding. The parent reserves the port
first (``--port 0`` works), then forwards SIGINT/SIGTERM to the workers. It
is meant for stateless benchmarks (``redis-benchmark``) and as a pattern,
not as a sharded Redis.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

import triostream
from triostream import Connection, FrameTooLongError, IncompleteReadError, WriteBufferFullError

log = logging.getLogger("redis_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6380
#: Redis's PROTO_INLINE_MAX_SIZE: the longest inline command or header line.
INLINE_MAX = 64 * 1024
#: Redis's INT_MAX bound on a multibulk count.
INT_MAX = 2**31 - 1
LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
#: Bytes counted per argument against --max-request (Python object overhead).
ARG_OVERHEAD = 32
#: Bulk strings at least this long are read without the CRLF (no copy to cut it).
_BIG_BULK = 16 * 1024
#: Replies buffered for one batch before they are sent with backpressure.
_FLUSH_AT = 64 * 1024
#: Commands executed from the buffer before the batch yields (fairness).
_BATCH_MAX = 512
#: The most buffered bytes `parse_commands` looks at in one go.
_PARSE_WINDOW = 64 * 1024
VERSION = "7.0.0"


# ---------------------------------------------------------------- RESP replies

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
EMPTY_ARRAY = b"*0\r\n"
NULL2 = b"$-1\r\n"
NULL_ARRAY2 = b"*-1\r\n"
NULL3 = b"_\r\n"

Reply = bytes | list[bytes]


def error(message: str | bytes) -> bytes:
    """An error reply: ``-ERR message`` unless it starts with its own code
    (``-NOPROTO ...``); CR and LF become spaces, as Redis does."""
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogateescape")
    message = message.replace(b"\r", b" ").replace(b"\n", b" ")
    if message.startswith(b"-"):
        return message + b"\r\n"
    return b"-ERR " + message + b"\r\n"


def integer(n: int) -> bytes:
    return b":%d\r\n" % n


def bulk(value: bytes) -> Reply:
    """A bulk string; a large one as parts, so that it is not copied."""
    if len(value) < _BIG_BULK:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    return [b"$%d\r\n" % len(value), value, b"\r\n"]


def _extend(parts: list[bytes], reply: Reply) -> int:
    if isinstance(reply, bytes):
        parts.append(reply)
        return len(reply)
    parts.extend(reply)
    return sum(map(len, reply))


def _arg(value: bytes, limit: int = 128) -> str:
    """An argument quoted in an error message as Redis's ``%.128s`` does
    (cut at a NUL byte and at ``limit`` bytes)."""
    return value.split(b"\0", 1)[0][:limit].decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- parsing helpers

_LL = re.compile(rb"0|-?[1-9][0-9]{0,19}")


def string2ll(value: bytes) -> int | None:
    """Redis's ``string2ll``: a strict decimal long long (no sign ``+``, no
    leading zeros or spaces, no ``-0``), or None."""
    if len(value) >= 21 or not _LL.fullmatch(value):
        return None
    n = int(value)
    return n if LLONG_MIN <= n <= LLONG_MAX else None


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command as Redis's ``sdssplitargs`` does: blanks
    separate arguments, ``"..."`` takes C escapes (``\\n``, ``\\xHH``, ...),
    ``'...'`` takes ``\\'``; a closing quote must be followed by a blank or
    the end. Returns None for unbalanced quotes. The line ends at a NUL byte
    (a C string)."""
    line = line.split(b"\0", 1)[0]
    if b'"' not in line and b"'" not in line and b"\v" not in line and b"\f" not in line:
        return line.split()  # the fast path: no quotes, no \v or \f inside a token
    args: list[bytes] = []
    n = len(line)
    p = 0
    while True:
        while p < n and line[p] in b" \t\n\r\v\f":
            p += 1
        if p >= n:
            return args
        current = bytearray()
        inq = insq = False
        while True:
            c = line[p] if p < n else 0
            nxt = line[p + 1] if p + 1 < n else 0
            if inq:
                if c == 0x5C and nxt == 0x78 and p + 3 < n and _is_hex(line[p + 2]) and _is_hex(line[p + 3]):
                    current.append(int(line[p + 2 : p + 4], 16))
                    p += 3
                elif c == 0x5C and nxt:
                    p += 1
                    current.append(_ESCAPES.get(nxt, nxt))
                elif c == 0x22:  # closing "
                    if nxt and nxt not in b" \t\n\r\v\f":
                        return None
                    p += 1
                    break
                elif not c:
                    return None
                else:
                    current.append(c)
            elif insq:
                if c == 0x5C and nxt == 0x27:
                    p += 1
                    current.append(0x27)
                elif c == 0x27:  # closing '
                    if nxt and nxt not in b" \t\n\r\v\f":
                        return None
                    p += 1
                    break
                elif not c:
                    return None
                else:
                    current.append(c)
            elif c in b" \n\r\t" or not c:
                break
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                current.append(c)
            p += 1
        args.append(bytes(current))


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def _is_hex(c: int) -> bool:
    return c in b"0123456789abcdefABCDEF"


def _signed(c: int) -> int:
    return c - 256 if c >= 128 else c


def glob_match(pattern: bytes, string: bytes, *, nocase: bool = False) -> bool:
    """Redis's ``stringmatchlen`` (the ``KEYS`` glob): ``*``, ``?``,
    ``[abc]``, ``[^a-z]``, ``\\`` escapes. Patterns nested deeper than 500
    ``*`` do not match (Python's recursion limit)."""
    if nocase:
        pattern, string = pattern.lower(), string.lower()
    return _match(pattern, 0, string, 0, [False], 0)


def _match(pat: bytes, p: int, s: bytes, i: int, skip_longer: list[bool], nesting: int) -> bool:
    plen, slen = len(pat), len(s)
    if nesting > 500:
        return False
    while p < plen and i < slen:
        c = pat[p]
        if c == 0x2A:  # *
            while p + 1 < plen and pat[p + 1] == 0x2A:
                p += 1
            if p + 1 == plen:
                return True
            while i < slen:
                if _match(pat, p + 1, s, i, skip_longer, nesting + 1):
                    return True
                if skip_longer[0]:
                    return False
                i += 1
            skip_longer[0] = True
            return False
        if c == 0x3F:  # ?
            i += 1
        elif c == 0x5B:  # [
            p += 1
            negate = p < plen and pat[p] == 0x5E
            if negate:
                p += 1
            matched = False
            while True:
                if p < plen and pat[p] == 0x5C and plen - p >= 2:
                    p += 1
                    if pat[p] == s[i]:
                        matched = True
                elif p < plen and pat[p] == 0x5D:
                    break
                elif p >= plen:
                    p -= 1
                    break
                elif plen - p >= 3 and pat[p + 1] == 0x2D:
                    start, end = _signed(pat[p]), _signed(pat[p + 2])
                    if start > end:
                        start, end = end, start
                    p += 2
                    if start <= _signed(s[i]) <= end:
                        matched = True
                elif pat[p] == s[i]:
                    matched = True
                p += 1
            if negate:
                matched = not matched
            if not matched:
                return False
            i += 1
        else:
            if c == 0x5C and plen - p >= 2:
                p += 1
            if pat[p] != s[i]:
                return False
            i += 1
        p += 1
        if i == slen:
            while p < plen and pat[p] == 0x2A:
                p += 1
            break
    return p == plen and i == slen


# ---------------------------------------------------------------- the keyspace


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Keyspace:
    """The database: bytes to bytes, with optional expiry times (Unix ms).

    Expired keys are removed when touched (lazily, like Redis) and by
    `purge_expired`, which a server task runs every 100 ms and ``DBSIZE`` and
    ``KEYS`` run first (a heap of expiry times, so the purge costs only the
    keys due)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.expires: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        value = self.data.get(key)
        if value is not None and self.expires:
            when = self.expires.get(key)
            if when is not None and when <= now_ms():
                self.delete(key)
                return None
        return value

    def delete(self, key: bytes) -> bool:
        if self.data.pop(key, None) is None:
            return False
        self.expires.pop(key, None)
        return True

    def set(self, key: bytes, value: bytes, expire_at: int | None = None, *, keep_ttl: bool = False) -> None:
        self.data[key] = value
        if expire_at is not None:
            self.set_expire(key, expire_at)
        elif not keep_ttl and self.expires:
            self.expires.pop(key, None)

    def set_expire(self, key: bytes, when: int) -> None:
        self.expires[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self.expires) + 1024:  # mostly stale entries: rebuild
            self._heap = [(w, k) for k, w in self.expires.items()]
            heapq.heapify(self._heap)

    def ttl_ms(self, key: bytes) -> int | None:
        """Milliseconds left (>= 0), or None without an expiry."""
        when = self.expires.get(key)
        return None if when is None else max(0, when - now_ms())

    def purge_expired(self) -> int:
        heap, expires = self._heap, self.expires
        now = now_ms()
        purged = 0
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                self.delete(key)
                purged += 1
        return purged

    def flush(self) -> None:
        self.data.clear()
        self.expires.clear()
        self._heap.clear()


# ---------------------------------------------------------------- commands


class Session:
    """Per-connection state."""

    __slots__ = ("addr", "closing", "dirty", "id", "multi", "name", "null", "null_array", "resp", "server")

    def __init__(self, server: RedisServer, client_id: int, addr: str) -> None:
        self.server = server
        self.id = client_id
        self.addr = addr
        self.name = b""
        self.resp = 2
        self.null = NULL2
        self.null_array = NULL_ARRAY2
        self.closing = False  # close after the replies are sent (QUIT, HTTP guard)
        self.multi: list[list[bytes]] | None = None  # commands queued by MULTI
        self.dirty = False  # an error while queueing: EXEC aborts

    def set_protocol(self, version: int) -> None:
        self.resp = version
        self.null = NULL3 if version == 3 else NULL2
        self.null_array = NULL3 if version == 3 else NULL_ARRAY2

    def map_header(self, pairs: int) -> bytes:
        return b"%%%d\r\n" % pairs if self.resp == 3 else b"*%d\r\n" % (2 * pairs)

    def verbatim(self, text: bytes) -> Reply:
        if self.resp == 3:
            return [b"=%d\r\ntxt:" % (len(text) + 4), text, b"\r\n"]
        return bulk(text)


Handler = Callable[[Session, list[bytes]], Reply]


@dataclass(frozen=True)
class Command:
    name: str  # Redis's "fullname": "get", "client|setname"
    arity: int  # Redis's arity: n exactly, -n at least n (the name included)
    handler: Handler | None = None
    subcommands: dict[bytes, Command] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    keys: tuple[int, int, int] = (0, 0, 0)  # first, last, step (COMMAND INFO)


def _wrong_args(cmd: Command) -> bytes:
    return error(f"wrong number of arguments for '{cmd.name}' command")


def _syntax() -> bytes:
    return error("syntax error")


NOT_INTEGER = error("value is not an integer or out of range")


class Commands:
    """The command table and the command implementations (over a `Keyspace`)."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.db = server.keyspace
        w, r, f = ("write",), ("readonly", "fast"), ("fast",)
        one = (1, 1, 1)
        table = [
            Command("ping", -1, self.ping, flags=f),
            Command("echo", 2, self.echo, flags=f),
            Command("strlen", 2, self.strlen, flags=r, keys=one),
            Command("get", 2, self.get, flags=r, keys=one),
            Command("set", -3, self.set, flags=w, keys=one),
            Command("del", -2, self.del_, flags=w, keys=(1, -1, 1)),
            Command("exists", -2, self.exists, flags=r, keys=(1, -1, 1)),
            Command("incr", 2, self.incr, flags=w, keys=one),
            Command("decr", 2, self.decr, flags=w, keys=one),
            Command("incrby", 3, self.incrby, flags=w, keys=one),
            Command("decrby", 3, self.decrby, flags=w, keys=one),
            Command("mget", -2, self.mget, flags=r, keys=(1, -1, 1)),
            Command("mset", -3, self.mset, flags=w, keys=(1, -1, 2)),
            Command("keys", 2, self.keys, flags=("readonly",)),
            Command("dbsize", 1, self.dbsize, flags=r),
            Command("flushdb", -1, self.flushdb, flags=("write",)),
            Command("flushall", -1, self.flushdb, flags=("write",)),
            Command("expire", -3, self.expire, flags=w, keys=one),
            Command("pexpire", -3, self.pexpire, flags=w, keys=one),
            Command("ttl", 2, self.ttl, flags=r, keys=one),
            Command("pttl", 2, self.pttl, flags=r, keys=one),
            Command("persist", 2, self.persist, flags=w, keys=one),
            Command("select", 2, self.select, flags=f),
            Command("hello", -1, self.hello, flags=f),
            Command("auth", -2, self.auth, flags=f),
            Command("info", -1, self.info),
            Command("quit", -1, self.quit, flags=f),
            Command("multi", 1, None, flags=f),  # MULTI/EXEC/DISCARD: see execute
            Command("exec", 1, None),
            Command("discard", 1, None, flags=f),
            self._container(
                "client",
                [
                    Command("client|setname", 3, self.client_setname),
                    Command("client|getname", 2, self.client_getname),
                    Command("client|id", 2, self.client_id),
                    Command("client|setinfo", 4, self.client_setinfo),
                    Command("client|info", 2, self.client_info),
                    Command("client|list", -2, self.client_list),
                    Command("client|help", 2, self.help),
                ],
            ),
            self._container(
                "command",
                [
                    Command("command|count", 2, self.command_count),
                    Command("command|docs", -2, self.command_docs),
                    Command("command|info", -2, self.command_info),
                    Command("command|list", -2, self.command_list),
                    Command("command|help", 2, self.help),
                ],
                arity=-1,
                handler=self.command_all,
            ),
            self._container(
                "config",
                [Command("config|get", -3, self.config_get), Command("config|help", 2, self.help)],
            ),
        ]
        self.table: dict[bytes, Command] = {cmd.name.encode(): cmd for cmd in table}

    @staticmethod
    def _container(name: str, subs: list[Command], *, arity: int = -2, handler: Handler | None = None) -> Command:
        return Command(name, arity, handler, {sub.name.split("|")[1].encode(): sub for sub in subs})

    # ---- dispatch

    def lookup(self, argv: list[bytes]) -> Command | bytes:
        """The command to run, or the error reply for an unknown command or
        a wrong number of arguments (Redis's messages)."""
        name = argv[0]
        cmd = self.table.get(name.lower())
        if cmd is None:
            args = ""
            for arg in argv[1:]:
                if len(args) >= 128:
                    break
                args += f"'{_arg(arg, 128 - len(args))}' "
            return error(f"unknown command '{_arg(name)}', with args beginning with: {args}")
        if cmd.subcommands and len(argv) >= 2:
            sub = cmd.subcommands.get(argv[1].lower())
            if sub is None:
                upper = name.decode("utf-8", "surrogateescape").upper()
                return error(f"unknown subcommand '{_arg(argv[1])}'. Try {upper} HELP.")
            cmd = sub
        argc = len(argv)
        if (cmd.arity > 0 and cmd.arity != argc) or argc < -cmd.arity:
            return _wrong_args(cmd)
        return cmd

    # ---- connection

    def ping(self, s: Session, argv: list[bytes]) -> Reply:
        if len(argv) > 2:
            return _wrong_args(self.table[b"ping"])
        return PONG if len(argv) == 1 else bulk(argv[1])

    def echo(self, s: Session, argv: list[bytes]) -> Reply:
        return bulk(argv[1])

    def quit(self, s: Session, argv: list[bytes]) -> Reply:
        s.closing = True
        return OK

    def select(self, s: Session, argv: list[bytes]) -> Reply:
        n = string2ll(argv[1])
        if n is None or not -(2**31) <= n <= INT_MAX:
            return NOT_INTEGER
        return OK if n == 0 else error("DB index is out of range")

    def auth(self, s: Session, argv: list[bytes]) -> Reply:
        if len(argv) > 3:
            return _syntax()
        if len(argv) == 2:
            return error(
                "AUTH <password> called without any password configured for the default user. "
                "Are you sure your configuration is correct?"
            )
        if argv[1] == b"default":
            return OK
        return error("-WRONGPASS invalid username-password pair or user is disabled.")

    def hello(self, s: Session, argv: list[bytes]) -> Reply:
        version = s.resp
        j = 1
        if len(argv) >= 2:
            n = string2ll(argv[1])
            if n is None:
                return error("Protocol version is not an integer or out of range")
            if n not in (2, 3):
                return error("-NOPROTO unsupported protocol version")
            version = n
            j = 2
        name = None
        while j < len(argv):
            opt, more = argv[j].lower(), len(argv) - 1 - j
            if opt == b"auth" and more >= 2:
                if argv[j + 1] != b"default":
                    return error("-WRONGPASS invalid username-password pair or user is disabled.")
                j += 3
            elif opt == b"setname" and more:
                name = argv[j + 1]
                if not _valid_name(name):
                    return error("Client names cannot contain spaces, newlines or special characters.")
                j += 2
            else:
                return error(f"Syntax error in HELLO option '{_arg(argv[j], 1 << 30)}'")
        if name is not None:
            s.name = name
        s.set_protocol(version)
        fields: list[Reply] = [
            bulk(b"server"),
            bulk(b"triostream-redis-example"),
            bulk(b"version"),
            bulk(VERSION.encode()),
            bulk(b"proto"),
            integer(version),
            bulk(b"id"),
            integer(s.id),
            bulk(b"mode"),
            bulk(b"standalone"),
            bulk(b"role"),
            bulk(b"master"),
            bulk(b"modules"),
            EMPTY_ARRAY,
        ]
        parts = [s.map_header(7)]
        for item in fields:
            _extend(parts, item)
        return parts

    def help(self, s: Session, argv: list[bytes]) -> Reply:
        container = self.table[argv[0].lower()]
        lines = [f"{container.name.upper()} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"]
        lines += [name.decode().upper() for name in container.subcommands]
        return [b"*%d\r\n" % len(lines)] + [b"+%s\r\n" % line.encode() for line in lines]

    def client_setname(self, s: Session, argv: list[bytes]) -> Reply:
        if not _valid_name(argv[2]):
            return error("Client names cannot contain spaces, newlines or special characters.")
        s.name = argv[2]
        return OK

    def client_getname(self, s: Session, argv: list[bytes]) -> Reply:
        return bulk(s.name) if s.name else s.null

    def client_id(self, s: Session, argv: list[bytes]) -> Reply:
        return integer(s.id)

    def client_setinfo(self, s: Session, argv: list[bytes]) -> Reply:
        if argv[2].lower() not in (b"lib-name", b"lib-ver"):
            return error(f"Unrecognized option '{_arg(argv[2])}'")
        return OK

    def _client_line(self, s: Session) -> bytes:
        return b"id=%d addr=%s name=%s db=0 resp=%d\n" % (s.id, s.addr.encode(), s.name, s.resp)

    def client_info(self, s: Session, argv: list[bytes]) -> Reply:
        return s.verbatim(self._client_line(s))

    def client_list(self, s: Session, argv: list[bytes]) -> Reply:
        return s.verbatim(b"".join(self._client_line(other) for other in self.server.sessions))

    # ---- introspection

    def _info_of(self, cmd: Command) -> list[bytes]:
        first, last, step = cmd.keys
        parts = [b"*10\r\n", *_as_list(bulk(cmd.name.encode())), integer(cmd.arity), b"*%d\r\n" % len(cmd.flags)]
        parts += [b"+%s\r\n" % flag.encode() for flag in cmd.flags]
        parts += [integer(first), integer(last), integer(step), EMPTY_ARRAY, EMPTY_ARRAY, EMPTY_ARRAY]
        parts.append(b"*%d\r\n" % len(cmd.subcommands))
        for sub in cmd.subcommands.values():
            parts += self._info_of(sub)
        return parts

    def command_all(self, s: Session, argv: list[bytes]) -> Reply:
        parts = [b"*%d\r\n" % len(self.table)]
        for cmd in self.table.values():
            parts += self._info_of(cmd)
        return parts

    def command_count(self, s: Session, argv: list[bytes]) -> Reply:
        return integer(len(self.table))

    def command_docs(self, s: Session, argv: list[bytes]) -> Reply:
        return s.map_header(0)  # no docs: redis-cli uses its own help

    def command_info(self, s: Session, argv: list[bytes]) -> Reply:
        parts = [b"*%d\r\n" % (len(argv) - 2)]
        for name in argv[2:]:
            cmd = self.table.get(name.lower())
            if cmd is None:
                parts.append(s.null)
            else:
                parts += self._info_of(cmd)
        return parts

    def command_list(self, s: Session, argv: list[bytes]) -> Reply:
        parts = [b"*%d\r\n" % len(self.table)]
        for name in self.table:
            _extend(parts, bulk(name))
        return parts

    def config_get(self, s: Session, argv: list[bytes]) -> Reply:
        limits = self.server.limits
        config = {
            b"appendonly": b"no",
            b"save": b"",
            b"databases": b"1",
            b"maxmemory": b"0",
            b"proto-max-bulk-len": str(limits.max_bulk).encode(),
            b"timeout": b"%d" % int(limits.timeout or 0),
        }
        found = {
            name: value for name, value in config.items() if any(glob_match(p, name, nocase=True) for p in argv[2:])
        }
        parts = [s.map_header(len(found))]
        for name, value in found.items():
            _extend(parts, bulk(name))
            _extend(parts, bulk(value))
        return parts

    def info(self, s: Session, argv: list[bytes]) -> Reply:
        self.db.purge_expired()
        server = self.server
        sections = {
            b"server": [
                f"redis_version:{VERSION}",
                "redis_mode:standalone",
                f"process_id:{os.getpid()}",
                f"uptime_in_seconds:{int(time.monotonic() - server.started)}",
            ],
            b"clients": [f"connected_clients:{len(server.sessions)}"],
            b"stats": [
                f"total_connections_received:{server.total_connections}",
                f"total_commands_processed:{server.total_commands}",
            ],
            b"keyspace": (
                [f"db0:keys={len(self.db.data)},expires={len(self.db.expires)},avg_ttl=0"] if self.db.data else []
            ),
        }
        wanted = {arg.lower() for arg in argv[1:]} or {b"default"}
        text = []
        for name, lines in sections.items():
            if wanted & {name, b"all", b"everything", b"default"}:
                text.append("# " + name.decode().capitalize() + "\r\n" + "".join(line + "\r\n" for line in lines))
        return s.verbatim("\r\n".join(text).encode())

    # ---- strings

    def get(self, s: Session, argv: list[bytes]) -> Reply:
        value = self.db.get(argv[1])
        return s.null if value is None else bulk(value)

    def strlen(self, s: Session, argv: list[bytes]) -> Reply:
        value = self.db.get(argv[1])
        return integer(0 if value is None else len(value))

    def set(self, s: Session, argv: list[bytes]) -> Reply:
        key, value = argv[1], argv[2]
        if len(argv) == 3:  # the common case
            self.db.set(key, value)
            return OK
        nx = xx = get = keepttl = False
        expire: bytes | None = None
        unit = 0  # 1000 for EX, 1 for PX
        j = 3
        while j < len(argv):
            opt = argv[j].lower()
            last = j == len(argv) - 1
            if opt == b"nx" and not xx:
                nx = True
            elif opt == b"xx" and not nx:
                xx = True
            elif opt == b"get":
                get = True
            elif opt == b"keepttl" and not unit:
                keepttl = True
            elif opt in (b"ex", b"px") and not keepttl and unit in (0, 1000 if opt == b"ex" else 1) and not last:
                unit = 1000 if opt == b"ex" else 1
                expire = argv[j + 1]
                j += 1
            else:
                return _syntax()
            j += 1
        expire_at = None
        if expire is not None:
            ms = string2ll(expire)
            if ms is None:
                return NOT_INTEGER
            if ms <= 0 or (unit == 1000 and ms > LLONG_MAX // 1000):
                return error("invalid expire time in 'set' command")
            ms = ms * unit + now_ms()
            if ms > LLONG_MAX:
                return error("invalid expire time in 'set' command")
            expire_at = ms
        old = self.db.get(key)
        reply: Reply = OK
        if get:
            reply = s.null if old is None else bulk(old)
        if (nx and old is not None) or (xx and old is None):
            return reply if get else s.null
        self.db.set(key, value, expire_at, keep_ttl=keepttl)
        return reply

    def del_(self, s: Session, argv: list[bytes]) -> Reply:
        db = self.db
        return integer(sum(1 for key in argv[1:] if db.get(key) is not None and db.delete(key)))

    def exists(self, s: Session, argv: list[bytes]) -> Reply:
        db = self.db
        return integer(sum(1 for key in argv[1:] if db.get(key) is not None))

    def _incr(self, key: bytes, by: int) -> Reply:
        db = self.db
        old = db.get(key)
        if old is None:
            value = 0
        else:
            parsed = string2ll(old)
            if parsed is None:
                return NOT_INTEGER
            value = parsed
        value += by
        if not LLONG_MIN <= value <= LLONG_MAX:
            return error("increment or decrement would overflow")
        db.set(key, b"%d" % value, keep_ttl=True)
        return integer(value)

    def incr(self, s: Session, argv: list[bytes]) -> Reply:
        return self._incr(argv[1], 1)

    def decr(self, s: Session, argv: list[bytes]) -> Reply:
        return self._incr(argv[1], -1)

    def incrby(self, s: Session, argv: list[bytes]) -> Reply:
        by = string2ll(argv[2])
        return NOT_INTEGER if by is None else self._incr(argv[1], by)

    def decrby(self, s: Session, argv: list[bytes]) -> Reply:
        by = string2ll(argv[2])
        if by is None:
            return NOT_INTEGER
        if by == LLONG_MIN:
            return error("decrement would overflow")
        return self._incr(argv[1], -by)

    def mget(self, s: Session, argv: list[bytes]) -> Reply:
        get = self.db.get
        parts = [b"*%d\r\n" % (len(argv) - 1)]
        for key in argv[1:]:
            value = get(key)
            if value is None:
                parts.append(s.null)
            else:
                _extend(parts, bulk(value))
        return parts

    def mset(self, s: Session, argv: list[bytes]) -> Reply:
        if len(argv) % 2 == 0:
            return _wrong_args(self.table[b"mset"])
        for j in range(1, len(argv), 2):
            self.db.set(argv[j], argv[j + 1])
        return OK

    # ---- keyspace

    def keys(self, s: Session, argv: list[bytes]) -> Reply:
        self.db.purge_expired()
        pattern = argv[1]
        keys = self.db.data
        found = list(keys) if pattern == b"*" else [key for key in keys if glob_match(pattern, key)]
        parts = [b"*%d\r\n" % len(found)]
        for key in found:
            _extend(parts, bulk(key))
        return parts

    def dbsize(self, s: Session, argv: list[bytes]) -> Reply:
        self.db.purge_expired()
        return integer(len(self.db.data))

    def flushdb(self, s: Session, argv: list[bytes]) -> Reply:
        if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
            return _syntax()
        self.db.flush()
        return OK

    def _expire(self, argv: list[bytes], unit: int, name: str) -> Reply:
        nx = xx = gt = lt = False
        for opt in argv[3:]:
            low = opt.lower()
            if low == b"nx":
                nx = True
            elif low == b"xx":
                xx = True
            elif low == b"gt":
                gt = True
            elif low == b"lt":
                lt = True
            else:
                return error(f"Unsupported option {_arg(opt, 1 << 30)}")
        if nx and (xx or gt or lt):
            return error("NX and XX, GT or LT options at the same time are not compatible")
        if gt and lt:
            return error("GT and LT options at the same time are not compatible")
        when = string2ll(argv[2])
        if when is None:
            return NOT_INTEGER
        if unit == 1000:
            if not -(LLONG_MAX // 1000) <= when <= LLONG_MAX // 1000:  # C division truncates
                return error(f"invalid expire time in '{name}' command")
            when *= 1000
        now = now_ms()
        if when > LLONG_MAX - now:
            return error(f"invalid expire time in '{name}' command")
        when += now
        key = argv[1]
        db = self.db
        if db.get(key) is None:
            return ZERO
        current = db.expires.get(key, -1)
        if (
            (nx and current != -1)
            or (xx and current == -1)
            or (gt and (when <= current or current == -1))
            or (lt and current != -1 and when >= current)
        ):
            return ZERO
        if when <= now_ms():
            db.delete(key)
        else:
            db.set_expire(key, when)
        return ONE

    def expire(self, s: Session, argv: list[bytes]) -> Reply:
        return self._expire(argv, 1000, "expire")

    def pexpire(self, s: Session, argv: list[bytes]) -> Reply:
        return self._expire(argv, 1, "pexpire")

    def _ttl(self, key: bytes) -> int | None:
        """None: no key (-2); -1: no expiry; else ms left."""
        if self.db.get(key) is None:
            return None
        left = self.db.ttl_ms(key)
        return -1 if left is None else left

    def ttl(self, s: Session, argv: list[bytes]) -> Reply:
        left = self._ttl(argv[1])
        return integer(-2 if left is None else -1 if left == -1 else (left + 500) // 1000)

    def pttl(self, s: Session, argv: list[bytes]) -> Reply:
        left = self._ttl(argv[1])
        return integer(-2 if left is None else left)

    def persist(self, s: Session, argv: list[bytes]) -> Reply:
        if self.db.get(argv[1]) is None or self.db.expires.pop(argv[1], None) is None:
            return ZERO
        return ONE

    # ---- execution

    def execute(self, s: Session, argv: list[bytes]) -> Reply:
        """Run one command and return its reply (MULTI queueing included)."""
        cmd = self.lookup(argv)
        if type(cmd) is bytes:
            if s.multi is not None:
                s.dirty = True
            return cmd
        assert isinstance(cmd, Command)
        name = cmd.name
        if s.multi is not None and name not in ("exec", "discard", "multi", "quit"):
            s.multi.append(argv)
            return QUEUED
        handler = cmd.handler
        if handler is not None:
            return handler(s, argv)
        if name == "multi":
            if s.multi is not None:
                return error("MULTI calls can not be nested")
            s.multi, s.dirty = [], False
            return OK
        if s.multi is None:
            return error(f"{name.upper()} without MULTI")
        queued, dirty = s.multi, s.dirty
        s.multi, s.dirty = None, False
        if name == "discard":
            return OK
        if dirty:
            return error("-EXECABORT Transaction discarded because of previous errors.")
        parts = [b"*%d\r\n" % len(queued)]
        for queued_argv in queued:
            _extend(parts, self.execute(s, queued_argv))
        return parts


def _as_list(reply: Reply) -> list[bytes]:
    return [reply] if isinstance(reply, bytes) else list(reply)


def _valid_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


# ---------------------------------------------------------------- the RESP reader


class ProtocolError(Exception):
    """The client broke the protocol: answer ``-ERR Protocol error: <msg>`` and close."""


class RequestTooLarge(Exception):
    """One command's arguments exceed ``--max-request``: close without a reply."""


@dataclass(frozen=True)
class Limits:
    max_bulk: int = 1 << 20
    max_args: int = 1 << 20
    max_request: int = 8 << 20
    timeout: float | None = None
    read_timeout: float | None = 60.0
    write_timeout: float | None = 60.0

    def __post_init__(self) -> None:
        for name in ("max_bulk", "max_args", "max_request"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("timeout", "read_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None")

    @property
    def max_buffer_size(self) -> int:
        """The connection's buffer: the largest bulk string and its CRLF, or
        the longest header or inline line (65536 bytes and its line ending)."""
        return max(self.max_bulk + 2, INLINE_MAX + 2)


def _count(value: bytes) -> int:
    """A non-negative `string2ll` for the fast path: -1 where the element
    reader must decide (a sign, leading zeros, too long, not a number)."""
    if value.isdigit() and len(value) < 19 and (value[0] != 0x30 or len(value) == 1):
        return int(value)
    return -1


def parse_commands(data: bytes, limits: Limits) -> tuple[list[list[bytes]], int]:
    """Every plain, complete multibulk command at the start of ``data``, in
    one pass with ``bytes.find`` (the hand-written parser's way):
    ``(commands, bytes they take)``.

    Stops at the first command that is incomplete or anything but plain
    (inline, empty, a big bulk, a bad header, a limit reached): the element
    reader (`RespReader`) takes over there and answers exactly as Redis
    does, so this is only a shortcut, never a second opinion.
    """
    commands: list[list[bytes]] = []
    pos = 0
    end = len(data)
    find = data.find
    max_args = limits.max_args
    max_bulk = min(limits.max_bulk, _BIG_BULK - 1)
    max_request = limits.max_request
    while pos < end and data[pos] == 0x2A:  # "*"
        eol = find(b"\r\n", pos)
        if eol < 0:
            break
        n = _count(data[pos + 1 : eol])
        if n < 1 or n > max_args:
            break
        p = eol + 2
        argv = []
        size = 0
        for _ in range(n):
            if p >= end or data[p] != 0x24:  # "$"
                break
            eol = find(b"\r\n", p)
            if eol < 0:
                break
            length = _count(data[p + 1 : eol])
            size += length + ARG_OVERHEAD
            if length < 0 or length > max_bulk or size > max_request:
                break
            p = eol + 2 + length
            if p + 2 > end:
                break
            argv.append(data[eol + 2 : p])
            p += 2  # the CRLF after the bulk (not checked, as Redis does not)
        else:
            commands.append(argv)
            pos = p
            continue
        break
    return commands, pos


# RespReader states: what the next element is.
_START, _INLINE, _COUNT, _HEADER, _BULK, _BIG, _CRLF = range(7)
_TOO_BIG = {
    _INLINE: "too big inline request",
    _COUNT: "too big mbulk count string",
    _HEADER: "too big bulk count string",
}


class RespReader:
    """Reads RESP commands (arrays of bulk strings, or inline lines) from a
    `Connection`, element by element.

    `next_nowait` returns the next command if the buffer holds it (raising
    `trio.WouldBlock` otherwise, keeping what it parsed of a partial command);
    `wait` awaits the one element the reader is missing, after which
    `next_nowait` goes on. Raises `ProtocolError` (Redis's message),
    `RequestTooLarge`, and `IncompleteReadError` at EOF.
    """

    def __init__(self, conn: Connection, limits: Limits) -> None:
        self._conn = conn
        self._limits = limits
        self._state = _START
        self._argv: list[bytes] = []
        self._remaining = 0
        self._want = 0  # bytes the next _BULK/_BIG/_CRLF element takes
        self._size = 0  # bytes of the command so far, for max_request
        self._stash: bytes | None = None  # the element `wait` received
        self._deadline: float | None = None

    def batch_nowait(self) -> list[list[bytes]]:
        """The next commands the buffer holds, at least one: every complete
        plain command (`parse_commands`, one pass), or else the next command
        of any kind (the element reader); an empty list when the buffer
        holds no whole command (cheaper than raising `trio.WouldBlock` once
        per request). Raises like `next_nowait` otherwise."""
        if self._state == _START and self._stash is None:
            conn = self._conn
            data = conn.peek(_PARSE_WINDOW)
            if not data:
                return []
            if data[0] == 0x2A:  # "*"
                commands, used = parse_commands(data, self._limits)
                if commands:
                    conn.skip_nowait(used)  # consume them, all at once (no copy)
                    return commands
        try:
            return [self.next_nowait()]
        except trio.WouldBlock:
            return []

    def next_nowait(self) -> list[bytes]:
        conn = self._conn
        while True:
            state = self._state
            frame = self._stash
            if frame is not None:
                self._stash = None
            elif state == _START:
                first = conn.peek(1)
                if not first:
                    raise trio.WouldBlock
                self._state = _COUNT if first == b"*" else _INLINE
                continue
            else:
                try:
                    if state >= _BULK:
                        frame = conn.receive_exactly_nowait(self._want)
                    elif state == _INLINE:
                        frame = conn.receive_line_nowait(max_size=INLINE_MAX + 1)
                    else:
                        frame = conn.receive_until_nowait(b"\r\n", max_size=INLINE_MAX + 2)
                except FrameTooLongError:
                    raise ProtocolError(_TOO_BIG[state]) from None
            argv = self._element(state, frame)
            if argv is not None:
                return argv

    async def wait(self, blocked: bool = True) -> None:
        """Wait for the element the reader is missing (a checkpoint); with
        ``blocked`` False (a batch ended at _BATCH_MAX for fairness, commands
        are still buffered) only a checkpoint."""
        conn = self._conn
        state = self._state
        if not blocked:
            await trio.lowlevel.checkpoint()
            return
        if state == _START:
            # Between commands: more bytes, consuming nothing (no
            # read_timeout here: an idle client is idle_timeout's business).
            if not await conn.fill():
                raise IncompleteReadError(conn.peek(), None)  # EOF between commands
            return
        read_timeout = self._limits.read_timeout
        if self._deadline is None and read_timeout is not None:
            self._deadline = trio.current_time() + read_timeout
        with trio.fail_at(self._deadline if self._deadline is not None else math.inf):
            try:
                if state >= _BULK:
                    self._stash = await conn.receive_exactly(self._want)
                elif state == _INLINE:
                    self._stash = await conn.receive_line(max_size=INLINE_MAX + 1)
                else:
                    self._stash = await conn.receive_until(b"\r\n", max_size=INLINE_MAX + 2)
            except FrameTooLongError:
                raise ProtocolError(_TOO_BIG[state]) from None

    def _element(self, state: int, frame: bytes) -> list[bytes] | None:
        """Take one element; return the command it completes, if any."""
        if state == _BULK:
            self._argv.append(frame[:-2])
        elif state == _BIG:
            self._argv.append(frame)
            self._state, self._want = _CRLF, 2
            return None
        elif state == _HEADER:
            if frame[:1] != b"$":
                got = chr(frame[0]) if frame else " "
                raise ProtocolError(f"expected '$', got '{got}'")
            n = string2ll(frame[1:])
            if n is None or n < 0 or n > self._limits.max_bulk:
                raise ProtocolError("invalid bulk length")
            self._size += n + ARG_OVERHEAD
            if self._size > self._limits.max_request:
                raise RequestTooLarge(f"a command of more than {self._limits.max_request} bytes")
            if n < _BIG_BULK:
                self._state, self._want = _BULK, n + 2
            else:
                self._state, self._want = _BIG, n
            return None
        elif state == _COUNT:
            n = string2ll(frame[1:])
            if n is None or n > INT_MAX or n > self._limits.max_args:
                raise ProtocolError("invalid multibulk length")
            if n <= 0:
                self._state = _START  # an empty command: skipped, as Redis does
                return None
            self._remaining = n
            self._state = _HEADER
            return None
        elif state == _INLINE:
            self._state = _START
            self._deadline = None
            argv = split_inline(frame)
            if argv is None:
                raise ProtocolError("unbalanced quotes in request")
            return argv or None  # an empty line: skipped
        # _BULK or _CRLF: an argument is complete.
        self._remaining -= 1
        if self._remaining:
            self._state = _HEADER
            return None
        argv, self._argv = self._argv, []
        self._state = _START
        self._size = 0
        self._deadline = None
        return argv


# ---------------------------------------------------------------- the server


class RedisServer:
    """One keyspace served to any number of connections (`handle`)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.keyspace = Keyspace()
        self.commands = Commands(self)
        self.sessions: set[Session] = set()
        #: The live connections (tests look at their buffers).
        self.connections: set[Connection] = set()
        self.started = time.monotonic()
        self.total_connections = 0
        self.total_commands = 0
        self._ids = itertools.count(1)

    async def handle(self, conn: Connection) -> None:
        """Serve one connection until QUIT, a protocol error, EOF or a timeout."""
        try:
            addr = _format_peer(conn)
        except (OSError, AttributeError):
            addr = "?"
        session = Session(self, next(self._ids), addr)
        self.sessions.add(session)
        self.connections.add(conn)
        self.total_connections += 1
        try:
            await self._serve(conn, session, RespReader(conn, self.limits))
        except IncompleteReadError:
            pass  # the client closed its side (maybe in the middle of a command)
        except RequestTooLarge as exc:
            log.info("closing %s: %s", addr, exc)
            await trio.aclose_forcefully(conn)
        except trio.TooSlowError:
            log.info("closing %s: a command did not arrive within --read-timeout", addr)
            await trio.aclose_forcefully(conn)
        finally:
            self.sessions.discard(session)
            self.connections.discard(conn)

    async def _serve(self, conn: Connection, session: Session, reader: RespReader) -> None:
        execute = self.commands.execute
        batch_nowait = reader.batch_nowait
        out: list[bytes] = []
        size = 0
        while True:
            blocked = False
            try:
                done = 0
                while done < _BATCH_MAX:
                    batch = batch_nowait()
                    if not batch:
                        blocked = True
                        break
                    done += len(batch)
                    self.total_commands += len(batch)
                    for argv in batch:
                        if len(argv[0]) in (4, 5) and argv[0].lower() in (b"post", b"host:"):
                            # Redis's guard against HTTP requests (cross-protocol
                            # scripting): close without a reply.
                            log.warning("closing %s: an HTTP request (%r)", session.addr, argv[0])
                            await self._send(conn, out)
                            return
                        reply = execute(session, argv)
                        if type(reply) is bytes:
                            out.append(reply)
                            size += len(reply)
                        else:
                            size += _extend(out, reply)
                        if session.closing:
                            await self._send(conn, out)
                            return
                        if size >= _FLUSH_AT:
                            await self._send(conn, out)
                            out, size = [], 0
            except ProtocolError as exc:
                out.append(error(f"Protocol error: {exc}"))
                await self._send(conn, out)
                return  # serve_tcp closes the connection gracefully: the replies go out first
            if out:
                data = b"".join(out) if len(out) > 1 else out[0]
                out, size = [], 0
                try:
                    conn.write(data)
                except WriteBufferFullError:
                    await conn.send_all(data)
                if conn.write_buffer_size > conn.write_high_water:
                    await conn.drain()  # backpressure: read no more commands meanwhile
            try:
                await reader.wait(blocked)
            except ProtocolError as exc:
                await self._send(conn, [error(f"Protocol error: {exc}")])
                return

    @staticmethod
    async def _send(conn: Connection, parts: list[bytes]) -> None:
        """Send reply parts in chunks of about 64 KiB, waiting while the write
        queue is over its high-water mark."""
        chunk: list[bytes] = []
        size = 0
        for part in parts:
            chunk.append(part)
            size += len(part)
            if size >= _FLUSH_AT:
                await conn.send_all(b"".join(chunk) if len(chunk) > 1 else chunk[0])
                chunk, size = [], 0
        if chunk:
            await conn.send_all(b"".join(chunk))

    async def expire_keys(self) -> None:
        """Remove expired keys every 100 ms (Redis's active expiry)."""
        while True:
            await trio.sleep(0.1)
            self.keyspace.purge_expired()

    async def serve(
        self,
        host: str | None,
        port: int,
        *,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on ``host``:``port`` (0: a free port) until cancelled; with
        ``nursery.start`` the start value is the list of listeners.
        ``reuse_port``: share the port with other worker processes."""
        limits = self.limits
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.expire_keys)
            listeners = await nursery.start(
                functools.partial(
                    triostream.serve_tcp,
                    self.handle,
                    port,
                    host=host,
                    reuse_port=reuse_port,
                    max_buffer_size=limits.max_buffer_size,
                    idle_timeout=limits.timeout,
                    write_timeout=limits.write_timeout,
                    # No read-ahead task: the handler reads the socket itself when
                    # its buffer holds no whole element. Request/response needs
                    # no early EOF detection, and it saves a task switch per
                    # read (+10% requests/s unpipelined, measured).
                    read_ahead=False,
                )
            )
            task_status.started(listeners)


def _format_peer(conn: Connection) -> str:
    transport = conn.transport_stream
    assert isinstance(transport, trio.SocketStream)
    host, port = transport.socket.getpeername()[:2]
    return f"{host}:{port}"


async def serve(
    host: str | None,
    port: int,
    *,
    limits: Limits | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a fresh keyspace on ``host``:``port`` until cancelled."""
    await RedisServer(limits).serve(host, port, reuse_port=reuse_port, task_status=task_status)


# ---------------------------------------------------------------- --workers


def format_address(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    if listener.socket.family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def _run(host: str, port: int, limits: Limits, reuse_port: bool) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                functools.partial(serve, host, port, limits=limits, reuse_port=reuse_port)
            )
            for listener in listeners:
                print(f"listening on {format_address(listener)}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()  # graceful: serve_tcp's shutdown
                break


def _run_workers(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Start ``--workers`` processes on one port (``SO_REUSEPORT``); forward
    SIGINT/SIGTERM to them; return when all have exited."""
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as reserve:
        # Reserve the port (and learn it, for --port 0) with a bound socket
        # of the same SO_REUSEPORT group; it never listens, so the kernel
        # gives it no connection.
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind((args.host, args.port))
        port = reserve.getsockname()[1]
        child_args = [*_strip_option(argv, "--workers"), "--port", str(port), "--reuse-port"]
        children = [
            subprocess.Popen([sys.executable, os.path.abspath(__file__), *child_args]) for _ in range(args.workers)
        ]

        def forward(signum: int, frame: object) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return max(child.wait() for child in children)


def _strip_option(argv: Sequence[str], *names: str) -> list[str]:
    """``argv`` without ``--name value`` / ``--name=value`` for ``names`` (and --port)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in (*names, "--port"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value


def _seconds(text: str) -> float | None:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value or None


def main(argv: Sequence[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    parser = argparse.ArgumentParser(description="An in-memory Redis-protocol server on triostream.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--workers", type=_positive_int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--reuse-port", action="store_true", help="set SO_REUSEPORT on the listening socket")
    parser.add_argument("--max-bulk", type=_positive_int, default=Limits.max_bulk, metavar="BYTES")
    parser.add_argument("--max-args", type=_positive_int, default=Limits.max_args, metavar="N")
    parser.add_argument("--max-request", type=_positive_int, default=Limits.max_request, metavar="BYTES")
    parser.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS", help="idle clients (0: never)")
    parser.add_argument("--read-timeout", type=_seconds, default=Limits.read_timeout, metavar="SECONDS")
    parser.add_argument("--write-timeout", type=_seconds, default=Limits.write_timeout, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.workers > 1:
        sys.exit(_run_workers(args, argv))
    limits = Limits(
        max_bulk=args.max_bulk,
        max_args=args.max_args,
        max_request=args.max_request,
        timeout=args.timeout,
        read_timeout=args.read_timeout,
        write_timeout=args.write_timeout,
    )
    try:
        trio.run(_run, args.host, args.port, limits, args.reuse_port)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
