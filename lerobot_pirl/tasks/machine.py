"""What every recorded figure carries: the machine it was measured on, and a free localhost port."""

from __future__ import annotations

import datetime
import os
import platform
import socket
from pathlib import Path
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """CPU model, core count, GPU (None when there is none), versions and the date."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    from importlib.metadata import version

    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "lerobot": version("lerobot"),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
