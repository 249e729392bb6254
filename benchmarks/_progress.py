"""Progress display on stderr: a self-rewriting status line on a terminal, sparse lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

TTY_REFRESH_S = 0.1
LOG_REFRESH_S = 5.0


class Progress:
    def __init__(self, total_runs: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._enabled = enabled
        self._total_runs = total_runs
        self._run_index = 0
        self._label = ""
        self._run_started = time.monotonic()
        self._last_draw = 0.0
        self._last_workload = ""
        self._status_width = 0

    def _write_line(self, text: str) -> None:
        if not self._enabled:
            return
        if self._tty and self._status_width:
            self._stream.write("\r" + " " * self._status_width + "\r")
            self._status_width = 0
        self._stream.write(text + "\n")
        self._stream.flush()

    def note(self, text: str) -> None:
        self._write_line(text)

    def run_started(self, label: str) -> None:
        self._run_index += 1
        self._label = label
        self._run_started = time.monotonic()
        self._last_workload = ""
        self._write_line(f"[{self._run_index}/{self._total_runs}] {label} …")

    def update(self, workload: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        changed = workload != self._last_workload
        period = TTY_REFRESH_S if self._tty else LOG_REFRESH_S
        if not changed and now - self._last_draw < period:
            return
        self._last_draw = now
        self._last_workload = workload
        elapsed = now - self._run_started
        text = f"  {self._label}: {workload} {done}/{total} ({elapsed:.0f}s)"
        if self._tty:
            padding = " " * max(0, self._status_width - len(text))
            self._stream.write("\r" + text + padding)
            self._stream.flush()
            self._status_width = len(text)
        else:
            self._write_line(text)

    def run_finished(self, status: str) -> None:
        elapsed = time.monotonic() - self._run_started
        self._write_line(f"  {self._label}: {status} in {elapsed:.1f}s")
