"""``rag-ingest``: add documents to the knowledge base and inspect it.

Every command takes ``--json`` for scripts (one JSON object per line) and ``--profile``.
Exit codes: 0 all good, 1 some files failed, others from :mod:`rag.errors`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

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
        from rag.services import build_knowledge_base

        kb = build_knowledge_base(settings)
        ingestor = Ingestor(settings, kb.embedder, kb.store)
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


@app.command()
def report(
    days: Annotated[int, typer.Option(min=1, help="Period: the last N days.")] = 30,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML page with a chart here.")
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Helpdesk report: questions per day, answer rate, unanswered questions, thumbs-down."""
    try:
        settings = _settings(profile)
        from rag.analytics import build_report, render_html
        from rag.embedding import SentenceTransformerEmbedder
        from rag.feedback import FeedbackStore

        path = settings.paths.data_dir / "feedback.sqlite3"
        if not path.exists():
            raise RagError(
                f"No answers recorded yet ({path} does not exist). Serve some questions first "
                "(rag-serve), or point paths.data_dir at the service's data directory."
            )
        store = FeedbackStore(path, retention_days=settings.feedback.retention_days)
        embedder = SentenceTransformerEmbedder(settings.embedding)
        result = build_report(store, days=days, embed=embedder.embed_documents)
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
    for day in result.per_day:
        print(f"  {day.day}  {day.questions:>5} questions  {day.answer_rate:>5.0%} answered")
    if result.unanswered:
        print("most frequent unanswered questions:")
        for c in result.unanswered:
            print(f"  {c.count:>4}x  {c.example}")
    if result.downvoted_docs:
        print("thumbs-down by cited document:")
        for d in result.downvoted_docs:
            print(f"  {d.doc_id}  {d.down} down, {d.up} up")
    if html_out is not None:
        print(f"chart: {html_out}")


keys_app = typer.Typer(no_args_is_help=True, help="API keys for the service (stored hashed).")
app.add_typer(keys_app, name="keys")


def _keystore(profile: str | None) -> Any:
    from rag.apikeys import KeyStore

    settings = _settings(profile)
    return KeyStore(settings.paths.data_dir / "keys.sqlite3")


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
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None, typer.Option(help="ask, ingest or admin (repeat; default ask).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Access groups (repeat; default everyone).")
    ] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Create a key; its secret is printed once, store it now."""
    try:
        key, secret = _keystore(profile).create(name, scope or ["ask"], group or ["everyone"])
    except RagError as exc:
        _fail(exc, as_json)
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
    key_id: Annotated[str, typer.Argument(help="The id from `keys list`.")],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Revoke a key at once (the service checks keys on every request)."""
    try:
        key = _keystore(profile).revoke(key_id)
    except RagError as exc:
        _fail(exc, as_json)
    print(json.dumps(_key_json(key)) if as_json else f"revoked {key.key_id} ({key.name})")


def main() -> None:
    from rag.netguard import install_from_env

    install_from_env()
    try:
        app()
    except RagError as exc:  # pragma: no cover - commands handle their own
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
