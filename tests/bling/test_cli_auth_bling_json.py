"""`hub auth bling TENANT --json`, the plugin's own command as a script runs it: the link and the prompt go to
stderr, stdout is the connection's state and token expiry, and a refused code is a JSON error with exit 1."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins

from tests.bling.conftest import TENANT, World


@pytest.fixture
def hub(world: World, settings, monkeypatch):
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(settings.home))
    get_settings.cache_clear()
    yield lambda *args, **kw: CliRunner().invoke(with_plugins(), list(args), **kw)
    get_settings.cache_clear()


def test_auth_bling_json_prints_the_connection_and_its_token_expiry(world: World, hub):
    code = world.box.authorize(state="fixed")
    result = hub("auth", "bling", TENANT, "--state", "fixed", "--json",
                 input=f"http://localhost/callback?code={code}&state=fixed\n")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["connection"] == "erp" and report["platform"] == "bling"
    assert report["state"] == "active" and report["token_expires_at"] and report["renew_by"]
    assert "oauth/authorize?response_type=code" in result.stderr, "the link is shown on stderr"
    assert code not in result.stdout


def test_auth_bling_json_refused_code_is_a_json_error_with_exit_1(world: World, hub):
    code = world.box.authorize(state="fixed")
    assert hub("auth", "bling", TENANT, "--code", code, "--json").exit_code == 0
    reused = hub("auth", "bling", TENANT, "--code", code, "--json")
    assert reused.exit_code == 1, reused.output
    error = json.loads(reused.stdout)
    assert error["ok"] is False and error["error"] and "hub auth bling" in (error["error"] + error["fix"])
    unanswered = hub("auth", "bling", TENANT, "--json", input="")
    assert unanswered.exit_code == 1, unanswered.output
    assert json.loads(unanswered.stdout)["error"] == "no authorization code was given"
