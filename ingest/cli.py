"""``rag-ingest``: add, sync, delete, list and inspect the documents of the knowledge base,
and back it up and restore it.

Every command takes ``--json`` for scripts (one JSON object per line) and ``--profile``.
Exit codes: 0 all good, 1 some files failed, others from :mod:`rag.errors`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from ingest.curate_cli import app as curate_app
from rag.config import Settings, load_settings
from rag.errors import RagError, how_to_run

# The exit codes (rag.errors maps each error type to one); README's table is the same.
EXIT_CODES = {
    0: "done (unchanged files skipped)",
    1: "some files failed, the others are in (each failure has its own line)",
    2: "bad settings, arguments or key: the message names it",
    3: "offline assets missing: run make setup",
    4: "a file could not be ingested",
    5: "the store: unreachable, read-only, busy with another run, or built with another model",
    7: "disk full: free space, then run the same command again",
}

# Plain click help: typer's rich panels label every flag `<bool>` and every value by its
# Python type; here flags stand alone and values carry a metavar (NAME, N, DIR...).
app = typer.Typer(
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    help="Ingest documents into the private knowledge base.",
    epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + ".",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines for scripts.")]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile", metavar="NAME", help="Config profile (default: $RAG_PROFILE or dev)."
    ),
]


def _settings(profile: str | None) -> Settings:
    from rag.deploy.offline import apply_offline_env

    settings = load_settings(profile)
    apply_offline_env(settings, in_process_engine=False)
    return settings


def _fail(exc: RagError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": "error", "error": exc.code, "message": exc.message}))
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exc.exit_code)


def _ingestor(
    settings: Settings, *, check_embedder: bool = True, keep_workers: bool = False
) -> Any:
    from ingest.pipeline import build_ingestor
    from rag.services import build_knowledge_base, open_shared_state

    kb = build_knowledge_base(
        settings, check_embedder=check_embedder, shared=open_shared_state(settings)
    )
    return build_ingestor(settings, kb, keep_workers=keep_workers)


def _report(results: Iterable[Any], total: int, as_json: bool) -> int:
    """Print results as they come (a rich bar on a terminal); returns the failure count."""
    from ingest.progress import Rates

    rates = Rates(total)
    failed = 0
    with _bar(total, as_json) as advance:
        for result in results:
            rates.add(result)
            failed += result.status == "failed"
            if as_json:
                line = {"event": "file", **result.to_json(), **rates.snapshot()}
                print(json.dumps(line, ensure_ascii=False), flush=True)
            else:
                advance(result, rates)
    if as_json:
        summary = {"event": "summary", **rates.counts, **rates.snapshot()}
        summary["seconds"] = round(rates.elapsed, 2)
        if rates.ocr_pages:
            summary["ocr_pages"] = rates.ocr_pages
        print(json.dumps(summary), flush=True)
    else:
        print(f"done: {rates.summary()}", flush=True)
    return failed


@contextmanager
def _bar(total: int, as_json: bool) -> Iterator[Callable[[Any, Any], None]]:
    from ingest.guard import shown
    from ingest.targets import failure_line

    def line(result: Any) -> str | None:
        if result.status == "failed":
            return f"FAILED  {failure_line(result)}"
        if result.status in {"added", "updated", "deleted"}:
            ocr = f", {result.ocr_pages} read by OCR" if result.ocr_pages else ""
            text = f"{result.status:<9} {shown(result.path)} ({result.chunks} chunks{ocr})"
            return "\n".join([text, *(f"  warning: {w}" for w in result.warnings)])
        return None

    if as_json or not sys.stderr.isatty():

        def plain(result: Any, rates: Any) -> None:
            text = line(result)
            if text:
                loud = result.status == "failed" or bool(result.warnings)
                print(text, flush=True, file=sys.stderr if loud else None)

        yield plain
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[fps]:.1f} files/s"),
        TextColumn("{task.fields[cps]:.0f} chunks/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("ingest", total=total, fps=0.0, cps=0.0)

        def fancy(result: Any, rates: Any) -> None:
            text = line(result)
            if text and (result.status == "failed" or result.warnings):
                progress.console.print(
                    text,
                    style="red" if result.status == "failed" else "yellow",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            progress.update(
                task, completed=rates.done, fps=rates.files_per_s, cps=rates.chunks_per_s
            )

        yield fancy


def _run_files(paths: list[Path], as_json: bool, profile: str | None, sync: bool) -> None:
    try:
        settings = _settings(profile)
        from ingest.pipeline import discover

        ingestor = _ingestor(settings)
        targets = list(discover(paths))
        results = ingestor.run(targets, prune=paths[0] if sync else None)
        failed = _report(results, len(targets), as_json)
    except RagError as exc:
        _fail(exc, as_json)
    if failed:
        raise typer.Exit(1)


@app.command()
def add(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Files or folders to ingest.")
    ],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Add or update files (folders recursively); unchanged files are skipped unparsed."""
    _run_files(paths, as_json, profile, sync=False)


