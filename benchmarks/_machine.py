"""Where and when the numbers were taken."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "loadavg_at_start": load,
    }


def describe(info: dict[str, Any]) -> str:
    load = info.get("loadavg_at_start")
    load_text = "/".join(f"{x:.2f}" for x in load) if load else "n/a"
    return (
        f"{info['date_utc']} · {info['platform']} · {info['cpu_count']} CPUs "
        f"({info['cpus_usable']} usable) · {info['python']} · load {load_text}"
    )
