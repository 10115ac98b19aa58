"""``rag-serve``: run the API with uvicorn."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from rag.config import Settings, load_settings
from rag.errors import EngineUnavailableError, RagError, how_to_run

if TYPE_CHECKING:
    from rag.services import Services

# Plain click help, as rag-ingest: no `<bool>` labels, a metavar on every value.
cli = typer.Typer(
    rich_markup_mode=None, add_completion=False, help="Serve the knowledge-base Q&A API."
)


@cli.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="ADDR", help="Bind address (server.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(metavar="N", help="Bind port (server.port).")] = None,
    profile: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Config profile (default: $RAG_PROFILE or dev)."),
    ] = None,
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
            help="With --check: memory of one GPU in GiB (else llm.gpu_memory_gib).",
            min=1,
            metavar="GIB",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            help="With --check: sequences that must fit in the KV cache at once.",
            min=1,
            metavar="N",
        ),
    ] = 1,
    context_tokens: Annotated[
        int | None,
        typer.Option(
            help="With --check: tokens of each of those sequences (else max_model_len).",
            min=1,
            metavar="N",
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
    from rag.deploy.logs import configure

    configure(logging.INFO)
    import uvicorn

    from serving.app import create_app

    _banner(settings)
    uvicorn.run(create_app(settings, services=services), **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``rag-serve`` hands ``uvicorn.run`` besides the app.

    Proxy headers only from ``server.forwarded_allow_ips``: uvicorn's default trusts
    ``X-Forwarded-For`` from 127.0.0.1, so any local client (or a proxy that appends
    rather than replaces it) chose the address anonymous rate limits are kept under
    (issue 19: a rotating header was a fresh budget per request). uvicorn has no timeout
    for reading request headers: its HTTP protocol gets one (``server.header_timeout_s``,
    :mod:`serving.http_protocol`)."""
    from serving.http_protocol import with_head_deadline

    trusted = settings.server.forwarded_allow_ips
    return {
        "http": with_head_deadline(settings.server.header_timeout_s),
        "host": settings.server.host,
        "port": settings.server.port,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": list(trusted) or None,
        "log_level": "info",
        "access_log": False,  # the request middleware logs one line per request
        "log_config": None,  # uvicorn's own lines through the root handler above
        "timeout_graceful_shutdown": 5,
    }


def _services(settings: Settings) -> Services:
    """The service's parts; refuses a profile that needs API keys while none exists."""
    from rag.services import Services, state_missing
    from rag.state.legacy import KEYS_FILE

    data = settings.paths.data_dir

    def refuse() -> NoReturn:
        typer.secho(
            f"error: the {settings.profile!r} profile requires API keys and none exists in "
            f"{data} (paths.data_dir). Create one with the same profile and data folder: "
            f"RAG_PROFILE={settings.profile} "
            f"{how_to_run('rag-ingest keys create --name NAME --scope ask --group everyone')}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)

    # Checked before the state database is opened: a refused start creates nothing.
    if settings.auth.required and state_missing(settings) and not (data / KEYS_FILE).exists():
        refuse()
    services = Services(settings)
    if settings.auth.required and services.keys.active_count() == 0:
        services.db.close()
        refuse()
    if not settings.auth.required:
        typer.secho(
            f"warning: auth is off (profile {settings.profile!r}): anyone who can reach "
            f"port {settings.server.port} can ask questions. Never run production like this.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    return services


def _banner(settings: Settings) -> None:
    from rag.config import WILDCARD_HOSTS, service_origins

    host, port = settings.server.host, settings.server.port
    # A wildcard bind is browsed by loopback (or by this host's name, printed below).
    base = service_origins(host, port)[0] if host in WILDCARD_HOSTS else f"http://{host}:{port}"
    print(f"profile {settings.profile}: {settings.llm.describe()}", file=sys.stderr)
    docs = f"{base}/docs" if settings.server.public_docs else "off (server.public_docs: false)"
    print(f"API docs:  {docs}", file=sys.stderr)
    key = " -H 'Authorization: Bearer <key>'" if settings.auth.required else ""
    print(
        f"Ask:       curl -s {base}/v1/ask{key} -H 'content-type: application/json' "
        '-d \'{"question": "What is the name of the shared print queue?"}\'',
        file=sys.stderr,
    )
    if settings.auth.required:
        print(
            f"           (<key>: a key from `{how_to_run('rag-ingest keys create')}`, run with the "
            f"same paths.data_dir: {settings.paths.data_dir})",
            file=sys.stderr,
        )
    if settings.widget.demo_page and settings.widget.tokens:
        _widget_banner(settings, base)
    print(
        f"Ready when {base}/readyz answers 200 (the model loads in the background).",
        file=sys.stderr,
    )


def _widget_banner(settings: Settings, base: str) -> None:
    """The demo page's address(es), or a warning when its token refuses them."""
    from rag.config import service_origins

    demo = settings.widget.tokens[0]
    allowed = {o.rstrip("/").lower() for o in demo.origins}
    own = service_origins(settings.server.host, settings.server.port)
    if base not in own:
        own.insert(0, base)
    usable = [o for o in own if o in allowed]
    for origin in usable or own[:1]:
        print(f"Widget:    {origin}/widget/demo  (?lang=zh for Chinese)", file=sys.stderr)
    refused = [o for o in own if o not in allowed]
    if refused:
        typer.secho(
            f"warning: widget token {demo.name!r} allows {', '.join(sorted(allowed))}; the "
            f"demo page opened from {', '.join(refused)} gets 403 origin_not_allowed. Add "
            "'self' (or those origins) to its origins in widget.tokens, or set "
            "RAG_WIDGET__TOKENS (configs/base.yaml shows how).",
            fg=typer.colors.YELLOW,
            err=True,
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
