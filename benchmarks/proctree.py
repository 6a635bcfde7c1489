"""The process tree under a pid, read from /proc (Linux): what benchmarks sum a server's or a
command's CPU and memory over, worker processes included."""

from __future__ import annotations

import os
from pathlib import Path


def descendants(root: int) -> list[int]:
    """`root` and every process below it (those alive now)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
