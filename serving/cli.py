"""``rag-serve``: run the API with uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from rag.config import Settings, load_settings
from rag.errors import EngineUnavailableError, RagError

cli = typer.Typer(add_completion=False, help="Serve the knowledge-base Q&A API.")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (server.port).")] = None,
    profile: Annotated[str | None, typer.Option(help="Config profile.")] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Print which engine backend and address the profile uses (and whether a "
            "remote model server answers), then exit without serving.",
        ),
    ] = False,
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

    from rag.offline import apply_offline_env

    apply_offline_env(settings, in_process_engine=settings.llm.backend == "vllm")
    if check:
        raise typer.Exit(_check(settings))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from serving.app import create_app

    base = f"http://{settings.server.host}:{settings.server.port}"
    print(f"profile {settings.profile}: {settings.llm.describe()}", file=sys.stderr)
    print(f"API docs:  {base}/docs", file=sys.stderr)
    print(
        f"Ask:       curl -s {base}/v1/ask -H 'content-type: application/json' "
        '-d \'{"question": "What is the name of the shared print queue?"}\'',
        file=sys.stderr,
    )
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


def _check(settings: Settings) -> int:
    """Print the profile's engine; probe a remote server. 0 when usable, else an exit code."""
    print(f"profile {settings.profile}")
    print(f"engine  {settings.llm.describe()}")
    if settings.llm.backend == "vllm":
        return 0
    import asyncio

    logging.getLogger("rag").setLevel(logging.ERROR)  # the verdict below says it all

    from rag.engines import start_engine
    from rag.seams import RemoteReachability

    async def probe() -> str | None:
        engine = start_engine(settings)
        try:
            if not isinstance(engine, RemoteReachability):
                return None
            reason = await engine.unreachable_reason()
            if reason is None:
                print(
                    f"server  reachable: serves {engine.name}, prompt budget "
                    f"{engine.max_model_len} tokens, family {engine.family}"
                )
            return reason
        finally:
            await engine.close()

    try:
        reason = asyncio.run(probe())
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        return exc.exit_code
    if reason is not None:
        typer.secho(f"server  NOT reachable: {reason}", fg=typer.colors.RED, err=True)
        return EngineUnavailableError.exit_code
    return 0


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