@app.command()
def sync(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="The folder to mirror into the index.")
    ],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Add and update the folder's files, and delete documents whose files are gone."""
    if not folder.is_dir():
        _fail(RagError(f"{folder} is not a folder. Give the folder to mirror."), as_json)
    _run_files([folder], as_json, profile, sync=True)


@app.command()
def watch(
    folders: Annotated[
        list[Path], typer.Argument(metavar="FOLDER", help="Folders to keep in step with.")
    ],
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between two looks at the folders.")
    ] = 2.0,
    debounce: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds a folder must stay unchanged before ingesting."),
    ] = 2.0,
    batch: Annotated[int, typer.Option(min=1, help="Files per ingest run.")] = 200,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Keep the index in step with folders as files are created, changed, renamed or
    deleted (polling: works on network shares). Runs until stopped (SIGTERM, Ctrl-C)."""
    import signal

    from ingest.watch import Event, Watcher, run_forever

    stopping: list[int] = []

    def stop_on(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_on)
    try:
        settings = _settings(profile)
        ingestor = _ingestor(settings, keep_workers=True)  # parse workers stay up between runs
    except RagError as exc:
        _fail(exc, as_json)

    def say(event: Event, text: str) -> None:
        if as_json:
            line = {"event": event.kind, "folder": str(event.folder)}
            if event.detail:
                line["message"] = event.detail
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            print(text, flush=True, file=sys.stderr)

    def handle(event: Event) -> bool:
        if event.kind in {"sync", "batch"}:
            prune = event.folder if event.prune else None
            try:
                _report(ingestor.run(event.targets, prune=prune), len(event.targets), as_json)
            except RagError as exc:  # the store or the disk: the next poll tries again
                if as_json:
                    line = {"event": "error", "error": exc.code, "message": exc.message}
                    print(json.dumps(line, ensure_ascii=False), flush=True)
                else:
                    typer.secho(f"error: {exc.message} (retrying)", fg=typer.colors.RED, err=True)
                return False
        elif event.kind == "watching":
            say(event, f"watching {event.folder}")
        elif event.kind == "unavailable":
            say(event, f"unavailable: {event.detail}")
        elif event.kind == "back":
            say(event, f"back: {event.folder} (syncing it whole)")
        elif event.kind == "synced":
            say(event, f"in step: {event.folder}")
        return True

    watcher = Watcher(folders, debounce, batch, ingestor.indexed_under)
    try:
        run_forever(watcher, handle, interval, lambda: bool(stopping))
    finally:
        ingestor.close()


def _fetch_report(crawler: Any, as_json: bool) -> dict[str, int]:
    """Run a crawl's fetches, printing each (a live count on a terminal); the counts."""
    counts: dict[str, int] = {}

    def text(event: Any) -> str:
        why = f" ({event.reason})" if event.reason else ""
        return f"{event.status:<9} {event.url}{why}"

    if as_json or not sys.stderr.isatty():
        for event in crawler.run():
            counts[event.status] = counts.get(event.status, 0) + 1
            if as_json:
                print(json.dumps(event.to_json(), ensure_ascii=False), flush=True)
            elif event.status != "unchanged":
                loud = event.status in {"failed", "skipped"}
                print(text(event), flush=True, file=sys.stderr if loud else None)
        return counts
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"crawling {crawler.site}")
        for event in crawler.run():
            counts[event.status] = counts.get(event.status, 0) + 1
            if event.status in {"failed", "skipped", "removed"}:
                style = "red" if event.status == "failed" else "yellow"
                progress.console.print(text(event), style=style, markup=False, highlight=False)
            shown = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            progress.update(task, description=f"crawling {crawler.site}: {shown}")
    return counts


