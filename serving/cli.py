"""``rag-serve``: run the API with uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from rag.config import load_settings
from rag.errors import RagError

cli = typer.Typer(add_completion=False, help="Serve the knowledge-base Q&A API.")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (server.port).")] = None,
    profile: Annotated[str | None, typer.Option(help="Config profile.")] = None,
) -> None:
    """Start the API; the model loads in the background (watch /readyz)."""
    try:
        overrides: dict[str, dict[str, object]] = {"server": {}}
        if host:
            overrides["server"]["host"] = host
        if port:
            overrides["server"]["port"] = port
        settings = load_settings(profile, overrides=overrides)
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc

    from rag.apikeys import KeyStore

    try:
        active = KeyStore(settings.paths.data_dir / "keys.sqlite3").active_count()
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc
    if settings.auth.required and active == 0:
        typer.secho(
            f"error: the {settings.profile!r} profile requires API keys and none exists. Create "
            "one: rag-ingest keys create --name NAME --scope ask --group everyone",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    if not settings.auth.required:
        typer.secho(
            f"warning: auth is off (profile {settings.profile!r}): anyone who can reach "
            f"port {settings.server.port} can ask questions. Never run production like this.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    from rag.offline import apply_offline_env

    apply_offline_env(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from serving.app import create_app

    base = f"http://{settings.server.host}:{settings.server.port}"
    print(f"profile {settings.profile}, model {settings.llm.model}", file=sys.stderr)
    print(f"API docs:  {base}/docs", file=sys.stderr)
    print(
        f"Ask:       curl -s {base}/v1/ask -H 'content-type: application/json' "
        '-d \'{"question": "What is the name of the shared print queue?"}\'',
        file=sys.stderr,
    )
    if settings.widget.demo_page and settings.widget.tokens:
        print(f"Widget:    {base}/widget/demo  (?lang=zh for Chinese)", file=sys.stderr)
    print(
        f"Ready when {base}/readyz answers 200 (the model loads in the background).",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def main() -> None:
    from rag.netguard import install_from_env

    install_from_env()
    cli()


if __name__ == "__main__":
    main()
