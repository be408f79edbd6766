"""`credentials set|list|delete`: values never shown, used by playbooks through `auth:`."""

from __future__ import annotations

import stat


def test_credentials_roundtrip_without_showing_values(cli, home):
    stored = cli("credentials", "set", "warehouse", "--kind", "postgres", "-f", "password=s3cr3t")
    assert stored.returncode == 0, stored.describe()
    assert "s3cr3t" not in stored.stdout + stored.stderr
    listed = cli("credentials", "list", "--json")
    assert listed.json() == [{"name": "warehouse", "kind": "postgres"}]
    assert "s3cr3t" not in listed.stdout
    mode = stat.S_IMODE((home / "credentials.json").stat().st_mode)
    assert mode == 0o600
    piped = cli("credentials", "set", "api", "--stdin", input='{"token": "abc"}')
    assert piped.returncode == 0, piped.describe()
    assert cli("credentials", "delete", "warehouse").returncode == 0
    assert [c["name"] for c in cli("credentials", "list", "--json").json()] == ["api"]


def test_credential_mistakes_are_clear(cli):
    missing = cli("credentials", "delete", "nope")
    assert missing.returncode == 1 and "not stored" in missing.stderr
    no_fields = cli("credentials", "set", "empty")
    assert no_fields.returncode == 2 and "needs fields" in no_fields.stderr
    bad_json = cli("credentials", "set", "x", "--stdin", input="not json")
    assert bad_json.returncode == 2 and "not a JSON object" in bad_json.stderr
    agent = cli("--as-agent", "credentials", "set", "x", "-f", "a=b")
    assert agent.returncode == 1 and "admin role" in agent.stderr
