"""A small IRC server (an RFC 1459/2812 subset) on `triostream.serve_tcp`.

Run it (from a checkout, without installing triostream)::

    PYTHONPATH=. python examples/irc_server.py --port 6667

and connect any IRC client to 127.0.0.1:6667 (``irssi -c 127.0.0.1 -p 6667``,
``weechat``, ``ii -s 127.0.0.1 -p 6667 -n me``), or by hand::

    $ nc -C 127.0.0.1 6667
    NICK alice
    USER alice 0 * :Alice
    JOIN #trio
    PRIVMSG #trio :hello

On startup the server prints ``listening on HOST:PORT`` (one line per
listening socket) and flushes it, so ``--port 0`` is usable from scripts.

What it implements
------------------

Registration (``NICK``, ``USER``, ``PASS`` when ``--password`` is set, ``CAP
LS/REQ/END`` answered with no capabilities), the welcome numerics 001-005,
``LUSERS`` and ``MOTD`` (375/372/376, or 422 without ``--motd``), ``PING`` and
``PONG`` both ways, ``JOIN`` (``JOIN 0`` parts all), ``PART``, ``PRIVMSG`` and
``NOTICE`` to nicks and channels (a channel takes messages from its members
only), ``NAMES``, ``TOPIC``, ``LIST``, ``WHO`` and ``WHOIS`` (basic),
``ISON``, ``AWAY``, ``MODE`` (queries only), ``QUIT``; nick collisions (433),
unknown commands (421). Nicks and channel names compare in the ``rfc1459``
case mapping. There are no channel operators, modes, bans or server links:
about what `miniircd <https://pypi.org/project/miniircd/>`_ offers.

Lines end in CRLF or a bare LF (a lone CR inside a line also ends a
command, as in most IRC servers). A line of more than 512 bytes, its ending
included, is answered with ``417 ERR_INPUTTOOLONG`` and skipped up to its
end in bounded memory; lines the server sends are cut at 512 bytes.

How it stays up when clients misbehave
--------------------------------------

* **Fan-out never waits.** A message to a channel is encoded once and queued
  on every member's own bounded write queue with the synchronous
  `triostream.Connection.write` (no ``await`` per member). A member whose
  queue would pass ``--sendq`` bytes (`triostream.WriteBufferFullError`) is
  disconnected at once with ``ERROR :Closing Link: <host> (Max SendQ
  exceeded)`` when that line still fits; a member whose socket accepts
  nothing for ``--write-timeout`` seconds is dropped by the connection
  itself. The other members never wait for either.
* **Liveness**, as IRC servers do it: a client silent for ``--ping-interval``
  seconds is sent ``PING``, and disconnected (``Ping timeout``) if nothing
  arrives within ``--ping-timeout`` more; a connection that has not
  registered within ``--registration-timeout`` seconds is dropped. One task
  checks every client's timers (no task or timer per client).
* **Flood control**: each command costs ``1/--flood-rate`` seconds of the
  client's budget, which may run ``--flood-burst`` commands ahead; a client
  past that is disconnected (``Excess Flood``), before its burst reaches
  every member of a channel (``--flood-rate 0`` turns it off).
* **Limits**: 512-byte lines, 30-byte nicks, 50-byte channel names, 390-byte
  topics, 50 channels per client, 4 targets per message, and every limit of
  `triostream.serve_tcp` (connections, per-host connections).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

import triostream
from triostream import CloseReason, Connection, FrameTooLongError, IncompleteReadError, WriteBufferFullError

__all__ = ["Config", "IRCServer", "main", "serve"]

log = logging.getLogger("irc_server")

VERSION = b"triostream-irc-0.1"

#: The longest line a client may send, CRLF included (RFC 2812 2.3).
MAX_LINE = 512
NICK_LEN = 30
CHANNEL_LEN = 50
TOPIC_LEN = 390
MAX_CHANNELS = 50
MAX_TARGETS = 4

_NICK = re.compile(rb"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,%d}\Z" % (NICK_LEN - 1))
_CHANNEL = re.compile(rb"[#&][^\x00\x07\r\n ,:]{1,%d}\Z" % (CHANNEL_LEN - 1))
_USER_JUNK = re.compile(rb"[^A-Za-z0-9._-]")
# The rfc1459 case mapping: A-Z and []\~ are the upper case of a-z and {}|^.
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", b"abcdefghijklmnopqrstuvwxyz{}|^")


def irc_lower(name: bytes) -> bytes:
    return name.translate(_LOWER)


def parse(line: bytes) -> tuple[bytes, list[bytes]] | None:
    """``(COMMAND, params)`` of a client line, or None for an empty one. A
    client's prefix is ignored; the trailing parameter may hold spaces."""
    if line.startswith(b":"):
        line = line.partition(b" ")[2]
    head, sep, trailing = line.partition(b" :")
    params = [p for p in head.split(b" ") if p]
    if not params:
        return None
    if sep:
        params.append(trailing)
    return params[0].upper(), params[1:]


