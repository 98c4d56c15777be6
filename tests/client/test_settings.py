"""A client's settings: the environment, arguments over variables, both checked alike, and the
key kept out of ``repr``."""

from __future__ import annotations

import pydantic
import pytest

from client import Client, ClientSettings


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_API_URL", "http://from-env:1")
    monkeypatch.setenv("AUTOTAG_API_KEY", "env-secret")
    monkeypatch.setenv("AUTOTAG_API_RETRIES", "7")
    with Client() as from_env:
        assert (from_env.settings.api_url, from_env.settings.key()) == (
            "http://from-env:1",
            "env-secret",
        )
        assert from_env.settings.api_retries == 7
        assert "env-secret" not in repr(from_env.settings)
    with Client("http://given:2", api_key="given-secret", retries=2) as given:
        assert (given.settings.api_url, given.settings.key()) == ("http://given:2", "given-secret")
        assert given.settings.api_retries == 2
    settings = ClientSettings(api_url="http://settings:3")
    with Client(settings=settings, timeout=3.5) as both:
        assert (both.settings.api_url, both.settings.api_timeout) == ("http://settings:3", 3.5)


def test_an_argument_is_checked_like_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pydantic.ValidationError):
        Client(retries=0)
    with pytest.raises(pydantic.ValidationError):
        Client(settings=ClientSettings(), timeout=-1)
    monkeypatch.setenv("AUTOTAG_API_TIMEOUT", "0")
    with pytest.raises(pydantic.ValidationError):
        Client()


def test_an_empty_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_API_KEY", "")
    with Client() as client:
        assert client.settings.key() is None
