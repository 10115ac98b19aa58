"""The watch loop's decisions (``ingest.watch.Watcher``), poll by poll, on a real folder."""

from __future__ import annotations

from pathlib import Path

from ingest.watch import Watcher


def kinds(watcher: Watcher, now: float) -> list[tuple[str, int, bool]]:
    return [(e.kind, len(e.targets), e.prune) for e in watcher.poll(now)]


def test_an_empty_folder_that_has_documents_is_never_synced_empty(tmp_path: Path) -> None:
    """An unmounted share is an empty mount point: syncing it would delete everything."""
    watcher = Watcher([tmp_path], debounce_s=0.5, batch=10, indexed=lambda _: 12)
    assert kinds(watcher, 0.0) == [("unavailable", 0, False)]
    assert kinds(watcher, 1.0) == []  # said once
    (tmp_path / "a.txt").write_text("back")
    assert kinds(watcher, 2.0) == [("back", 0, False), ("sync", 1, True), ("synced", 0, False)]


def test_an_empty_folder_without_documents_is_simply_empty(tmp_path: Path) -> None:
    watcher = Watcher([tmp_path], debounce_s=0.5, batch=10, indexed=lambda _: 0)
    assert kinds(watcher, 0.0) == [("sync", 0, True), ("synced", 0, False)]


def test_changes_wait_until_the_folder_is_quiet_then_go_in_batches(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "old.txt").write_text("x")
    watcher = Watcher([tmp_path], debounce_s=0.5, batch=2, indexed=lambda _: 0)
    assert kinds(watcher, 0.0) == [("sync", 2, True), ("synced", 0, False)]
    for i in range(5):
        (tmp_path / f"new{i}.txt").write_text("x")
    assert kinds(watcher, 1.0) == []  # changed: starts settling
    (tmp_path / "old.txt").unlink()
    assert kinds(watcher, 1.4) == []  # changed again: settling starts over
    assert kinds(watcher, 1.8) == []  # quiet for 0.4 s only
    assert kinds(watcher, 2.0) == [("batch", 2, False), ("batch", 2, False), ("batch", 1, True)]
    assert kinds(watcher, 3.0) == []  # in step


def test_a_failed_batch_is_tried_again_at_the_next_poll(tmp_path: Path) -> None:
    watcher = Watcher([tmp_path], debounce_s=0.0, batch=10, indexed=lambda _: 0)
    list(watcher.poll(0.0))
    (tmp_path / "a.txt").write_text("x")
    assert kinds(watcher, 1.0) == []
    polled = watcher.poll(2.0)
    assert next(polled).kind == "batch"
    polled.close()  # the caller's run failed: it drops the rest of the poll
    assert [e.kind for e in watcher.poll(3.0)] == ["batch"]