@dataclass
class Config:
    """The server's settings (the command line's options)."""

    server_name: bytes = b"irc.triostream.local"
    motd: list[bytes] | None = None
    password: bytes | None = None
    #: Bytes queued per client before it is dropped (its write queue's size).
    sendq: int = 128 * 1024
    #: Seconds a client's socket may accept nothing before it is dropped.
    write_timeout: float = 30.0
    ping_interval: float = 120.0
    ping_timeout: float = 60.0
    registration_timeout: float = 30.0
    #: Commands per second, and how many may come at once; None: no limit.
    flood_rate: float | None = 10.0
    flood_burst: int = 40
    #: Seconds a closing client gets to read its last lines (ERROR ...).
    close_grace: float = 2.0


class Channel:
    __slots__ = ("members", "name", "topic", "topic_set_at", "topic_set_by")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.members: dict[Client, None] = {}  # insertion-ordered set
        self.topic = b""
        self.topic_set_by = b""
        self.topic_set_at = 0


class Client:
    """One connection's state. Everything that sends is synchronous: lines
    are queued with `Connection.write`, never awaited."""

    def __init__(self, server: IRCServer, conn: Connection, host: bytes) -> None:
        self.server = server
        self.conn = conn
        self.host = host
        self.nick = b""
        self.user = b""
        self.realname = b""
        self.password_ok = server.config.password is None
        self.cap_negotiating = False
        self.registered = False
        self.away: bytes | None = None
        self.channels: dict[bytes, Channel] = {}  # by irc_lower(name)
        now = trio.current_time()
        self.connected_at = now
        self.last_seen = now
        self.ping_sent: float | None = None
        self.flood_timer = now
        self.dead = False
        self.quit_reason = ""
        self.scope = trio.CancelScope()

    @property
    def prefix(self) -> bytes:
        return b"%s!%s@%s" % (self.nick, self.user, self.host)

    @property
    def name(self) -> bytes:
        """The nick for numerics (``*`` before it has one)."""
        return self.nick or b"*"

    # ------------------------------------------------------------ sending

    def send(self, line: bytes) -> None:
        """Queue one line (CRLF added, cut at 512 bytes)."""
        if len(line) > MAX_LINE - 2:
            line = line[: MAX_LINE - 2]
        self.send_raw(line + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Queue an encoded line, without waiting: a client whose queue is
        full is disconnected, a dead one skipped. Used by the fan-out."""
        if self.dead:
            return
        try:
            self.conn.write(data)
        except WriteBufferFullError:
            self.server.kill(self, "Max SendQ exceeded")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # its own task notices and cleans up

    def reply(self, code: bytes, *params: bytes) -> None:
        """``:server CODE nick params...``; the last param is the text."""
        *middle, text = params
        self.send(b" ".join([b":" + self.server.config.server_name, code, self.name, *middle, b":" + text]))


class IRCServer:
    """The shared state: nicks, channels, and the commands that change them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.nicks: dict[bytes, Client] = {}  # by irc_lower(nick)
        self.channels: dict[bytes, Channel] = {}  # by irc_lower(name)
        self.clients: set[Client] = set()  # every connection, registered or not
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()).encode()
        self._dying: deque[Client] = deque()
        self._reaping = False
        # Figures the tests and the benchmark read.
        self.sendq_kills = 0

    # ------------------------------------------------------------ connections

    async def handle(self, conn: Connection) -> None:
        """`triostream.serve_tcp`'s handler: one client, until it leaves."""
        host = _peer_host(conn)
        client = Client(self, conn, host)
        self.clients.add(client)
        log.info("%s: connected", host.decode())
        reason = "Remote host closed the connection"
        try:
            with client.scope:
                await self._read_loop(client)
        except IncompleteReadError:
            pass  # EOF in the middle of a line
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            reason = _close_reason(conn)
        except trio.Cancelled:
            self.kill(client, "Server shutting down")
            raise
        finally:
            self.kill(client, reason)  # keeps the first reason given
        # Give the client a moment to read its last lines (ERROR ...), then
        # close: gracefully (serve_tcp does it) or, if it does not read, at once.
        with trio.move_on_after(self.config.close_grace):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await conn.flush()
            return
        await trio.aclose_forcefully(conn)

    async def _read_loop(self, client: Client) -> None:
        conn = client.conn
        while True:  # a new iterator after each over-long line
            try:
                # The iterator hands out lines already buffered without a
                # checkpoint: a pipelined burst is handled in one go.
                async for line in conn.lines(max_size=MAX_LINE):
                    client.last_seen = trio.current_time()
                    client.ping_sent = None
                    if b"\r" in line or b"\0" in line:
                        for part in line.replace(b"\0", b"").split(b"\r"):
                            self.dispatch(client, part)
                    else:
                        self.dispatch(client, line)
                    if self.config.flood_rate is not None and self._flooding(client):
                        self.kill(client, "Excess Flood")
                    if client.dead:
                        return
                return  # EOF between lines
            except FrameTooLongError:
                client.reply(b"417", b"Input line was too long")
                await conn.discard_until(b"\n")

    def _flooding(self, client: Client) -> bool:
        """RFC 1459 8.10 flood control, as IRC servers apply it: each command
        moves the client's timer 1/rate ahead; a client more than ``burst``
        commands ahead of the clock is flooding."""
        rate = self.config.flood_rate
        assert rate is not None
        now = trio.current_time()
        client.flood_timer = max(client.flood_timer, now) + 1 / rate
        return client.flood_timer - now > self.config.flood_burst / rate

    def kill(self, client: Client, reason: str) -> None:
        """Disconnect ``client`` (synchronous, idempotent: the first reason
        wins): free its nick, tell its channels, queue ``ERROR`` if it fits,
        and stop its task. Kills caused by this one (a channel member whose
        queue the QUIT line overflows) are handled after it, not nested."""
        if client.dead:
            return
        client.quit_reason = reason
        if reason == "Max SendQ exceeded":
            self.sendq_kills += 1
        self._dying.append(client)
        client.dead = True  # nothing more is queued for it, except ERROR below
        if self._reaping:
            return
        self._reaping = True
        try:
            while self._dying:
                self._remove(self._dying.popleft())
        finally:
            self._reaping = False

    def _remove(self, client: Client) -> None:
        reason = client.quit_reason.encode()
        log.info("%s: %s disconnected: %s", client.host.decode(), client.nick.decode() or "*", client.quit_reason)
        if client.registered:
            self._to_peers(client, b":%s QUIT :%s" % (client.prefix, reason))
            for channel in client.channels.values():
                self._leave(client, channel)
            client.channels.clear()
        if client.nick and self.nicks.get(irc_lower(client.nick)) is client:
            del self.nicks[irc_lower(client.nick)]
        self.clients.discard(client)
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            client.conn.write(b"ERROR :Closing Link: %s (%s)\r\n" % (client.host, reason))
        client.scope.cancel()

    def _leave(self, client: Client, channel: Channel) -> None:
        channel.members.pop(client, None)
        if not channel.members:
            del self.channels[irc_lower(channel.name)]

    # ------------------------------------------------------------ fan-out

    @staticmethod
    def _encode(line: bytes) -> bytes:
        return line[: MAX_LINE - 2] + b"\r\n"

    def to_channel(self, channel: Channel, line: bytes, exclude: Client | None = None) -> None:
        """Queue ``line`` to every member: encoded once, never awaited."""
        data = self._encode(line)
        # A snapshot: a member whose queue overflows is removed meanwhile.
        for member in tuple(channel.members):
            if member is not exclude:
                member.send_raw(data)

    def _to_peers(self, client: Client, line: bytes, *, include_self: bool = False) -> None:
        """Queue ``line`` once to everyone sharing a channel with ``client``."""
        peers: dict[Client, None] = {}
        for channel in client.channels.values():
            peers.update(channel.members)
        if include_self:
            peers[client] = None
        else:
            peers.pop(client, None)
        data = self._encode(line)
        for peer in tuple(peers):
            peer.send_raw(data)

    # ------------------------------------------------------------ timers

    async def run_timers(self) -> None:
        """One task for every client's registration and ping timers."""
        config = self.config
        tick = min(config.ping_interval, config.ping_timeout, config.registration_timeout) / 4
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for client in tuple(self.clients):
                if not client.registered:
                    if now - client.connected_at > config.registration_timeout:
                        self.kill(client, "Registration timed out")
                elif client.ping_sent is not None:
                    if now - client.ping_sent > config.ping_timeout:
                        self.kill(client, f"Ping timeout: {round(now - client.last_seen)} seconds")
                elif now - client.last_seen > config.ping_interval:
                    client.ping_sent = now
                    client.send(b"PING :" + config.server_name)

    # ------------------------------------------------------------ commands

    def dispatch(self, client: Client, line: bytes) -> None:
        parsed = parse(line)
        if parsed is None:
            return  # empty lines are ignored (RFC 2812 2.3.1)
        command, params = parsed
        if not client.registered:
            handler = _REGISTRATION.get(command)
            if handler is None:
                if command not in _COMMANDS:
                    client.reply(b"421", command[:32], b"Unknown command")
                else:
                    client.reply(b"451", b"You have not registered")
                return
        else:
            handler = _COMMANDS.get(command)
            if handler is None:
                client.reply(b"421", command[:32], b"Unknown command")
                return
        handler(self, client, params)

    def cmd_cap(self, client: Client, params: list[bytes]) -> None:
        sub = params[0].upper() if params else b""
        if sub == b"LS" or sub == b"LIST":
            client.cap_negotiating = not client.registered
            client.send(b":%s CAP %s %s :" % (self.config.server_name, client.name, sub))
        elif sub == b"REQ":
            client.cap_negotiating = not client.registered
            client.send(b":%s CAP %s NAK :%s" % (self.config.server_name, client.name, params[-1] if params else b""))
        elif sub == b"END":
            client.cap_negotiating = False
            self._try_register(client)
        else:
            client.reply(b"410", sub or b"*", b"Invalid CAP command")

    def cmd_pass(self, client: Client, params: list[bytes]) -> None:
        if client.registered:
            client.reply(b"462", b"You may not reregister")
        elif not params:
            client.reply(b"461", b"PASS", b"Not enough parameters")
        else:
            client.password_ok = self.config.password is None or params[0] == self.config.password

    def cmd_nick(self, client: Client, params: list[bytes]) -> None:
        if not params or not params[0]:
            client.reply(b"431", b"No nickname given")
            return
        nick = params[0]
        if not _NICK.match(nick):
            client.reply(b"432", nick[: NICK_LEN + 1], b"Erroneous nickname")
            return
        key = irc_lower(nick)
        other = self.nicks.get(key)
        if other is not None and other is not client:
            client.reply(b"433", nick, b"Nickname is already in use")
            return
        if nick == client.nick:
            return
        if client.nick:
            del self.nicks[irc_lower(client.nick)]
        self.nicks[key] = client
        if client.registered:
            self._to_peers(client, b":%s NICK :%s" % (client.prefix, nick), include_self=True)
            client.nick = nick
        else:
            client.nick = nick
            self._try_register(client)

    def cmd_user(self, client: Client, params: list[bytes]) -> None:
        if client.registered:
            client.reply(b"462", b"You may not reregister")
            return
        if len(params) < 4 or not params[0]:
            client.reply(b"461", b"USER", b"Not enough parameters")
            return
        client.user = (_USER_JUNK.sub(b"", params[0])[:10]) or b"user"
        client.realname = params[3][:100]
        self._try_register(client)

    def _try_register(self, client: Client) -> None:
        if client.registered or not client.nick or not client.user or client.cap_negotiating:
            return
        if not client.password_ok:
            client.reply(b"464", b"Password incorrect")
            self.kill(client, "Bad password")
            return
        client.registered = True
        config = self.config
        client.reply(b"001", b"Welcome to the Internet Relay Network " + client.prefix)
        client.reply(b"002", b"Your host is %s, running version %s" % (config.server_name, VERSION))
        client.reply(b"003", b"This server was created " + self.created)
        client.send(b":%s 004 %s %s %s i n" % (config.server_name, client.nick, config.server_name, VERSION))
        client.reply(
            b"005",
            b"CHANTYPES=#&",
            b"CASEMAPPING=rfc1459",
            b"NICKLEN=%d" % NICK_LEN,
            b"CHANNELLEN=%d" % CHANNEL_LEN,
            b"TOPICLEN=%d" % TOPIC_LEN,
            b"CHANLIMIT=#&:%d" % MAX_CHANNELS,
            b"MAXTARGETS=%d" % MAX_TARGETS,
            b"PREFIX=",
            b"NETWORK=triostream",
            b"are supported by this server",
        )
        self.cmd_lusers(client, [])
        self.cmd_motd(client, [])

    def cmd_lusers(self, client: Client, params: list[bytes]) -> None:
        users = len(self.nicks)
        client.reply(b"251", b"There are %d users and 0 invisible on 1 servers" % users)
        client.reply(b"254", b"%d" % len(self.channels), b"channels formed")
        client.reply(b"255", b"I have %d clients and 0 servers" % users)

    def cmd_motd(self, client: Client, params: list[bytes]) -> None:
        motd = self.config.motd
        if motd is None:
            client.reply(b"422", b"MOTD File is missing")
            return
        client.reply(b"375", b"- %s Message of the day - " % self.config.server_name)
        for line in motd:
            client.reply(b"372", b"- " + line)
        client.reply(b"376", b"End of /MOTD command.")

    def cmd_ping(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"409", b"No origin specified")
            return
        name = self.config.server_name
        client.send(b":%s PONG %s :%s" % (name, name, params[0]))

    def cmd_pong(self, client: Client, params: list[bytes]) -> None:
        pass  # any line counts as alive (see _read_loop)

    def cmd_quit(self, client: Client, params: list[bytes]) -> None:
        self.kill(client, "Quit: " + (params[0].decode("utf-8", "replace") if params else "Client quit"))

    def cmd_join(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"461", b"JOIN", b"Not enough parameters")
            return
        if params[0] == b"0":
            for channel in tuple(client.channels.values()):
                self._part(client, channel, client.nick)
            return
        for name in params[0].split(b","):
            key = irc_lower(name)
            if key in client.channels:
                continue
            if not _CHANNEL.match(name):
                client.reply(b"403", name[: CHANNEL_LEN + 1], b"No such channel")
                continue
            if len(client.channels) >= MAX_CHANNELS:
                client.reply(b"405", name, b"You have joined too many channels")
                continue
            channel = self.channels.get(key) or self.channels.setdefault(key, Channel(name))
            channel.members[client] = None
            client.channels[key] = channel
            self.to_channel(channel, b":%s JOIN %s" % (client.prefix, channel.name))
            if channel.topic:
                self._send_topic(client, channel)
            self._send_names(client, channel)

    def cmd_part(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"461", b"PART", b"Not enough parameters")
            return
        message = params[1] if len(params) > 1 else client.nick
        for name in params[0].split(b","):
            channel = client.channels.get(irc_lower(name))
            if channel is None:
                if irc_lower(name) in self.channels:
                    client.reply(b"442", name, b"You're not on that channel")
                else:
                    client.reply(b"403", name[: CHANNEL_LEN + 1], b"No such channel")
                continue
            self._part(client, channel, message)

    def _part(self, client: Client, channel: Channel, message: bytes) -> None:
        self.to_channel(channel, b":%s PART %s :%s" % (client.prefix, channel.name, message))
        del client.channels[irc_lower(channel.name)]
        self._leave(client, channel)

    def cmd_privmsg(self, client: Client, params: list[bytes], command: bytes = b"PRIVMSG") -> None:
        notice = command == b"NOTICE"  # never answered with an error
        if not params:
            if not notice:
                client.reply(b"411", b"No recipient given (%s)" % command)
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                client.reply(b"412", b"No text to send")
            return
        targets = params[0].split(b",")
        if len(targets) > MAX_TARGETS:
            if not notice:
                client.reply(b"407", params[0][:64], b"Too many recipients")
            return
        text = params[1]
        for target in targets:
            key = irc_lower(target)
            line = b":%s %s %s :%s" % (client.prefix, command, target, text)
            if target[:1] in b"#&":
                channel = self.channels.get(key)
                if channel is None:
                    if not notice:
                        client.reply(b"401", target[:64], b"No such nick/channel")
                elif client not in channel.members:
                    if not notice:
                        client.reply(b"404", channel.name, b"Cannot send to channel")
                else:
                    self.to_channel(channel, line, exclude=client)
            else:
                peer = self.nicks.get(key)
                if peer is None:
                    if not notice:
                        client.reply(b"401", target[:64], b"No such nick/channel")
                    continue
                peer.send(line)
                if peer.away is not None and not notice:
                    client.reply(b"301", peer.nick, peer.away)

    def cmd_notice(self, client: Client, params: list[bytes]) -> None:
        self.cmd_privmsg(client, params, b"NOTICE")

    def cmd_names(self, client: Client, params: list[bytes]) -> None:
        if not params:
            for channel in tuple(self.channels.values()):
                self._send_names(client, channel)
            client.reply(b"366", b"*", b"End of NAMES list")
            return
        for name in params[0].split(b",")[:MAX_TARGETS]:
            found = self.channels.get(irc_lower(name))
            if found is None:
                client.reply(b"366", name[:CHANNEL_LEN], b"End of NAMES list")
            else:
                self._send_names(client, found)

    def _send_names(self, client: Client, channel: Channel) -> None:
        head = b":%s 353 %s = %s :" % (self.config.server_name, client.name, channel.name)
        room = MAX_LINE - 2 - len(head)
        line: list[bytes] = []
        size = 0
        for member in channel.members:
            if line and size + 1 + len(member.nick) > room:
                client.send(head + b" ".join(line))
                line, size = [], 0
            size += len(member.nick) + (1 if line else 0)
            line.append(member.nick)
        if line:
            client.send(head + b" ".join(line))
        client.reply(b"366", channel.name, b"End of NAMES list")

    def cmd_topic(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"461", b"TOPIC", b"Not enough parameters")
            return
        channel = self.channels.get(irc_lower(params[0]))
        if channel is None:
            client.reply(b"403", params[0][: CHANNEL_LEN + 1], b"No such channel")
            return
        if len(params) == 1:
            if channel.topic:
                self._send_topic(client, channel)
            else:
                client.reply(b"331", channel.name, b"No topic is set")
            return
        if client not in channel.members:
            client.reply(b"442", channel.name, b"You're not on that channel")
            return
        channel.topic = params[1][:TOPIC_LEN]
        channel.topic_set_by = client.nick
        channel.topic_set_at = int(time.time())
        self.to_channel(channel, b":%s TOPIC %s :%s" % (client.prefix, channel.name, channel.topic))

    def _send_topic(self, client: Client, channel: Channel) -> None:
        client.reply(b"332", channel.name, channel.topic)
        client.send(
            b":%s 333 %s %s %s %d"
            % (self.config.server_name, client.name, channel.name, channel.topic_set_by, channel.topic_set_at)
        )

    def cmd_list(self, client: Client, params: list[bytes]) -> None:
        if params:
            found = (self.channels.get(irc_lower(name)) for name in params[0].split(b",")[:MAX_TARGETS])
            channels = [channel for channel in found if channel is not None]
        else:
            channels = list(self.channels.values())
        client.reply(b"321", b"Channel", b"Users  Name")
        for channel in channels:
            client.reply(b"322", channel.name, b"%d" % len(channel.members), channel.topic)
        client.reply(b"323", b"End of LIST")

    def cmd_who(self, client: Client, params: list[bytes]) -> None:
        mask = params[0] if params else b"*"
        channel = self.channels.get(irc_lower(mask))
        if channel is not None:
            members: Sequence[Client] = tuple(channel.members)
            where = channel.name
        else:
            peer = self.nicks.get(irc_lower(mask))
            members = (peer,) if peer is not None else ()
            where = b"*"
        for member in members:
            flags = b"G" if member.away is not None else b"H"
            client.reply(
                b"352", where, member.user, member.host, self.config.server_name, member.nick, flags,
                b"0 " + member.realname,
            )  # fmt: skip
        client.reply(b"315", mask[:64], b"End of WHO list")

    def cmd_whois(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"431", b"No nickname given")
            return
        nick = params[-1]
        peer = self.nicks.get(irc_lower(nick))
        if peer is None:
            client.reply(b"401", nick[:64], b"No such nick/channel")
        else:
            client.reply(b"311", peer.nick, peer.user, peer.host, b"*", peer.realname)
            if peer.channels:
                client.reply(b"319", peer.nick, b" ".join(c.name for c in peer.channels.values()))
            client.reply(b"312", peer.nick, self.config.server_name, b"triostream")
            if peer.away is not None:
                client.reply(b"301", peer.nick, peer.away)
            idle = int(trio.current_time() - peer.last_seen)
            client.reply(b"317", peer.nick, b"%d" % idle, b"seconds idle")
        client.reply(b"318", nick[:64], b"End of WHOIS list")

    def cmd_ison(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"461", b"ISON", b"Not enough parameters")
            return
        wanted = b" ".join(params).split()[:64]
        online = [self.nicks[irc_lower(n)].nick for n in wanted if irc_lower(n) in self.nicks]
        client.reply(b"303", b" ".join(online))

    def cmd_away(self, client: Client, params: list[bytes]) -> None:
        if params and params[0]:
            client.away = params[0][:TOPIC_LEN]
            client.reply(b"306", b"You have been marked as being away")
        else:
            client.away = None
            client.reply(b"305", b"You are no longer marked as being away")

    def cmd_mode(self, client: Client, params: list[bytes]) -> None:
        if not params:
            client.reply(b"461", b"MODE", b"Not enough parameters")
            return
        target = params[0]
        channel = self.channels.get(irc_lower(target))
        if channel is not None:
            if len(params) == 1:
                client.reply(b"324", channel.name, b"+n")
            elif params[1] in (b"b", b"+b"):
                client.reply(b"368", channel.name, b"End of channel ban list")
            else:
                client.reply(b"482", channel.name, b"You're not channel operator")
        elif irc_lower(target) == irc_lower(client.nick):
            if len(params) == 1:
                client.reply(b"221", b"+")
            else:
                client.reply(b"501", b"Unknown MODE flag")
        elif target[:1] in b"#&":
            client.reply(b"403", target[: CHANNEL_LEN + 1], b"No such channel")
        else:
            client.reply(b"502", b"Cannot change mode for other users")


