"""The measured loops. They only see an RpcClient or a Publisher + DeliveryCounter, so every
peer runs exactly the same code; every wait is bounded and failures are counted, never hung on."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from _config import WorkloadSpec
from _endpoints import Deliveries, DeliveryCounter, Publisher, RpcClient
from _stats import percentile, rate

T = TypeVar("T")

ProgressFn = Callable[[int, int], None]  # (done, total)
PROGRESS_PERIOD_S = 0.5
POLL_PERIOD_S = 0.02


def make_body(size: int, tag: str) -> str:
    """An ASCII body of exactly ``size`` bytes starting with ``tag`` (so replies can be matched)."""
    head = f"{tag}|"
    return head + "x" * max(0, size - len(head))


@dataclass
class _Failures:
    lost: int = 0  # timed out: no reply within call_timeout_s
    errors: int = 0  # exception, or a reply that is not our own body
    sample: str | None = None

    @property
    def total(self) -> int:
        return self.lost + self.errors

    def error(self, what: str) -> None:
        self.errors += 1
        if self.sample is None:
            self.sample = what[:300]


async def bounded(awaitable: Awaitable[T], timeout_s: float) -> T:
    """``await awaitable``, cancelled after ``timeout_s`` (asyncio.TimeoutError).

    On Python 3.11+ this costs a timer, not a task per call (as ``asyncio.wait_for`` does there),
    so the bound every call needs does not weigh on the figures it surrounds.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout_s)


@dataclass
class _RpcRun:
    latencies_s: list[float] = field(default_factory=list)
    failures: _Failures = field(default_factory=_Failures)
    issued: int = 0


async def _one_call(client: RpcClient, body: str, timeout_s: float, run: _RpcRun) -> None:
    started = time.perf_counter()
    try:
        reply = await bounded(client.call(body), timeout_s)
    except asyncio.TimeoutError:
        run.failures.lost += 1
        return
    except Exception as exc:  # the system under test failed this call: count it, keep going
        run.failures.error(f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - started
    if reply != body:
        run.failures.error(f"reply mismatch: sent {body[:40]!r}… got {str(reply)[:40]!r}…")
        return
    run.latencies_s.append(elapsed)


async def _ticker(progress: ProgressFn, done: Callable[[], int], total: int) -> None:
    while True:
        progress(done(), total)
        await asyncio.sleep(PROGRESS_PERIOD_S)


async def run_rpc(client: RpcClient, spec: WorkloadSpec, progress: ProgressFn) -> dict[str, Any]:
    """``spec.concurrency`` callers share a budget of ``spec.count`` calls and a ``cap_s`` deadline."""
    warm = _RpcRun()
    for i in range(spec.warmup):
        await _one_call(client, make_body(spec.payload_bytes, f"warm:{i}"), spec.call_timeout_s, warm)
    if spec.warmup and not warm.latencies_s:
        raise RuntimeError(f"every warm-up call failed ({warm.failures.lost} lost; {warm.failures.sample})")

    run = _RpcRun()
    deadline = time.perf_counter() + spec.cap_s

    async def caller(index: int) -> None:
        while run.issued < spec.count and time.perf_counter() < deadline and run.failures.total < spec.max_failures:
            seq = run.issued
            run.issued += 1
            await _one_call(client, make_body(spec.payload_bytes, f"{index}:{seq}"), spec.call_timeout_s, run)

    ticker = asyncio.ensure_future(_ticker(progress, lambda: run.issued, spec.count))
    started = time.perf_counter()
    try:
        await asyncio.gather(*(caller(i) for i in range(spec.concurrency)))
    finally:
        elapsed = time.perf_counter() - started
        ticker.cancel()
    progress(run.issued, spec.count)

    ok = len(run.latencies_s)
    p50, p99 = percentile(run.latencies_s, 50), percentile(run.latencies_s, 99)
    return {
        "kind": "rpc",
        "payload_bytes": spec.payload_bytes,
        "concurrency": spec.concurrency,
        "requested": spec.count,
        "issued": run.issued,
        "completed": ok,
        "lost": run.failures.lost,
        "errors": run.failures.errors,
        "error_sample": run.failures.sample,
        "capped": run.issued < spec.count,
        "elapsed_s": elapsed,
        "rate": rate(ok, elapsed),
        "p50_ms": None if p50 is None else p50 * 1e3,
        "p99_ms": None if p99 is None else p99 * 1e3,
    }


async def _settle(deliveries: DeliveryCounter, target: int, settle_s: float, hard_deadline: float) -> Deliveries:
    """Poll until ``target`` deliveries, or no new delivery for ``settle_s``, or ``hard_deadline``."""
    snap = await deliveries.snapshot()
    last_progress = time.monotonic()
    while snap.count < target:
        now = time.monotonic()
        if now - last_progress > settle_s or now > hard_deadline:
            break
        await asyncio.sleep(POLL_PERIOD_S)
        newer = await deliveries.snapshot()
        if newer.count != snap.count:
            last_progress = time.monotonic()
        snap = newer
    return snap


async def run_publish(
    publisher: Publisher, deliveries: DeliveryCounter, spec: WorkloadSpec, progress: ProgressFn
) -> dict[str, Any]:
    """Publish up to ``spec.count`` events, then count what the subscribers actually received."""
    fanout = spec.subscribers
    failures = _Failures()

    async def publish(body: str) -> bool:
        try:
            await bounded(publisher.publish(body), spec.call_timeout_s)
        except asyncio.TimeoutError:
            failures.lost += 1
            return False
        except Exception as exc:
            failures.error(f"{type(exc).__name__}: {exc}")
            return False
        return True

    # Warm-up: instantiate the subscriber agents; tolerate systems that never deliver.
    baseline = await deliveries.snapshot()
    warm_sent = 0
    for i in range(spec.warmup):
        warm_sent += await publish(make_body(spec.payload_bytes, f"warm:{i}"))
    await _settle(deliveries, baseline.count + warm_sent * fanout, spec.settle_s, time.monotonic() + spec.settle_s * 2)
    failures = _Failures()
    baseline = await deliveries.snapshot()

    sent = 0
    attempted = 0
    started = time.monotonic()
    deadline = started + spec.cap_s
    ticker = asyncio.ensure_future(_ticker(progress, lambda: attempted, spec.count))
    try:
        while attempted < spec.count and time.monotonic() < deadline and failures.total < spec.max_failures:
            attempted += 1
            sent += await publish(make_body(spec.payload_bytes, f"e:{attempted}"))
        published = time.monotonic()
        expected = sent * fanout
        final = await _settle(
            deliveries, baseline.count + expected, spec.settle_s, deadline + spec.settle_s + spec.call_timeout_s
        )
    finally:
        ticker.cancel()
    progress(attempted, spec.count)

    delivered = final.count - baseline.count
    window = (final.last_monotonic - started) if delivered > 0 else (published - started)
    return {
        "kind": "publish",
        "payload_bytes": spec.payload_bytes,
        "subscribers": fanout,
        "subscriber_workers": spec.subscriber_workers,
        "requested": spec.count,
        "published": sent,
        "publish_lost": failures.lost,
        "publish_errors": failures.errors,
        "error_sample": failures.sample,
        "capped": attempted < spec.count,
        "expected": expected,
        "delivered": delivered,
        "lost": max(0, expected - delivered),
        "extra": max(0, delivered - expected),
        "publish_rate": rate(sent, published - started),
        "elapsed_s": window,
        "rate": rate(delivered, window),
    }
