"""``autogen-http-host`` / ``python -m io_backends``: run a host until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import ssl

import anyio

from ._server import HttpAgentServer, HttpAgentService


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="autogen-http-host", description="Run an AutoGen HTTP/WebSocket agent host.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to bind (default 9000; 0 picks one)")
    parser.add_argument("--auth-token", default=None, help="require 'Authorization: Bearer TOKEN' from clients")
    parser.add_argument("--certfile", default=None, help="TLS certificate (PEM); serves https/wss when given")
    parser.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    parser.add_argument("--max-message-size", type=int, default=4 * 1024 * 1024, help="bytes (default 4 MiB)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    ssl_context = None
    if args.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.certfile, args.keyfile)
    service = HttpAgentService(max_message_size=args.max_message_size, auth_token=args.auth_token)
    server = HttpAgentServer(args.host, args.port, service=service, ssl_context=ssl_context)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve)
            print(f"autogen-http-host listening on {args.host}:{port}", flush=True)
            await server.stop_when_signal()

    anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    main()