_Handler = Callable[[IRCServer, Client, list[bytes]], None]

#: Commands a client may send before it has registered.
_REGISTRATION: dict[bytes, _Handler] = {
    b"CAP": IRCServer.cmd_cap,
    b"PASS": IRCServer.cmd_pass,
    b"NICK": IRCServer.cmd_nick,
    b"USER": IRCServer.cmd_user,
    b"PING": IRCServer.cmd_ping,
    b"PONG": IRCServer.cmd_pong,
    b"QUIT": IRCServer.cmd_quit,
}
_COMMANDS: dict[bytes, _Handler] = {
    **_REGISTRATION,
    b"LUSERS": IRCServer.cmd_lusers,
    b"MOTD": IRCServer.cmd_motd,
    b"JOIN": IRCServer.cmd_join,
    b"PART": IRCServer.cmd_part,
    b"PRIVMSG": IRCServer.cmd_privmsg,
    b"NOTICE": IRCServer.cmd_notice,
    b"NAMES": IRCServer.cmd_names,
    b"TOPIC": IRCServer.cmd_topic,
    b"LIST": IRCServer.cmd_list,
    b"WHO": IRCServer.cmd_who,
    b"WHOIS": IRCServer.cmd_whois,
    b"ISON": IRCServer.cmd_ison,
    b"AWAY": IRCServer.cmd_away,
    b"MODE": IRCServer.cmd_mode,
}


