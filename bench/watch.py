"""``rag-ingest watch`` timings: how soon a change is searchable, and a burst of files.

    PYTHONPATH=. .venv/bin/python bench/watch.py [--burst 1000] [--profile dev]

A real watcher process (``--json``) over a fresh folder and store in a temp dir. Prints:

- **one change**: from a file's write (new, edited in place, saved by rename, deleted) to
  the watcher's line for it, five times each: the poll interval plus the quiet period plus
  the ingest of one file;
- **a burst**: ``--burst`` small files written at once, from the last write to the last
  file's line, with the number of runs (``--batch``) and files per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class Watcher:
    def __init__(self, folder: Path, store: Path, args: argparse.Namespace) -> None:
        env = {
            **os.environ,
            "RAG_PROFILE": args.profile,
            "RAG_STORE__PATH": str(store),
            "RAG_PATHS__DATA_DIR": str(store.parent),
        }
        command = [sys.executable, "-m", "ingest.cli", "watch", str(folder), "--json"]
        command += ["--interval", str(args.interval), "--debounce", str(args.debounce)]
        command += ["--batch", str(args.batch)]
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append((time.monotonic(), json.loads(line)))

    def when(self, status: str, name: str, after: float, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, event in list(self.events):
                path = Path(str(event.get("path", ""))).name
                if at >= after and event.get("status") == status and path == name:
                    return at
            time.sleep(0.01)
        raise SystemExit(f"no {status} line for {name} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--profile", default="dev")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--debounce", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        folder, store = Path(tmp) / "share", Path(tmp) / "data" / "chroma"
        folder.mkdir()
        (folder / "seed.txt").write_text("The VPN client is NetGuard.\n")
        watcher = Watcher(folder, store, args)
        watcher.when("added", "seed.txt", 0.0)
        rows: dict[str, list[float]] = {}
        for i in range(5):
            path = folder / f"one-{i}.txt"
            steps: list[tuple[str, str, Any]] = [
                ("new file", "added", lambda p=path: p.write_text("Room 4 has a projector.\n")),
                ("edited", "updated", lambda p=path: p.write_text("Room 4 has two screens.\n")),
                ("saved by rename", "updated", lambda p=path: _save_by_rename(p)),
                ("deleted", "deleted", lambda p=path: p.unlink()),
            ]
            for label, status, act in steps:
                started = time.monotonic()
                act()
                rows.setdefault(label, []).append(
                    watcher.when(status, path.name, started) - started
                )
        print(f"one change to its line (interval {args.interval} s, debounce {args.debounce} s):")
        for label, seconds in rows.items():
            median, worst = statistics.median(seconds), max(seconds)
            print(f"  {label:<16} median {median:5.2f} s  max {worst:5.2f} s")
        names = [f"burst-{i:05d}.txt" for i in range(args.burst)]
        for i, name in enumerate(names):
            (folder / name).write_text(f"Note {i}: desk {i % 97} is free on Fridays.\n")
        written = time.monotonic()
        last = max(watcher.when("added", n, 0.0, timeout=3600) for n in names)
        runs = sum(1 for at, e in watcher.events if at >= written and e.get("event") == "summary")
        took = last - written
        print(
            f"burst: {args.burst} files written; the last one indexed {took:.1f} s after the "
            f"last write, in {runs} runs ({args.burst / took:.0f} files/s)"
        )
        watcher.proc.terminate()
        print(f"SIGTERM: exit {watcher.proc.wait(timeout=60)}")


def _save_by_rename(path: Path) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text("Room 4 has two screens and a camera.\n")
    os.replace(temp, path)


if __name__ == "__main__":
    main()
