"""``rag-ingest``: add documents to the knowledge base and inspect it.

Every command takes ``--json`` for scripts (one JSON object per line) and ``--profile``.
Exit codes: 0 all good, 1 some files failed, others from :mod:`rag.errors`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.config import Settings, load_settings
from rag.errors import RagError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Ingest documents into the private knowledge base.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines for scripts.")]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="Config profile (default: $RAG_PROFILE or dev).")
]


def _settings(profile: str | None) -> Settings:
    from rag.offline import apply_offline_env

    settings = load_settings(profile)
    apply_offline_env(settings, in_process_engine=False)
    return settings


def _fail(exc: RagError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": exc.code, "message": exc.message}))
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exc.exit_code)


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Add or update files (folders recursively); unchanged files are skipped."""
    try:
        settings = _settings(profile)
        from ingest.pipeline import Ingestor
        from rag.seams import IndexListener
        from rag.services import build_knowledge_base

        kb = build_knowledge_base(settings)
        listeners: list[IndexListener] = [kb.keyword] if kb.keyword is not None else []
        ingestor = Ingestor(settings, kb.embedder, kb.store, listeners)
        failed = 0
        counts: dict[str, int] = {}
        for result in ingestor.add(paths):
            counts[result.status] = counts.get(result.status, 0) + 1
            failed += result.status == "failed"
            if as_json:
                print(json.dumps(result.to_json()), flush=True)
            elif result.status == "failed":
                typer.secho(f"FAILED  {result.path}: {result.error}", fg=typer.colors.RED)
            elif result.status != "skipped":
                print(f"{result.status:<9} {result.path} ({result.chunks} chunks)", flush=True)
        if not as_json:
            summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no files"
            print(f"done: {summary}; {kb.store.count()} chunks in the index")
    except RagError as exc:
        _fail(exc, as_json)
    if failed:
        raise typer.Exit(1)


@app.command()
def stats(as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """How many chunks the index holds."""
    try:
        settings = _settings(profile)
        from rag.services import build_knowledge_base

        kb = build_knowledge_base(settings)
        data = {"chunks": kb.store.count(), "collection": settings.store.collection}
    except RagError as exc:
        _fail(exc, as_json)
    print(json.dumps(data) if as_json else "\n".join(f"{k}: {v}" for k, v in data.items()))


@app.command("eval")
def eval_(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")
    ],
    split: Annotated[str, typer.Option(help="qrels file to score (qrels/<split>.tsv).")] = "test",
    workdir: Annotated[
        Path | None,
        typer.Option(help="Scratch index folder (reused when unchanged); default <data_dir>/eval."),
    ] = None,
    candidates: Annotated[int, typer.Option(help="Chunks each ranker returns.")] = 200,
    bonus: Annotated[
        float, typer.Option(help="Document score = best chunk + bonus x other chunks.")
    ] = 0.0,
    max_queries: Annotated[int | None, typer.Option(help="Score only the first N.")] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option("--mode", help="dense, keyword, hybrid (repeatable; default all three)."),
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Retrieval quality on a BEIR dataset: dense, keyword and hybrid (nDCG@10, recall, MRR)."""
    try:
        settings = _settings(profile)
        from rag.embedding import SentenceTransformerEmbedder
        from rag.errors import BadRequestError
        from rag.evaluation import MODES, build_index, evaluate, load_beir

        modes = mode or list(MODES)
        if set(modes) - set(MODES):
            raise BadRequestError(f"--mode takes {', '.join(MODES)}; got {', '.join(modes)}.")
        data = load_beir(dataset, split)
        embedder = SentenceTransformerEmbedder(settings.embedding)
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
    try:
        app()
    except RagError as exc:  # pragma: no cover - commands handle their own
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
