"""A participant worker process: ``python -m tests.agentchat._worker ADDRESS TEAM:KIND:NAME[,NAME...] ...``.

Serves each listed participant of each team (a fresh agent for every team object that lists it,
made by ``_scenarios.make_special(KIND, NAME)``), prints ``ready``, and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

from io_backends import HttpWorkerAgentRuntime
from io_backends.agentchat import serve_participant

from ._scenarios import make_special


async def main(address: str, specs: list[str]) -> None:
    runtime = HttpWorkerAgentRuntime(address, reconnect=False)
    for spec in specs:
        team, kind, names = spec.split(":")
        for name in names.split(","):
            make = functools.partial(make_special, kind, name)
            await serve_participant(runtime, make, team=team, name=name)
    await runtime.start()
    print("ready", flush=True)
    await runtime.stop_when_signal()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
