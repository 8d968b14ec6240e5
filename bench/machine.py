"""The machine a benchmark ran on, as one line for its results (CPU model, cores,
kernel, Python): every bench script records it beside its figures."""

from __future__ import annotations

import os
import platform


def machine_line() -> str:
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}, Python {platform.python_version()}"
