"""Throughput benchmark: the same workloads, agents and messages on several agent runtimes.

Each peer runs in a fresh child process per mode; the table shows every figure as a ratio to
every other peer measured in the same run.

    python benchmarks/throughput.py                       # all peers, --mode oneproc
    python benchmarks/throughput.py --quick --only grpc,inprocess,rawsocket
    python benchmarks/throughput.py --mode both --repeat 3 --json benchmarks/results/run.json

Peers: ours (io_backends), grpc (autogen_ext), v010 (autogen-http-runtime==0.1.0, own venv in
.bench-venvs/v010), inprocess (SingleThreadedAgentRuntime), rawsocket (TCP ping-pong floor).
Workloads: sequential RPC at 100 B / 10 KB / 1 MB (rate, p50, p99), 32 concurrent callers,
publish with 1 subscriber and with 8 subscribers over 2 workers (events delivered per second,
counted at the subscribers, plus lost events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from _child import child_main, role_main  # noqa: E402
from _config import MODES, Mode, WorkloadSpec, workload_set  # noqa: E402
from _machine import machine_info  # noqa: E402
from _peers import PEER_DESCRIPTIONS, PEER_NAMES  # noqa: E402
from _progress import Progress  # noqa: E402
from _report import Report, render  # noqa: E402
from _runner import PlannedRun, current_python, run_all  # noqa: E402
from _v010_env import ensure_v010_env  # noqa: E402


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown or text!r}; choose from {', '.join(allowed)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    workload_names = tuple(w.name for w in workload_set(quick=False))
    parser = argparse.ArgumentParser(
        description="Compare agent runtimes on identical workloads (each peer in a fresh subprocess).",
        epilog="peers:\n" + "\n".join(f"  {n:10} {d}" for n, d in PEER_DESCRIPTIONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts and short caps (CI smoke test)")
    parser.add_argument(
        "--only",
        type=lambda t: _names(t, PEER_NAMES, "peer"),
        default=None,
        metavar="NAME[,NAME]",
        help=f"peers to run (default: all of {','.join(PEER_NAMES)})",
    )
    parser.add_argument(
        "--workloads",
        type=lambda t: _names(t, workload_names, "workload"),
        default=list(workload_names),
        metavar="NAME[,NAME]",
        help=f"workloads to run (default: all of {','.join(workload_names)})",
    )
    parser.add_argument(
        "--mode",
        choices=[*MODES, "both"],
        default="oneproc",
        help="oneproc: host and workers share one process (default); multiproc: host, caller "
        "worker and callee worker(s) each in their own process",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per peer, interleaved; figures are medians")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the full results as JSON")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never create the v010 virtualenv (report v010 as skipped if it is missing). "
        "--quick implies this unless v010 is named in --only",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead: routing cost vs unrelated subscriptions (ours and autogen's SubscriptionManager), "
        "1,000 connected workers (host memory per connection, fan-out) and 10,000 subscriptions",
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_role", help=argparse.SUPPRESS)
    return parser


def _selected_peers(args: argparse.Namespace) -> list[str]:
    return list(args.only) if args.only else list(PEER_NAMES)


def _modes(args: argparse.Namespace) -> list[Mode]:
    return list(MODES) if args.mode == "both" else [args.mode]


def _plan(args: argparse.Namespace, log: Progress) -> list[PlannedRun]:
    peers = _selected_peers(args)
    pythons: dict[str, tuple[Path | None, str | None]] = {p: (current_python(), None) for p in peers}
    if "v010" in peers:
        explicitly_asked = args.only is not None
        install = not args.no_install and (not args.quick or explicitly_asked)
        env = ensure_v010_env(install, log.note)
        pythons["v010"] = (env.python, env.skip_reason)
    return [
        PlannedRun(peer, mode, repeat, *pythons[peer])
        for repeat in range(args.repeat)
        for mode in _modes(args)
        for peer in peers
    ]


def run_benchmark(args: argparse.Namespace) -> int:
    selected = set(args.workloads)
    workloads: tuple[WorkloadSpec, ...] = tuple(w for w in workload_set(args.quick) if w.name in selected)
    peers, modes = _selected_peers(args), _modes(args)
    machine = machine_info()
    runs_total = args.repeat * len(modes) * len(peers)
    progress = Progress(runs_total, enabled=not args.no_progress)
    plan = _plan(args, progress)
    results = asyncio.run(run_all(plan, workloads, progress))
    config = {
        "quick": args.quick,
        "modes": modes,
        "peers": peers,
        "repeat": args.repeat,
        "workloads": [w.to_json() for w in workloads],
    }
    report = Report(machine, config, peers, modes, workloads, results)
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        progress.note(f"JSON written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        build_parser().error("--repeat must be at least 1")
    if args._child:
        return child_main(args._child)
    if args._role:
        return role_main(args._role)
    if args.scale:
        from _scale import run_scale

        print(machine_info())
        print(run_scale(args.quick))
        return 0
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
