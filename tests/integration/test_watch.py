"""``rag-ingest watch`` as a real process over a real folder: files created, edited (also by
an editor's save-by-rename), renamed and deleted; the folder taken away (an unmounted share)
and brought back; ``kill -9`` in the middle of a burst, then a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.ingest_cli import cli, cli_env, events
from tests.procs import OWN_GROUP, stop_group

pytestmark = pytest.mark.usefixtures("assets")

WATCH = [sys.executable, "-m", "ingest.cli", "watch", "--batch", "50"]


class Watch:
    """``rag-ingest watch FOLDER --json`` in the background; its JSON lines as they come."""

    def __init__(self, store: Path, folder: Path) -> None:
        self.lines: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [*WATCH, str(folder), "--json", "--interval", "0.2", "--debounce", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(store),
            cwd=REPO,
            **OWN_GROUP,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def wait_for(self, what: Callable[[list[dict[str, Any]]], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if what(self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"watch did not get there (rc {self.proc.poll()}): {self.lines[-8:]}")

    def saw(self, status: str, name: str) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda lines: any(
            e.get("status") == status and Path(e.get("path", "")).name == name for e in lines
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        stop_group(self.proc, sig)
        self._reader.join(timeout=10)
        return self.proc.wait(timeout=30)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    kb = tmp_path / "share"
    kb.mkdir()
    (kb / "vpn.txt").write_text("The VPN client is called NetGuard.\n", encoding="utf-8")
    return kb


@pytest.fixture
def watching(tmp_path: Path, folder: Path) -> Iterator[Watch]:
    watch = Watch(tmp_path / "chroma", folder)
    watch.wait_for(watch.saw("added", "vpn.txt"))  # the start-up sync
    yield watch
    if watch.proc.poll() is None:
        watch.stop()


def listed(store: Path) -> dict[str, dict[str, Any]]:
    done = cli(store, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {Path(e["path"]).name: e for e in events(done)}


def test_creates_edits_renames_and_deletes_reach_the_index(
    tmp_path: Path, folder: Path, watching: Watch
) -> None:
    store = tmp_path / "chroma"
    (folder / "print.txt").write_text("The print queue is P1.\n", encoding="utf-8")
    watching.wait_for(watching.saw("added", "print.txt"))

    # An editor's save: write a hidden temporary file, then rename it over the original.
    temp = folder / ".print.txt.swp"
    temp.write_text("The print queue is P2 since May.\n", encoding="utf-8")
    os.replace(temp, folder / "print.txt")
    watching.wait_for(watching.saw("updated", "print.txt"))

    os.rename(folder / "vpn.txt", folder / "remote-access.txt")
    watching.wait_for(watching.saw("deleted", "vpn.txt"))
    watching.wait_for(watching.saw("added", "remote-access.txt"))

    (folder / "print.txt").unlink()
    watching.wait_for(watching.saw("deleted", "print.txt"))
    assert set(listed(store)) == {"remote-access.txt"}
    assert not any(e.get("event") == "error" for e in watching.lines)
    assert watching.stop() == 0  # SIGTERM: a clean stop


def test_a_folder_that_goes_away_keeps_its_documents_until_it_is_back(
    tmp_path: Path, folder: Path, watching: Watch
) -> None:
    store = tmp_path / "chroma"
    (folder / "leave.txt").write_text("Annual leave is 27 days.\n", encoding="utf-8")
    watching.wait_for(watching.saw("added", "leave.txt"))

    away = tmp_path / "away"
    os.rename(folder, away)  # unmounted: not there at all
    watching.wait_for(lambda lines: any(e.get("event") == "unavailable" for e in lines))
    folder.mkdir()  # the empty mount point shows again
    time.sleep(2)
    assert set(listed(store)) == {"vpn.txt", "leave.txt"}  # nothing deleted meanwhile
    assert not any(e.get("status") == "deleted" for e in watching.lines)

    folder.rmdir()
    (away / "leave.txt").write_text("Annual leave is 28 days.\n", encoding="utf-8")
    (away / "vpn.txt").unlink()
    os.rename(away, folder)  # mounted again, changed while away
    watching.wait_for(lambda lines: any(e.get("event") == "back" for e in lines))
    watching.wait_for(watching.saw("updated", "leave.txt"))
    watching.wait_for(watching.saw("deleted", "vpn.txt"))
    assert set(listed(store)) == {"leave.txt"}


def test_kill_9_in_a_burst_then_a_restart_leaves_every_file_once(
    tmp_path: Path, folder: Path, watching: Watch
) -> None:
    store = tmp_path / "chroma"
    burst = 300
    for i in range(burst):
        (folder / f"note-{i:04d}.txt").write_text(f"Note {i}: room {i % 17}.\n", encoding="utf-8")
    watching.wait_for(
        lambda lines: sum(e.get("status") == "added" for e in lines) >= 60, seconds=120
    )
    watching.stop(signal.SIGKILL)  # mid-burst: batches of 50, some done, one under way
    added = sum(e.get("status") == "added" for e in watching.lines)
    assert added < burst + 1, "the burst finished before the kill: the test proved nothing"

    for i in range(0, burst, 3):  # more changes while no watcher runs
        (folder / f"note-{i:04d}.txt").unlink()
    restarted = Watch(store, folder)
    try:
        restarted.wait_for(
            lambda lines: any(e.get("event") == "synced" for e in lines), seconds=180
        )
        batches = sum(e.get("event") == "summary" for e in restarted.lines)
        assert batches >= 4  # 201 files in runs of 50
    finally:
        assert restarted.stop() == 0
    names = listed(store)
    on_disk = {p.name for p in folder.iterdir()}
    assert set(names) == on_disk and len(on_disk) == burst - len(range(0, burst, 3)) + 1
    stats = json.loads(cli(store, "stats", "--json").stdout)
    assert stats["unfinished"] == 0
    assert stats["store_chunks"] == stats["chunks"] == len(on_disk)  # no orphans, no doubles
