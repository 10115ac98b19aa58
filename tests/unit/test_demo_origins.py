"""The demo widget works wherever the service listens (issue 27, finding 3): the dev
token's ``origins: [self]`` follows ``--host``/``--port``, and start-up says which origins
the demo page works from, or warns when its token refuses them."""

from __future__ import annotations

import socket

import pytest

from rag.config import Settings, load_settings, service_origins
from serving.widget_auth import OriginNotAllowedError, widget_principal


def demo(port: int, host: str = "127.0.0.1", **env: str) -> Settings:
    return load_settings("dev", overrides={"server": {"host": host, "port": port}}, environ=env)


def test_the_dev_demo_token_follows_the_port() -> None:
    settings = demo(18600)
    token = settings.widget.tokens[0]
    assert token.origins == ["http://127.0.0.1:18600", "http://localhost:18600"]
    for origin in token.origins:
        assert widget_principal(settings.widget, token.token, origin, None).groups
    with pytest.raises(OriginNotAllowedError):  # the old fixed port is not allowed any more
        widget_principal(settings.widget, token.token, "http://127.0.0.1:8000", None)


def test_every_interface_adds_this_hosts_name() -> None:
    origins = service_origins("0.0.0.0", 8080)
    name = socket.gethostname().lower()
    assert origins[:2] == ["http://127.0.0.1:8080", "http://localhost:8080"]
    assert f"http://{name}:8080" in origins
    assert service_origins("kb.example", 80) == ["http://kb.example:80"]
    assert service_origins("::1", 9000)[0] == "http://127.0.0.1:9000"


def test_self_from_the_environment_keeps_the_other_origins() -> None:
    settings = demo(
        9100,
        RAG_WIDGET__TOKENS="[{token: env-widget-token-0001, origins: [self, "
        "'https://wiki.example'], groups: [everyone]}]",
    )
    assert settings.widget.tokens[0].origins == [
        "http://127.0.0.1:9100",
        "http://localhost:9100",
        "https://wiki.example",
    ]


def test_start_up_prints_the_demo_url_or_warns(capsys: pytest.CaptureFixture[str]) -> None:
    from serving.cli import _banner

    _banner(demo(18600))
    err = capsys.readouterr().err
    assert "http://127.0.0.1:18600/widget/demo" in err and "warning" not in err

    fixed = demo(
        18600,
        RAG_WIDGET__TOKENS="[{token: env-widget-token-0001, origins: ['http://127.0.0.1:8000']}]",
    )
    _banner(fixed)
    err = capsys.readouterr().err
    assert "warning: widget token" in err and "http://127.0.0.1:18600" in err
    assert "RAG_WIDGET__TOKENS" in err


def test_the_production_hint_carries_the_key_header(capsys: pytest.CaptureFixture[str]) -> None:
    from serving.cli import _banner

    _banner(load_settings("prod-cpu", environ={}))
    err = capsys.readouterr().err
    assert "-H 'Authorization: Bearer <key>'" in err and "rag-ingest keys create" in err
    assert "API docs:  off (server.public_docs: false)" in err and "Widget:" not in err