def _peer_host(conn: Connection) -> bytes:
    stream = conn.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return b"unknown"
        if isinstance(address, tuple):
            return str(address[0]).encode()
    return b"localhost"


def _close_reason(conn: Connection) -> str:
    """An IRC-style quit reason for a connection that ended by itself."""
    reason = conn.close_reason
    if reason is CloseReason.TIMEOUT:
        return "Write timeout" if "write" in str(conn.close_error) else "Connection timed out"
    if reason is CloseReason.ERROR:
        error = conn.close_error
        if isinstance(error, ConnectionResetError):
            return "Connection reset by peer"
        return f"Read error: {error}" if error is not None else "Read error"
    return "Remote host closed the connection"


# ------------------------------------------------------------ running it


async def serve(
    host: str | None,
    port: int,
    config: Config | None = None,
    *,
    server: IRCServer | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve IRC on ``host``:``port`` (0: a free port) until cancelled.

    ``nursery.start(serve, ...)`` returns the listeners. Pass ``server`` to
    look at its state (the tests do); else one is made from ``config``.
    """
    if server is None:
        server = IRCServer(config or Config())
    config = server.config
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run_timers)
        listeners: list[trio.SocketListener] = await nursery.start(
            functools.partial(
                triostream.serve_tcp,
                server.handle,
                port,
                host=host,
                # A line is at most 512 bytes; 16 KiB leaves room for a burst
                # of pipelined commands (read-ahead stops there: TCP pushes back).
                max_buffer_size=16 * 1024,
                receive_size=16 * 1024,
                max_write_buffer_size=config.sendq,
                write_high_water=min(64 * 1024, config.sendq),
                write_timeout=config.write_timeout,
                # Liveness is the IRC PING/PONG above: a client may stay
                # silent for hours while it answers PINGs. The connection's
                # own idle_timeout (no byte either way) would never fire
                # while PINGs go out, and read_timeout counts the wait for
                # the first byte of a line, so neither is set.
                idle_timeout=None,
                close_timeout=max(config.close_grace, 1.0),
            )
        )
        task_status.started(listeners)


def format_address(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    if listener.socket.family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def _run(host: str, port: int, config: Config) -> None:
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(functools.partial(serve, host, port, config))
        for listener in listeners:
            print(f"listening on {format_address(listener)}", flush=True)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = kind(text)
        if not value > 0:  # also rejects nan
            raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
        return value

    return convert


def main(argv: Sequence[str] | None = None) -> None:
    defaults = Config()
    parser = argparse.ArgumentParser(description="A small IRC server on triostream.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=6667, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--server-name", default=defaults.server_name.decode())
    parser.add_argument("--motd", metavar="FILE", help="message of the day, a text file")
    parser.add_argument("--password", help="connection password clients must send with PASS")
    parser.add_argument(
        "--sendq", type=_positive(int), default=defaults.sendq, metavar="BYTES", help="per-client write queue"
    )
    parser.add_argument("--write-timeout", type=_positive(float), default=defaults.write_timeout, metavar="SECONDS")
    parser.add_argument("--ping-interval", type=_positive(float), default=defaults.ping_interval, metavar="SECONDS")
    parser.add_argument("--ping-timeout", type=_positive(float), default=defaults.ping_timeout, metavar="SECONDS")
    parser.add_argument(
        "--registration-timeout", type=_positive(float), default=defaults.registration_timeout, metavar="SECONDS"
    )
    parser.add_argument(
        "--flood-rate", type=float, default=defaults.flood_rate, metavar="PER_SECOND", help="0: no flood control"
    )
    parser.add_argument("--flood-burst", type=_positive(int), default=defaults.flood_burst, metavar="COMMANDS")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and disconnections")
    args = parser.parse_args(argv)
    motd = None
    if args.motd:
        with open(args.motd, "rb") as file:
            motd = [line.rstrip(b"\r\n") for line in file]
    config = Config(
        server_name=args.server_name.encode(),
        motd=motd,
        password=args.password.encode() if args.password else None,
        sendq=args.sendq,
        write_timeout=args.write_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        registration_timeout=args.registration_timeout,
        flood_rate=args.flood_rate if args.flood_rate and args.flood_rate > 0 else None,
        flood_burst=args.flood_burst,
    )
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        trio.run(_run, args.host, args.port, config)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
