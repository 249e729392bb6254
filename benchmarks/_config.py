"""Workload definitions: what each benchmark workload does and how far it may run.

Every workload is bounded twice: by a message count and by a wall-clock cap on the
measured loop. ``--quick`` swaps in tiny counts and short caps (CI smoke test).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

WorkloadKind = Literal["rpc", "publish"]
Mode = Literal["oneproc", "multiproc"]
MODES: tuple[Mode, ...] = ("oneproc", "multiproc")

# Seconds a child may spend on imports, host start-up and teardown per workload,
# on top of the workload's own caps (the noisy 2-core machine can be slow).
SETUP_ALLOWANCE_S = 15.0
CHILD_START_ALLOWANCE_S = 20.0


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload. RPC workloads use ``concurrency`` callers; publish ones use subscribers."""

    name: str
    kind: WorkloadKind
    count: int  # RPC calls, or published events, in the measured loop
    cap_s: float  # wall-clock cap on the measured loop
    payload_bytes: int = 100
    concurrency: int = 1  # RPC only: concurrent callers on the caller worker
    subscribers: int = 0  # publish only: counting subscriber agents
    subscriber_workers: int = 0  # publish only: workers the subscribers are spread over
    warmup: int = 0  # untimed calls/events before measuring
    call_timeout_s: float = 10.0  # bound on each single send/publish
    settle_s: float = 3.0  # publish: stop waiting after this long without a new delivery
    max_failures: int = 50  # stop the loop early after this many timeouts + errors

    def budget_s(self) -> float:
        """Worst-case wall time of this workload, including set-up and teardown."""
        warmup_s = self.call_timeout_s if self.warmup else 0.0
        return self.cap_s + warmup_s + self.call_timeout_s + 2 * self.settle_s + SETUP_ALLOWANCE_S

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkloadSpec:
        return cls(**data)


def _rpc(name: str, count: int, cap_s: float, payload_bytes: int, warmup: int, **extra: Any) -> WorkloadSpec:
    return WorkloadSpec(
        name=name, kind="rpc", count=count, cap_s=cap_s, payload_bytes=payload_bytes, warmup=warmup, **extra
    )


def _pub(name: str, count: int, cap_s: float, subscribers: int, workers: int, **extra: Any) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        kind="publish",
        count=count,
        cap_s=cap_s,
        subscribers=subscribers,
        subscriber_workers=workers,
        warmup=1,
        **extra,
    )


FULL_WORKLOADS: tuple[WorkloadSpec, ...] = (
    _rpc("rpc_seq_100B", 5000, 20.0, 100, warmup=50),
    _rpc("rpc_seq_10KB", 1500, 20.0, 10_000, warmup=20),
    _rpc("rpc_seq_1MB", 100, 30.0, 1_000_000, warmup=3, call_timeout_s=30.0),
    _rpc("rpc_conc32_100B", 12000, 20.0, 100, warmup=64, concurrency=32),
    _pub("pub_1sub_100B", 10000, 20.0, subscribers=1, workers=1, settle_s=5.0),
    _pub("pub_8sub_100B", 5000, 20.0, subscribers=8, workers=2, settle_s=5.0),
)

_QUICK = {"call_timeout_s": 5.0, "max_failures": 10}
QUICK_WORKLOADS: tuple[WorkloadSpec, ...] = (
    _rpc("rpc_seq_100B", 100, 3.0, 100, warmup=5, **_QUICK),
    _rpc("rpc_seq_10KB", 40, 3.0, 10_000, warmup=2, **_QUICK),
    _rpc("rpc_seq_1MB", 4, 5.0, 1_000_000, warmup=1, **_QUICK),
    _rpc("rpc_conc32_100B", 320, 3.0, 100, warmup=32, concurrency=32, **_QUICK),
    _pub("pub_1sub_100B", 200, 3.0, subscribers=1, workers=1, settle_s=1.5, **_QUICK),
    _pub("pub_8sub_100B", 50, 3.0, subscribers=8, workers=2, settle_s=1.5, **_QUICK),
)


def workload_set(quick: bool) -> tuple[WorkloadSpec, ...]:
    return QUICK_WORKLOADS if quick else FULL_WORKLOADS


def child_budget_s(workloads: tuple[WorkloadSpec, ...] | list[WorkloadSpec]) -> float:
    """Timeout for one peer+mode child process."""
    return CHILD_START_ALLOWANCE_S + sum(w.budget_s() for w in workloads)
