"""`hub plugins` tells an integrator what each platform reads and writes and which options it takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def hub(*args: str) -> subprocess.CompletedProcess[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "hub")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def test_plugins_show_streams_options_defaults_and_descriptions():
    result = hub("plugins", "--json")
    assert result.returncode == 0, result.stderr
    details = {d["name"]: d for p in json.loads(result.stdout) for d in p["platform_details"]}
    cplug = details["cplug"]
    assert "sales" in cplug["pulls"] and "products" in cplug["pushes"], cplug
    options = {o["name"]: o for o in cplug["options"]}
    assert options["company_id"]["required"] and options["company_id"]["description"], options["company_id"]
    assert options["base_url"]["default"].startswith("https://"), "CPlug's real host is the default"
    assert set(details["bling"]["actions"]) >= {"lancar-estoque", "estornar-estoque"}
    text = hub("plugins").stdout
    assert "option company_id (required): sent as CPlug-Company-Id" in text, text
    assert "reads: categories, customers" in text
