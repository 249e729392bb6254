"""``python -m io_backends.a2a``: an A2A gateway in front of an AutoGen host.

    python -m io_backends.a2a http://127.0.0.1:50060 --expose weather="Answers weather questions." \\
        [--expose TYPE=DESCRIPTION ...] [--bind 127.0.0.1] [--port 8080] [--public-url URL] \\
        [--token-env A2A_TOKEN] [--host-token-env HOST_TOKEN]

Each exposed type takes :class:`~io_backends.a2a.A2AMessage` and its progress topic is
``a2a.progress`` (use :class:`~io_backends.a2a.A2AGateway` in Python for more). Prints one line,
``A2A gateway at <url>``, once it serves; stops on SIGINT or SIGTERM. Runs on uvloop when it is
installed (``pip install uvloop``), as uvicorn does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from ..worker import HttpWorkerAgentRuntime
from ._exposed import ExposedAgent
from ._gateway import A2AGateway


def _exposed(spec: str) -> ExposedAgent:
    agent_type, sep, description = spec.partition("=")
    if not sep or not description.strip():
        raise argparse.ArgumentTypeError(f"write --expose TYPE=DESCRIPTION, not {spec!r}")
    return ExposedAgent(agent_type.strip(), description=description.strip())


def _secret(parser: argparse.ArgumentParser, variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable, "")
    if not value.strip():
        parser.error(f"the environment variable {variable} is empty or not set")
    return value


async def _serve(args: argparse.Namespace, token: str | None, host_token: str | None) -> None:
    runtime = HttpWorkerAgentRuntime(args.host_address, auth_token=host_token)
    await runtime.start()
    gateway = A2AGateway(
        runtime, args.expose, bind_host=args.bind, port=args.port, public_url=args.public_url, bearer_token=token
    )
    try:
        await gateway.start()
        print(f"A2A gateway at {gateway.url}", flush=True)
        await gateway.serve_forever()  # until SIGINT or SIGTERM (uvicorn's handlers)
    finally:
        await gateway.stop()
        await runtime.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m io_backends.a2a", description=__doc__.split("\n")[0])
    parser.add_argument("host_address", help="the AutoGen host, e.g. http://127.0.0.1:50060")
    parser.add_argument("--expose", action="append", type=_exposed, required=True, metavar="TYPE=DESCRIPTION")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): any free port")
    parser.add_argument("--public-url", help="the base URL clients reach the gateway at (written in the cards)")
    parser.add_argument("--token-env", help="the environment variable holding the bearer token A2A clients must send")
    parser.add_argument("--host-token-env", help="the environment variable holding the host's auth token")
    args = parser.parse_args(argv)
    token, host_token = _secret(parser, args.token_env), _secret(parser, args.host_token_env)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        # uvicorn stops the gateway on the first signal, then raises it again: let that be a no-op
        # so the worker leaves the host cleanly and the process exits 0.
        signal.signal(stop_signal, lambda *_: None)
    try:
        import uvloop  # as uvicorn's own runner does: a2a-sdk's server answers 3-5x faster on it
    except ImportError:
        asyncio.run(_serve(args, token, host_token))
    else:
        uvloop.run(_serve(args, token, host_token))


if __name__ == "__main__":
    main()