@app.command()
def crawl(
    urls: Annotated[list[str], typer.Argument(metavar="URL", help="Start pages, one per site.")],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Crawl intranet sites (same-site links, sitemap.xml, robots.txt, conditional
    re-fetch) into a mirror under paths.data_dir, then sync it into the index: pages that
    are gone are deleted. Settings: ingest.crawl."""
    from ingest.crawl import Crawler
    from ingest.pipeline import discover

    failed = 0
    try:
        settings = _settings(profile)
        crawlers = [
            Crawler(
                url, settings.ingest.crawl, settings.paths.data_dir, settings.ingest.default_groups
            )
            for url in urls
        ]
        ingestor = None
        for crawler in crawlers:
            started = time.perf_counter()
            counts = _fetch_report(crawler, as_json)
            failed += counts.get("failed", 0)
            seconds = time.perf_counter() - started
            if as_json:
                line = {
                    "event": "crawled",
                    "site": crawler.site,
                    "folder": str(crawler.folder),
                    "complete": crawler.complete,
                    "seconds": round(seconds, 2),
                    **counts,
                }
                print(json.dumps(line), flush=True)
            else:
                parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                print(f"crawled {crawler.site}: {parts} in {seconds:.1f} s", flush=True)
            ingestor = ingestor or _ingestor(settings)
            targets = list(discover([crawler.folder]))
            results = ingestor.run(targets, prune=crawler.folder)
            failed += _report(results, len(targets), as_json)
    except RagError as exc:
        _fail(exc, as_json)
    if failed:
        raise typer.Exit(1)


@app.command()
def delete(
    keys: Annotated[
        list[str], typer.Argument(metavar="DOC_ID|PATH", help="Document ids or file paths.")
    ],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Remove documents from the index (the files are not touched)."""
    failed = 0
    try:
        settings = _settings(profile)
        ingestor = _ingestor(settings, check_embedder=False)
        for key in keys:
            try:
                result = ingestor.delete(key)
            except RagError as exc:
                failed += 1
                if as_json:
                    print(json.dumps({"event": "error", "key": key, "message": exc.message}))
                else:
                    typer.secho(f"FAILED  {exc.message}", fg=typer.colors.RED, err=True)
                continue
            if as_json:
                print(json.dumps({"event": "file", **result.to_json()}, ensure_ascii=False))
            else:
                print(f"deleted   {result.path} ({result.chunks} chunks)")
    except RagError as exc:
        _fail(exc, as_json)
    if failed:
        raise typer.Exit(1)


def _manifest(settings: Settings) -> Any:
    from rag.services import open_manifest

    return open_manifest(settings)


@app.command("list")
def list_(as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """The documents in the index (and the files that last failed)."""
    try:
        settings = _settings(profile)
        with _manifest(settings) as manifest:
            collection = manifest.active(settings.store.collection)
            if not as_json:
                print(f"{'doc_id':<16}  {'chunks':>6}  {'groups':<16} path")
            for doc in manifest.documents(collection):
                if as_json:
                    print(json.dumps(doc.to_json(), ensure_ascii=False))
                else:
                    groups = ",".join(doc.groups)
                    print(f"{doc.doc_id:<16}  {doc.chunks:>6}  {groups:<16} {doc.source}")
            for path, error, at in manifest.failures(collection):
                if as_json:
                    row = {"path": path, "state": "failed", "error": error, "at": at}
                    print(json.dumps(row, ensure_ascii=False))
                else:
                    typer.secho(f"failed            {error}", fg=typer.colors.RED)
    except RagError as exc:
        _fail(exc, as_json)


@app.command()
def stats(as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """How many documents and chunks the index holds, and with which model."""
    from rag.errors import NoCollectionError
    from rag.services import open_store

    try:
        settings = _settings(profile)
        with _manifest(settings) as manifest:
            collection = manifest.active(settings.store.collection)
            data: dict[str, Any] = {"collection": collection, **manifest.stats(collection)}
        try:
            store = open_store(settings, collection=collection)
            data["store_chunks"] = store.count()
            data["embedder"] = store.embedder_id
        except NoCollectionError:  # nothing ingested yet; an unreachable store fails below
            data["store_chunks"] = 0
            data["embedder"] = None
    except RagError as exc:
        _fail(exc, as_json)
    print(json.dumps(data) if as_json else "\n".join(f"{k}: {v}" for k, v in data.items()))


@app.command()
def reindex(as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """Rebuild the index with the configured embedding model, beside the old one, and
    switch to it only when complete (queries keep working meanwhile; running servers
    follow the switch within seconds)."""
    try:
        settings = _settings(profile)
        with _reindex_job(settings) as job:
            results: list[Any] = []
            files = sum(1 for d in job.documents if not d.parent)
            _report(_tee(job.run(), results), files, as_json)
            # A bad e-mail attachment fails alone, as in add/sync: it does not stop the switch.
            failed = sum(1 for r in results if r.status == "failed" and not r.parent)
            missing = [
                r
                for r in results
                if r.status == "failed" and not r.parent and not Path(r.path).exists()
            ]
            if failed > len(missing):
                raise RagError(
                    f"{failed - len(missing)} documents failed, so the index was not switched "
                    f"(queries still use {job.old}). Fix or remove those files, then run "
                    f"{how_to_run('rag-ingest reindex')} again: it resumes."
                )
            dropped = job.switch()
        info = {
            "event": "switched",
            "active": job.target,
            "previous": job.old,
            "dropped": dropped,
            "left_out_missing_files": len(missing),
        }
        if as_json:
            print(json.dumps(info))
        else:
            print(
                f"switched to {job.target}; running servers follow within seconds ({job.old} "
                "is kept until the next reindex)"
            )
    except RagError as exc:
        _fail(exc, as_json)


@contextmanager
def _reindex_job(settings: Settings) -> Iterator[Any]:
    """A :class:`ingest.reindex.Reindex` holding the writer locks; with a shared state
    database, the lock across machines too, and the switch raises the store's version."""
    from ingest.reindex import Reindex
    from rag.services import (
        build_embedder,
        build_index_listeners,
        open_manifest,
        open_shared_state,
        store_scope,
    )
    from rag.state.shared import IndexVersions, WriterLock, holder_name

    shared = open_shared_state(settings)
    try:
        writer, on_switch = None, None
        if shared is not None:
            scope, versions = store_scope(settings), IndexVersions(shared)
            writer = WriterLock(shared, scope, holder_name("rag-ingest reindex"))
            on_switch = partial(versions.bump, scope)
        with open_manifest(settings, shared) as manifest:
            job = Reindex(
                settings,
                build_embedder(settings),
                manifest,
                listeners=build_index_listeners(settings),
                writer=writer,
                on_switch=on_switch,
            )
            try:
                yield job
            finally:
                job.close()
    finally:
        if shared is not None:
            shared.close()


def _tee(results: Iterable[Any], into: list[Any]) -> Iterator[Any]:
    for result in results:
        into.append(result)
        yield result


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} KB"


@app.command()
def backup(
    dest: Annotated[
        Path, typer.Argument(metavar="DEST", help="A new (or empty) folder for the backup.")
    ],
    wait: Annotated[
        float,
        typer.Option(
            min=0, metavar="SECONDS", help="How long to wait for a running ingest to finish."
        ),
    ] = 60.0,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Copy the index, the manifest and the state database to a new folder, consistently,
    while rag-serve keeps answering (embedded store and SQLite state only)."""
    from ingest.backup import Copied
    from ingest.backup import backup as write_backup

    def part(copied: Copied) -> None:
        if as_json:
            print(json.dumps(copied.to_json()), flush=True)
        else:
            files = f"{copied.files} file{'s' if copied.files != 1 else ''}"
            print(f"copied {copied.name:<9} {files:>11}  {_size(copied.bytes)}", flush=True)

    try:
        info = write_backup(_settings(profile), dest, wait=wait, on_part=part)
    except RagError as exc:
        _fail(exc, as_json)
    keys = ("collection", "embedder", "documents", "chunks", "store_chunks", "keyword_chunks")
    summary = {
        "event": "backup",
        "path": str(dest),
        **{k: info[k] for k in keys},
        "files": len(info["files"]),
        "bytes": sum(f["bytes"] for f in info["files"].values()),
        "seconds": info["seconds"],
    }
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    print(
        f"backup written to {dest}: {summary['documents']} documents, {summary['chunks']} "
        f"chunks (collection {summary['collection']}, embedder {summary['embedder']}); "
        f"{summary['files']} files, {_size(summary['bytes'])}, in {summary['seconds']} s"
    )


@app.command()
def restore(
    src: Annotated[
        Path, typer.Argument(metavar="SRC", help="A folder written by rag-ingest backup.")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Move data already at the target paths aside "
            "(<path>.before-restore-<time>) instead of refusing.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Check a backup's sha256 sums, put it in place of this profile's index and state
    database, and check the counts read back (stop rag-serve first)."""
    from ingest.restore import restore as put_back

    try:
        result = put_back(_settings(profile), src, force=force)
    except RagError as exc:
        _fail(exc, as_json)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"verified {result['files']} files in {src} (sha256)")
    for moved in result["moved_aside"]:
        print(f"moved aside {moved['path']} -> {moved['to']}")
    print(
        f"restored: {result['documents']} documents, {result['chunks']} chunks in the "
        f"manifest, {result['store_chunks']} in the store, {result['keyword_chunks']} in the "
        f"keyword index (collection {result['collection']}, embedder {result['embedder']}): "
        "as in the backup"
    )
    if result["warning"]:
        typer.secho(f"warning: {result['warning']}", fg=typer.colors.YELLOW, err=True)


@app.command()
def report(
    days: Annotated[int, typer.Option(min=1, metavar="N", help="Period: the last N days.")] = 30,
    html_out: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write an HTML page with a chart here."),
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Helpdesk report: questions per day, answer rate, unanswered questions, thumbs-down."""
    try:
        settings = _settings(profile)
        from rag.answering.curated import CuratedAnswers
        from rag.services import (
            build_curated_store,
            build_embedder,
            build_feedback_store,
            build_handoff_store,
            open_state,
            state_missing,
        )
        from rag.state.analytics import build_report, render_html

        missing = state_missing(settings)
        if missing is not None:
            raise RagError(
                f"No answers recorded yet ({missing} does not exist). Serve some questions "
                f"first ({how_to_run('rag-serve')}), or point paths.data_dir at the service's "
                "data directory."
            )
        db = open_state(settings)
        store = build_feedback_store(settings, db)
        embedder = build_embedder(settings)
        curated = CuratedAnswers(
            build_curated_store(settings, db), embedder, threshold=settings.curated.threshold
        )

        def covered(question: str) -> str | None:
            entry = curated.covering(question)
            return entry.curated_id if entry is not None else None

        result = build_report(
            store,
            days=days,
            embed=embedder.embed_documents,
            titles=_titles(settings),
            handoffs=build_handoff_store(settings, db),
            covered=covered,
        )
        if html_out is not None:
            html_out.write_text(render_html(result), encoding="utf-8")
    except RagError as exc:
        _fail(exc, as_json)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    p50 = f"{result.latency_p50_ms:.0f} ms" if result.latency_p50_ms is not None else "n/a"
    p95 = f"{result.latency_p95_ms:.0f} ms" if result.latency_p95_ms is not None else "n/a"
    print(
        f"last {days} days: {result.questions} questions, {result.answer_rate:.0%} answered, "
        f"{result.declined} declined; feedback {result.up} up / {result.down} down; "
        f"latency p50 {p50}, p95 {p95}"
    )
    if result.origins:
        print("answers by origin: " + ", ".join(f"{k} {v}" for k, v in result.origins.items()))
    if result.handoffs:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(result.handoffs.items()))
        states = ", ".join(f"{k} {v}" for k, v in sorted(result.handoff_status.items()))
        print(f"hand-offs to a person: {reasons} ({states})")
    for day in result.per_day:
        print(f"  {day.day}  {day.questions:>5} questions  {day.answer_rate:>5.0%} answered")
    if result.unanswered:
        print("most frequent unanswered questions:")
        for c in result.unanswered:
            mark = f"  [curated: {c.curated}]" if c.curated else ""
            print(f"  {c.count:>4}x  {c.example}{mark}")
    if result.downvoted_docs:
        print("thumbs-down by cited document:")
        for d in result.downvoted_docs:
            title = d.title or "(no longer indexed)"
            print(f"  {d.doc_id}  {d.down} down, {d.up} up  {title}")
    if html_out is not None:
        print(f"chart: {html_out}")


def _titles(settings: Settings) -> dict[str, str]:
    """Doc id -> title of the indexed documents (empty before anything is ingested)."""
    from rag.services import manifest_exists

    if not manifest_exists(settings):
        return {}
    with _manifest(settings) as manifest:
        collection = manifest.active(settings.store.collection)
        return {doc.doc_id: doc.title for doc in manifest.documents(collection)}


keys_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="API keys for the service (stored hashed)."
)
app.add_typer(keys_app, name="keys")
app.add_typer(curate_app, name="curate")  # ingest/curate_cli.py


def _keystore(profile: str | None) -> Any:
    from rag.services import build_key_store, open_state

    settings = _settings(profile)
    return build_key_store(settings, open_state(settings))


def _cli_user() -> str:
    """Who ran a command, as the audit log names them: ``cli:user@host``."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}@{socket.gethostname()}"


def _audit_key(profile: str | None, action: str, key: Any) -> None:
    """The audit record of a key change. The change is made either way: a record that
    cannot be written is a warning that says so (the secret of a new key is still shown)."""
    from rag.services import build_audit_log, open_state

    try:
        settings = _settings(profile)
        db = open_state(settings)
        try:
            log = build_audit_log(settings, db)
            if log is not None:
                log.append(
                    action,
                    caller=_cli_user(),
                    route=f"rag-ingest keys {action.removeprefix('key_')}",
                    target=f"key:{key.key_id}",
                    groups=list(key.groups),
                    reason=",".join(key.scopes),
                )
        finally:
            db.close()
    except RagError as exc:
        typer.secho(
            f"warning: key {key.key_id} was changed, but its audit record could not be "
            f"written: {exc.message}",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _key_json(key: Any) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "groups": list(key.groups),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(metavar="NAME", help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(metavar="SCOPE", help="ask, ingest, admin or metrics (repeat; default ask)."),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(metavar="GROUP", help="Access groups (repeat; default everyone)."),
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Create a key; its secret is printed once, store it now."""
    try:
        key, secret = _keystore(profile).create(name, scope or ["ask"], group or ["everyone"])
    except RagError as exc:
        _fail(exc, as_json)
    _audit_key(profile, "key_create", key)
    if as_json:
        print(json.dumps({**_key_json(key), "key": secret}))
    else:
        print(
            f"created key {key.key_id} ({key.name}): scopes {', '.join(key.scopes)}; "
            f"groups {', '.join(key.groups)}"
        )
        print(f"secret (shown only now): {secret}")


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """Keys with their scopes and groups (never their secrets)."""
    try:
        keys = _keystore(profile).list()
    except RagError as exc:
        _fail(exc, as_json)
    for key in keys:
        if as_json:
            print(json.dumps(_key_json(key)))
        else:
            state = "active" if key.active else "revoked"
            print(
                f"{key.key_id}  {state:<7}  {key.name}  scopes={','.join(key.scopes)}  "
                f"groups={','.join(key.groups)}"
            )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The id from `keys list`.")],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Revoke a key at once (the service checks keys on every request)."""
    try:
        key = _keystore(profile).revoke(key_id)
    except RagError as exc:
        _fail(exc, as_json)
    _audit_key(profile, "key_revoke", key)
    print(json.dumps(_key_json(key)) if as_json else f"revoked {key.key_id} ({key.name})")


@app.command()
def audit(
    since: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="From a date (2026-12-01, ISO time) or ago (7d, 12h)."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(metavar="CALLER", help="One caller: key:abc123, or a user (alice)."),
    ] = None,
    action: Annotated[
        str | None, typer.Option(metavar="ACTION", help="ask, retrieve, upload, delete, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 1000,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the hash chain instead of listing.")
    ] = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """The audit log: who asked, searched, uploaded, deleted, changed keys or failed to sign
    in. --verify checks that no record was changed, inserted or removed (exit 1 if one was)."""
    from rag.services import build_audit_log, open_state

    try:
        settings = _settings(profile)
        started = _since(since) if since else None
        db = open_state(settings)
        try:
            log = build_audit_log(settings, db)
            if log is None:
                raise RagError("The audit log is off (audit.enabled: false). Turn it on first.")
            if verify:
                _verify_audit(log.verify(), as_json)
                return
            records = log.records(since=started, caller=user, action=action, limit=limit)
        finally:
            db.close()
    except RagError as exc:
        _fail(exc, as_json)
    for r in records:
        if as_json:
            print(json.dumps(r.to_json(), ensure_ascii=False))
        else:
            docs = f" docs={','.join(r.doc_ids)}" if r.doc_ids else ""
            why = f" ({r.reason})" if r.reason else ""
            target = f" {r.target}" if r.target else ""
            print(
                f"{r.to_json()['at'][:19]}  {r.action:<13} {r.status}  {r.caller}  "
                f"[{','.join(r.groups)}]  {r.route}{target}{docs}{why}"
            )


def _verify_audit(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": "verify", **dataclasses.asdict(result)}))
    elif result.ok:
        start = f" from record {result.first_seq}" if result.first_seq else ""
        print(f"audit chain intact: {result.checked} records{start}")
    else:
        typer.secho(
            f"audit chain BROKEN at record {result.broken_at}: {result.reason} "
            f"({result.checked} records before it check out). Someone changed the log; "
            "compare with an exported copy (rag-ingest audit --json).",
            fg=typer.colors.RED,
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


def _since(text: str) -> float:
    """``7d``/``12h``/``30m`` ago, or an ISO date or time (UTC when no zone is given)."""
    import re
    import time
    from datetime import UTC, datetime

    ago = re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip())
    if ago:
        return time.time() - float(ago.group(1)) * {"d": 86400, "h": 3600, "m": 60}[ago.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RagError(
            f"--since {text!r} is not a date: use 2026-12-01, 2026-12-01T09:00 or 7d / 12h."
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@app.command("eval")
def eval_(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset", metavar="DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/."
        ),
    ],
    split: Annotated[
        str, typer.Option(metavar="NAME", help="qrels file to score (qrels/<split>.tsv).")
    ] = "test",
    workdir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Scratch index folder (reused when unchanged); default <data_dir>/eval.",
        ),
    ] = None,
    candidates: Annotated[int, typer.Option(metavar="N", help="Chunks each ranker returns.")] = 200,
    bonus: Annotated[
        float,
        typer.Option(metavar="X", help="Document score = best chunk + X times the other chunks."),
    ] = 0.0,
    max_queries: Annotated[
        int | None, typer.Option(metavar="N", help="Score only the first N queries.")
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode",
            metavar="MODE",
            help="dense, keyword or hybrid (repeat for several; default all three).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Retrieval quality on a BEIR dataset: dense, keyword and hybrid (nDCG@10, recall, MRR)."""
    try:
        settings = _settings(profile)
        from rag.errors import BadRequestError
        from rag.eval.beir import MODES, build_index, evaluate, load_beir
        from rag.services import build_embedder

        modes = mode or list(MODES)
        if set(modes) - set(MODES):
            raise BadRequestError(f"--mode takes {', '.join(MODES)}; got {', '.join(modes)}.")
        data = load_beir(dataset, split)
        # The configured backend (ONNX int8 by default), so eval scores what ingest ships.
        embedder = build_embedder(settings)
        folder = workdir or settings.paths.data_dir / "eval"
        index = build_index(data, settings, embedder, folder, embed=modes != ["keyword"])
        report = evaluate(
            data,
            index,
            embedder,
            settings,
            candidates=candidates,
            bonus=bonus,
            max_queries=max_queries,
            modes=modes,
        )
    except RagError as exc:
        _fail(exc, as_json)
    print(json.dumps(report.to_json()) if as_json else report.table())


def main() -> None:
    from rag.deploy.logs import configure
    from rag.deploy.netguard import install_from_env

    install_from_env()
    configure(logging.WARNING)  # the commands print their own progress; warnings, not noise
    try:
        app()
    except RagError as exc:  # pragma: no cover - commands handle their own
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
