"""Fixtures for the cluster tests: a real nats-server on loopback per test, and nats-py clients
that are closed when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from io_backends.cluster import NatsServer

Connect = Callable[..., Awaitable[Client]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


async def _quiet(_: Exception) -> None:
    """nats-py logs every failed reconnect attempt with a traceback by default."""


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Connect]:
    """``await connect(**options)``: a nats-py client of ``nats_server``, reconnecting fast and
    forever (what a host would use), closed at the end of the test."""
    clients: list[Client] = []

    async def _connect(servers: str | list[str] | None = None, **options: Any) -> Client:
        options.setdefault("reconnect_time_wait", 0.05)
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("connect_timeout", 2)
        options.setdefault("error_cb", _quiet)
        client = await nats.connect(servers or nats_server.url, **options)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        if not client.is_closed:
            await client.close()
