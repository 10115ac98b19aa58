"""``rag-serve``: run the API with uvicorn."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from rag.config import Settings, load_settings
from rag.errors import EngineUnavailableError, RagError

if TYPE_CHECKING:
    from rag.services import Services

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
            help="Validate the profile without loading weights: print the engine arguments "
            "and the memory estimate; exit 2 when it cannot fit.",
        ),
    ] = False,
    gpu_memory_gib: Annotated[
        float | None,
        typer.Option(
            help="With --check: memory of one GPU in GiB (else llm.gpu_memory_gib).", min=1
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(help="With --check: sequences that must fit in the KV cache at once.", min=1),
    ] = 1,
    context_tokens: Annotated[
        int | None,
        typer.Option(
            help="With --check: tokens of each of those sequences (else max_model_len).", min=1
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="With --check: print the report as JSON.")
    ] = False,
) -> None:
    """Start the API; the model loads in the background (watch /readyz)."""
    if check:
        _check(profile, gpu_memory_gib, concurrency, context_tokens, json_output)
        return
    overrides: dict[str, dict[str, object]] = {"server": {}}
    if host:
        overrides["server"]["host"] = host
    if port:
        overrides["server"]["port"] = port
    try:
        settings = load_settings(profile, overrides=overrides)
        services = _services(settings)
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc
    from rag.deploy.offline import apply_offline_env

    apply_offline_env(settings, in_process_engine=settings.llm.backend == "vllm")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from serving.app import create_app

    _banner(settings)
    uvicorn.run(
        create_app(settings, services=services),
        host=settings.server.host,
        port=settings.server.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def _services(settings: Settings) -> Services:
    """The service's parts; refuses a profile that needs API keys while none exists."""
    from rag.services import Services

    services = Services(settings)
    if settings.auth.required and services.keys.active_count() == 0:
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
    return services


def _banner(settings: Settings) -> None:
    base = f"http://{settings.server.host}:{settings.server.port}"
    print(f"profile {settings.profile}: {settings.llm.describe()}", file=sys.stderr)
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


def _check(
    profile: str | None,
    gpu_memory_gib: float | None,
    concurrency: int,
    context_tokens: int | None,
    json_output: bool,
) -> None:
    from rag.deploy.profile_check import check_profile, render_report
    from rag.errors import ConfigError

    try:
        settings = load_settings(profile)
        report = check_profile(
            settings,
            gpu_memory_gib=gpu_memory_gib,
            concurrency=concurrency,
            context_tokens=context_tokens,
        )
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc
    if json_output:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(f"engine  {settings.llm.describe()}")
        print(render_report(report, settings.llm))
    if not report.ok:
        raise typer.Exit(ConfigError.exit_code)
    if settings.llm.backend != "vllm":
        from rag.deploy.offline import apply_offline_env

        apply_offline_env(settings, in_process_engine=False)
        code = _probe_remote(settings)
        if code:
            raise typer.Exit(code)


def _probe_remote(settings: Settings) -> int:
    """Probe a remote model server: 0 when it answers, else an exit code."""
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
    from rag.deploy.netguard import install_from_env

    install_from_env()
    cli()


if __name__ == "__main__":
    main()
