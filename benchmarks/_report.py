"""Turn child results into the summary (medians over repeats), the ratio matrices, the printed
tables and the JSON document."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _config import Mode, WorkloadSpec
from _machine import describe
from _stats import median, ratio

NOT_OK = ("skipped", "failed", "n/a")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool

    @property
    def title(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


RPC_METRICS = (
    Metric("rate", "msg/s", True),
    Metric("p50_ms", "p50 ms", False),
    Metric("p99_ms", "p99 ms", False),
)
PUBLISH_METRICS = (Metric("rate", "deliveries/s", True),)  # summed over all subscribers


def metrics_for(spec: WorkloadSpec) -> tuple[Metric, ...]:
    return RPC_METRICS if spec.kind == "rpc" else PUBLISH_METRICS


@dataclass
class Cell:
    """One peer on one workload in one mode, aggregated over repeats."""

    status: str = "ok"  # ok | skipped | failed | n/a
    reason: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, key: str) -> float | None:
        return self.values.get(key) if self.status == "ok" else None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "values": self.values, "notes": self.notes}


def _notes(outcomes: Sequence[dict[str, Any]]) -> list[str]:
    def total(key: str) -> int:
        return sum(int(o.get(key) or 0) for o in outcomes)

    notes: list[str] = []
    kind = outcomes[0].get("kind")
    if kind == "publish":
        expected, delivered = total("expected"), total("delivered")
        if delivered != expected:
            notes.append(f"delivered {delivered}/{expected} ({total('lost')} lost, {total('extra')} extra)")
        if total("publish_lost") or total("publish_errors"):
            notes.append(f"publish: {total('publish_lost')} timed out, {total('publish_errors')} errors")
    else:
        if total("lost"):
            notes.append(f"{total('lost')} timeout/lost")
        if total("errors"):
            notes.append(f"{total('errors')} errors")
    samples = {o["error_sample"] for o in outcomes if o.get("error_sample")}
    notes.extend(f"e.g. {s}" for s in sorted(samples)[:2])
    if any(o.get("capped") for o in outcomes):
        notes.append("time cap hit before the full count")
    return notes


def _cell(runs: Sequence[dict[str, Any]], spec: WorkloadSpec) -> Cell:
    ok_runs = [r for r in runs if r.get("status") == "ok"]
    if not ok_runs:
        first = runs[0] if runs else {"status": "skipped", "reason": "not run"}
        return Cell(status=first["status"], reason=first.get("reason"))
    outcomes = [r["workloads"].get(spec.name, {"status": "n/a", "reason": "not run"}) for r in ok_runs]
    good = [o for o in outcomes if o.get("status") == "ok"]
    if not good:
        return Cell(status=outcomes[0]["status"], reason=outcomes[0].get("reason"))
    values: dict[str, float | None] = {}
    for metric in metrics_for(spec):
        samples = [float(o[metric.key]) for o in good if o.get(metric.key) is not None]
        values[metric.key] = median(samples)
    failed = [o.get("reason") for o in outcomes if o.get("status") != "ok"]
    notes = _notes(good)
    if failed:
        notes.append(f"{len(failed)} of {len(outcomes)} repeats failed, e.g. {failed[0]}")
    return Cell(values=values, notes=notes)


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    peers: list[str]
    modes: list[Mode]
    workloads: tuple[WorkloadSpec, ...]
    runs: list[dict[str, Any]]
    cells: dict[str, dict[str, dict[str, Cell]]] = field(default_factory=dict)  # mode → workload → peer

    def __post_init__(self) -> None:
        for mode in self.modes:
            per_workload = self.cells.setdefault(mode, {})
            for spec in self.workloads:
                per_workload[spec.name] = {
                    peer: _cell([r for r in self.runs if r["peer"] == peer and r["mode"] == mode], spec)
                    for peer in self.peers
                }

    def ratios(self, mode: Mode, spec: WorkloadSpec, metric: Metric) -> dict[str, dict[str, float | None]]:
        """row peer ÷ column peer, for every pair measured in this run."""
        cells = self.cells[mode][spec.name]
        return {
            row: {col: ratio(cells[row].value(metric.key), cells[col].value(metric.key)) for col in self.peers}
            for row in self.peers
        }

    def to_json(self) -> dict[str, Any]:
        def finite(x: float | None) -> float | str | None:
            return "inf" if x is not None and math.isinf(x) else x

        summary: dict[str, Any] = {}
        ratios: dict[str, Any] = {}
        for mode in self.modes:
            summary[mode] = {w: {p: c.to_json() for p, c in cells.items()} for w, cells in self.cells[mode].items()}
            ratios[mode] = {
                spec.name: {
                    metric.key: {
                        row: {col: finite(v) for col, v in cols.items()}
                        for row, cols in self.ratios(mode, spec, metric).items()
                    }
                    for metric in metrics_for(spec)
                }
                for spec in self.workloads
            }
        return {
            "schema": 1,
            "machine": self.machine,
            "config": self.config,
            "summary": summary,
            "ratios": ratios,
            "ratio_definition": "ratios[mode][workload][metric][row][col] = value(row) / value(col)",
            "runs": self.runs,
        }


# --- text rendering -----------------------------------------------------------------------


def fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}x" if value < 100 else f"{value:,.0f}x"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> list[str]:
    rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return (indent + "  ".join([first, *rest])).rstrip()

    return [line(rows[0]), indent + "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(line, rows[1:])]


def _status_text(cell: Cell) -> str:
    return cell.status if cell.status in NOT_OK else ""


def render(report: Report) -> str:
    out: list[str] = []
    cfg = report.config
    out.append(
        f"Throughput benchmark · {'quick' if cfg['quick'] else 'full'} · {cfg['repeat']} run(s) per peer (medians)"
    )
    out.append(f"machine: {describe(report.machine)}")
    footnotes: list[str] = []
    for mode in report.modes:
        cells = report.cells[mode]
        out += ["", f"=== mode {mode}: values (↑ higher is better, ↓ lower is better) ==="]
        rows = []
        for spec in report.workloads:
            for metric in metrics_for(spec):
                row = [spec.name, metric.title]
                for peer in report.peers:
                    cell = cells[spec.name][peer]
                    row.append(_status_text(cell) or fmt_value(cell.value(metric.key)))
                rows.append(row)
        out += _table(["workload", "metric", *report.peers], rows)

        ratio_lines: list[str] = []
        for spec in report.workloads:
            for metric in metrics_for(spec):
                measured = [p for p in report.peers if cells[spec.name][p].value(metric.key) is not None]
                if len(measured) < 2:
                    continue
                matrix = report.ratios(mode, spec, metric)
                ratio_lines.append(f"{spec.name} · {metric.title}")
                ratio_rows = [
                    [row, *(("" if row == col else fmt_ratio(matrix[row][col])) for col in measured)]
                    for row in measured
                ]
                ratio_lines += _table(["", *(f"÷{p}" for p in measured)], ratio_rows, indent="  ")
        if ratio_lines:
            title = f"=== mode {mode}: ratios, row peer ÷ column peer, same run (peers without a figure left out) ==="
            out += ["", title]
            out += ratio_lines

        problems: dict[tuple[str, str, str], list[str]] = {}
        for spec in report.workloads:
            for peer in report.peers:
                cell = cells[spec.name][peer]
                if cell.status in NOT_OK:
                    problems.setdefault((peer, cell.status, cell.reason or ""), []).append(spec.name)
                footnotes += [f"[{mode}] {peer} · {spec.name}: {note}" for note in cell.notes]
        for (peer, status, reason), names in problems.items():
            which = "all workloads" if len(names) == len(report.workloads) else ", ".join(names)
            footnotes.append(f"[{mode}] {peer} · {which}: {status}" + (f": {reason}" if reason else ""))
    if footnotes:
        out += ["", "=== notes ==="]
        out += footnotes
    return "\n".join(out)
