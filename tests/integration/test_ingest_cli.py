"""``rag-ingest`` as a user runs it: a hostile corpus, and ``kill -9`` at named points.

Each command is a real subprocess (``python -m ingest.cli``). The crash hook
``RAG_TEST_CRASH_AT=<point>[:n]`` makes the process SIGKILL itself the n-th time it reaches
a point of the write protocol; the test then checks what a re-run leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ASSETS, KB_DIR, REPO
from tests.ingest_cli import cli, events

pytestmark = pytest.mark.usefixtures("assets")


def zip_with(path: Path, member: str, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(member, b"\0" * size)


def hostile_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Write the corpus; returns file name -> a word its error line must contain."""
    from pypdf import PdfReader, PdfWriter

    from tests.msgfile import MsgAttachment, msg_bytes

    pdf = (KB_DIR / "facilities-office-guide.pdf").read_bytes()
    root.mkdir()
    (root / "good.md").write_text("# Lobby\n\nThe lobby opens at 06:45.\n")
    shutil.copy(KB_DIR / "hr-leave-policy.docx", root / "leave.docx")
    (root / "x..\\..\\evil.md").write_text("# Odd name\n\nA harmless note.\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    writer = PdfWriter(clone_from=PdfReader(KB_DIR / "facilities-office-guide.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner")
    with (root / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    (root / "not-zip.docx").write_bytes(b"PK? no, just text pretending to be Word")
    zip_with(root / "bomb.docx", "word/document.xml", 30_000_000)  # over max_unzipped_mb
    zip_with(root / "bomb.xlsx", "xl/workbook.xml", 15_000_000)  # under it, ratio ~1000:1
    (root / "latin1.txt").write_bytes("Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e.\n".encode("latin-1"))
    with (root / "huge.txt").open("wb") as handle:  # 200 MB, sparse: nothing written
        handle.truncate(200_000_000)
    (root / "binary.txt").write_bytes(bytes(range(256)) * 40)
    outside.write_text("# Secret\n\nOutside the ingest root.\n")
    (root / "escape.md").symlink_to(outside)
    (root / "new\nline.md").write_text("# Newline\n\nName with a newline.\n")
    minutes = MsgAttachment("minutes.txt", b"Minutes of the meeting.\n" * 300)  # > 4 KB
    whole = msg_bytes(subject="Minutes", body="Minutes attached.", attachments=[minutes])
    (root / "cut.msg").write_bytes(whole[:-700])  # the end of its attachment is missing
    return {
        "empty.txt": "empty",
        "truncated.pdf": "truncated",
        "locked.pdf": "password",
        "not-zip.docx": "not a zip",
        "bomb.docx": "zip bomb",
        "bomb.xlsx": "zip bomb",
        "latin1.txt": "UTF-8",
        "huge.txt": "limit",
        "binary.txt": "binary",
        "escape.md": "outside",
        "new\nline.md": "control characters",
        "cut.msg": "cut short",
    }


def test_hostile_files_each_get_one_clear_line_and_the_rest_is_ingested(tmp_path: Path) -> None:
    expected = hostile_corpus(tmp_path / "kb", tmp_path / "outside.md")
    store = tmp_path / "store"
    proc = cli(store, "add", str(tmp_path / "kb"), "--json", RAG_INGEST__MAX_UNZIPPED_MB="20")
    assert proc.returncode == 1, proc.stderr
    by_name = {Path(e["path"]).name: e for e in events(proc) if e["event"] == "file"}
    for name in ("good.md", "leave.docx", "x..\\..\\evil.md"):
        assert by_name[name]["status"] == "added", by_name[name]
    assert Path(by_name["x..\\..\\evil.md"]["path"]).parent == tmp_path / "kb"
    for name, word in expected.items():
        result = by_name[name]
        assert result["status"] == "failed", result
        error = result["error"]
        assert "\n" not in error and word.lower() in error.lower(), error
        shown = name.replace("\n", "\\n")
        assert shown in error, error
    summary = events(proc)[-1]
    assert summary["event"] == "summary" and summary["failed"] == len(expected)

    listed = events(cli(store, "list", "--json"))
    done = sorted(Path(e["path"]).name for e in listed if e["state"] == "done")
    assert done == sorted(["good.md", "leave.docx", "x..\\..\\evil.md"])
    failed = [e for e in listed if e["state"] == "failed"]
    assert len(failed) == len(expected)
    stats = json.loads(cli(store, "stats", "--json").stdout)
    assert stats["documents"] == 3 and stats["failed"] == len(expected)
    assert stats["chunks"] == stats["store_chunks"] > 3


def check_consistent(store: Path) -> dict[str, list[str]]:
    """Store and manifest agree: every chunk once, no orphans, each doc complete."""
    from rag.config import StoreSettings
    from rag.index.manifest import Manifest
    from rag.index.store import ChromaStore

    settings = StoreSettings(path=store)
    chroma = ChromaStore(settings, embedder_id=None)
    ids = chroma.all_ids()
    with Manifest(settings.manifest_path()) as manifest:
        assert manifest.open_work(chroma.name) == 0
        assert sorted(ids) == sorted(manifest.all_chunk_ids(chroma.name))
        docs = {
            d.path: manifest.chunk_ids(chroma.name, d.doc_id)
            for d in manifest.documents(chroma.name)
        }
    owners = chroma.doc_ids_of(ids)
    assert len(set(owners.values())) == len(docs)
    return docs


def store_and_manifest(store: Path) -> tuple[set[str], set[str], int]:
    from rag.config import StoreSettings
    from rag.index.manifest import Manifest
    from rag.index.store import ChromaStore

    settings = StoreSettings(path=store)
    ids = set(ChromaStore(settings, embedder_id=None).all_ids())
    with Manifest(settings.manifest_path()) as manifest:
        return ids, set(manifest.all_chunk_ids("knowledge")), manifest.open_work("knowledge")


def statuses(proc: Any) -> dict[str, str]:
    return {Path(e["path"]).name: e["status"] for e in events(proc) if e["event"] == "file"}


def test_kill_9_at_every_step_then_rerun_leaves_a_consistent_index(tmp_path: Path) -> None:
    root, store = tmp_path / "kb", tmp_path / "store"
    root.mkdir()
    for name, fact in [("a", "room 101"), ("b", "level -2"), ("c", "11:30")]:
        (root / f"{name}.md").write_text(f"# Doc {name}\n\nThe answer for {name} is {fact}.\n")
    one_doc_per_batch = {"RAG_INGEST__EMBED_BATCH_CHUNKS": "1"}
    killed = -signal.SIGKILL

    # 1. Killed after b's chunks are stored, before the manifest commit: b is an orphan.
    proc = cli(store, "add", str(root), "--json", crash="after_upsert:2", **one_doc_per_batch)
    assert proc.returncode == killed, proc.stderr
    assert statuses(proc) == {"a.md": "added"}
    in_store, in_manifest, open_work = store_and_manifest(store)
    assert in_store > in_manifest and open_work > 0

    # 2. a changes; killed after its new version is committed, before the old is deleted.
    (root / "a.md").write_text("# Doc a\n\nThe answer for a moved to room 202.\n")
    proc = cli(store, "add", str(root), "--json", crash="after_commit:1", **one_doc_per_batch)
    assert proc.returncode == killed, proc.stderr
    in_store, in_manifest, open_work = store_and_manifest(store)
    assert in_manifest < in_store and open_work > 0  # b's orphan gone, a's old version left

    # 3. Killed after b's intent is recorded, before its chunks are stored.
    proc = cli(store, "add", str(root), "--json", crash="before_upsert:1", **one_doc_per_batch)
    assert proc.returncode == killed, proc.stderr
    assert statuses(proc) == {"a.md": "unchanged"}

    # 4. A clean run: nothing already complete is embedded again.
    proc = cli(store, "add", str(root), "--json", **one_doc_per_batch)
    assert proc.returncode == 0, proc.stderr
    assert statuses(proc) == {"a.md": "unchanged", "b.md": "added", "c.md": "added"}
    docs = check_consistent(store)
    assert len(docs) == 3 and all(len(ids) == 1 for ids in docs.values())

    # 5. c's file is gone; sync is killed after the manifest forgot c, before the store did.
    (root / "c.md").unlink()
    proc = cli(store, "sync", str(root), "--json", crash="after_remove:1")
    assert proc.returncode == killed, proc.stderr

    # 6. The re-run finishes the job.
    proc = cli(store, "sync", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    assert statuses(proc) == {"a.md": "unchanged", "b.md": "unchanged"}
    docs = check_consistent(store)
    assert sorted(Path(p).name for p in docs) == ["a.md", "b.md"]
    stats = json.loads(cli(store, "stats", "--json").stdout)
    assert (stats["documents"], stats["chunks"], stats["store_chunks"]) == (2, 2, 2)


def beir_folder(root: Path) -> Path:
    """Six unrelated documents; each judged query has one clearly matching document, except
    q4, whose only relevant document is missing from the corpus (so it scores 0)."""
    docs = {
        "d1": (
            "Photosynthesis",
            "Chlorophyll absorbs sunlight and turns carbon dioxide and "
            "water into glucose and oxygen inside plant leaves.",
        ),
        "d2": (
            "Volcanic eruptions",
            "Magma rises through the crust and a volcano erupts, "
            "throwing out lava, ash and hot gas.",
        ),
        "d3": (
            "Medieval castles",
            "Stone keeps, moats and drawbridges defended castles in the Middle Ages.",
        ),
        "d4": (
            "Coral reefs",
            "Coral polyps build reefs from calcium carbonate in warm, shallow tropical seas.",
        ),
        "d5": (
            "Jet engines",
            "A turbofan compresses air, burns kerosene and pushes the hot "
            "exhaust backwards to make thrust.",
        ),
        "d6": (
            "Sourdough bread",
            "Wild yeast and lactobacilli in a sourdough starter leaven "
            "the bread and give it a sour taste.",
        ),
    }
    queries = {
        "q1": "How do plants turn sunlight into glucose?",
        "q2": "What does a volcano throw out when it erupts?",
        "q3": "What leavens sourdough bread?",
        "q4": "Who invented the printing press?",
        "q5": "An unjudged query that is not scored.",
    }
    qrels = {"q1": "d1", "q2": "d2", "q3": "d6", "q4": "d9"}
    root.mkdir()
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in docs.items())
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": q}) + "\n" for k, q in queries.items())
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items())
    )
    return root


