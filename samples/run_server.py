"""Run the host on port 9000 (or --port) until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging

from autogen_http_runtime.runtimes.http import HttpAgentServer


async def main(port: int) -> None:
    server = HttpAgentServer(address="127.0.0.1", port=port)
    server.start()
    print(f"host listening on 127.0.0.1:{server.port}", flush=True)
    await server.stop_when_signal()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().port))
