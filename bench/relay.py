"""A TCP relay that adds network latency between the bench's tools and its sshd hosts.

The kernel here has no netem, so every SSH connection of a measured run goes through this
relay when latency is on: one loopback listener per sshd, each direction delayed by
`--delay-ms` (so a round trip costs twice that). Bytes read at t are written at t + delay,
in order, while reading goes on: many messages can be in flight, as on a real link, so
throughput is not capped by the delay. sshd sees a new connection three delays after the
client made it, as a real server accepts once SYN, SYN-ACK and ACK have each crossed.

    python relay.py --delay-ms 10 2201 2202   # prints {"2201": <relay port>, ...}, then relays

It runs as its own process (one asyncio loop for all hosts) so its work happens beside the
measured tools, not inside their processes; it ends on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import deque

CLOSE = None  # queued after a side's last bytes: close the other side then


class Direction:
    """One direction of one connection: what was read, each piece due at read time + delay."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.out: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes | None) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        self._arm()

    def attach(self, out: asyncio.Transport) -> None:
        """Start writing to `out` (the far side, once it is connected)."""
        self.out = out
        self._arm()

    def _arm(self) -> None:
        # one timer per direction, for the oldest piece: pieces leave in the order read
        if self.timer is None and self.out is not None and self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        assert self.out is not None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if self.out.is_closing():
                continue
            if data is CLOSE:
                self.out.close()  # after what is buffered
            else:
                self.out.write(data)
        self._arm()


class Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads goes to the other socket, later."""

    def __init__(self, inbound: Direction, outbound: Direction) -> None:
        self.inbound = inbound  # read here, written on the other side
        self.outbound = outbound  # read on the other side, written here

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.outbound.attach(transport)

    def data_received(self, data: bytes) -> None:
        self.inbound.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbound.push(CLOSE)


async def relay(target: int, delay: float) -> asyncio.Server:
    """A listener on a free loopback port that relays every connection to `target`."""
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def accepted() -> Side:
        up, down = Direction(loop, delay), Direction(loop, delay)
        task = loop.create_task(_connect(target, 3 * delay, up, down))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return Side(up, down)

    return await loop.create_server(accepted, "127.0.0.1", 0)


async def _connect(target: int, after: float, up: Direction, down: Direction) -> None:
    await asyncio.sleep(after)
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(lambda: Side(down, up), "127.0.0.1", target)
    except OSError:
        if down.out is not None:
            down.out.close()


async def serve(targets: list[int], delay: float) -> None:
    servers = [await relay(port, delay) for port in targets]
    ports = {str(t): s.sockets[0].getsockname()[1] for t, s in zip(targets, servers, strict=True)}
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=10.0, help="each way (default 10)")
    parser.add_argument("ports", nargs="+", type=int, help="sshd ports on 127.0.0.1")
    args = parser.parse_args(argv)
    # The relay stands in for a link, which takes no CPU from the hosts or the tools: as
    # root, it runs ahead of them so a loaded machine stretches its delays less.
    with contextlib.suppress(PermissionError):
        os.nice(-10)
    asyncio.run(serve(args.ports, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