def assert_known_answers(report: dict[str, Any]) -> None:
    assert (report["queries"], report["documents"], report["chunks"]) == (4, 6, 6)
    for mode in ("dense", "keyword", "hybrid"):
        row = report["modes"][mode]
        # q1-q3 find their document first (1.0 each); q4's document is not in the corpus (0).
        for metric in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
            assert row[metric] == pytest.approx(0.75), (mode, metric, row)
        assert 0.0 <= row["ndcg@10_ci_low"] < 0.75 < row["ndcg@10_ci_high"] == 1.0
        assert row["p50_ms"] > 0
    zero = {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert report["hybrid_minus"] == {"dense": zero, "keyword": zero}
    assert report["groups"] == {}  # every query is English: no table by group
    assert report["groups_hybrid_minus_better"] == {}


def test_eval_scores_a_hand_made_dataset_with_known_answers(tmp_path: Path) -> None:
    data = beir_folder(tmp_path / "tiny")
    work = tmp_path / "work"
    proc = cli(tmp_path / "store", "eval", "--dataset", str(data), "--workdir", str(work), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["embedder"] == "builtin:use-multilingual-v3"  # the default model
    assert_known_answers(report)

    # The second run reuses the scratch index and prints the table.
    proc = cli(tmp_path / "store", "eval", "--dataset", str(data), "--workdir", str(work))
    assert proc.returncode == 0, proc.stderr
    assert "ndcg 95% CI" in proc.stdout
    assert [line.split()[:2] for line in proc.stdout.splitlines()[2:5]] == [
        ["dense", "0.75"],
        ["keyword", "0.75"],
        ["hybrid", "0.75"],
    ]
    assert "hybrid - dense: nDCG@10 +0.0000 (paired 95% CI" in proc.stdout
    assert len(list(work.iterdir())) == 1

    # Eval embeds with the configured model (here the English one, on the test profile's
    # torch), in a scratch index of its own: its vectors differ.
    english = {
        "RAG_EMBEDDING__MODEL": "builtin:all-minilm-l6-v2",
        "RAG_EMBEDDING__LANGUAGES": "[en]",
    }
    args = ("eval", "--dataset", str(data), "--workdir", str(work), "--json")
    proc = cli(tmp_path / "store", *args, **english)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["embedder"] == "builtin:all-minilm-l6-v2"
    assert_known_answers(report)
    assert len(list(work.iterdir())) == 2

    (data / "qrels" / "test.tsv").unlink()
    proc = cli(tmp_path / "store", "eval", "--dataset", str(data), "--workdir", str(work))
    assert proc.returncode != 0
    assert "qrels/test.tsv" in proc.stderr and "Traceback" not in proc.stderr


def test_stats_fails_loudly_when_the_store_is_unreachable(tmp_path: Path) -> None:
    from tests.servers import free_port

    empty = cli(tmp_path / "chroma", "stats", "--json")
    assert empty.returncode == 0, empty.stderr  # nothing ingested yet: zeros, not an error
    assert json.loads(empty.stdout)["store_chunks"] == 0
    listed = cli(tmp_path / "chroma", "list")  # a table with its header, even when empty
    assert listed.returncode == 0 and listed.stdout.split() == [
        "doc_id",
        "chunks",
        "groups",
        "path",
    ]
    down = cli(
        tmp_path / "chroma",
        "stats",
        RAG_STORE__MODE="http",
        RAG_STORE__PORT=str(free_port()),  # nobody listens there
    )
    assert down.returncode == 5, down.stdout + down.stderr
    assert "Cannot reach the Chroma server" in down.stderr and "store_chunks" not in down.stdout


def test_relative_paths_follow_one_root_and_libraries_stay_quiet(tmp_path: Path) -> None:
    """Run from another folder, rag-ingest uses the store under the root (``RAG_HOME``; by
    default the checkout), not under the working directory, and prints no library noise."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    doc = elsewhere / "note.txt"
    doc.write_text("The bike shed key hangs in reception.\n", encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
        "PYTHONPATH": str(REPO),
        "RAG_PROFILE": "test",
        "RAG_HOME": str(home),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }
    run = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "add", "note.txt"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (home / "var" / "kb" / "chroma").is_dir()
    assert not (elsewhere / "var").exists()
    noise = [line for line in run.stderr.splitlines() if "DEBUG" in line or "INFO" in line]
    assert not noise, noise


def test_failure_lines_tell_same_named_files_apart(tmp_path: Path) -> None:
    """Issue 27: failure lines said only ``empty.txt``; two such files looked the same."""
    kb = tmp_path / "kb"
    for team in ("hr", "it"):
        (kb / team).mkdir(parents=True)
        (kb / team / "empty.txt").write_bytes(b"")
    (kb / "hr" / "ok.md").write_text("# Leave\n\nAsk your manager first.\n")
    proc = cli(tmp_path / "store", "add", str(kb))
    assert proc.returncode == 1, proc.stderr
    failures = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 2, proc.stderr
    for team, line in zip(("hr", "it"), failures, strict=True):
        assert line.startswith(f"FAILED  {kb / team / 'empty.txt'}: the file is empty"), line
