"""`credentials set|list|delete|import-file`: encrypted at rest, values never shown, used by
playbooks through `auth:` and masked in what a run stores and prints."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography.fernet import Fernet

from tests.echo_server import echo_server


def _at_rest(home):
    """The bytes of the SQLite file and its WAL, as they are on disk."""
    return b"".join(
        path.read_bytes() for path in (home / "noetl.db", home / "noetl.db-wal") if path.exists()
    )


def test_credentials_roundtrip_without_showing_values(cli, home):
    stored = cli("credentials", "set", "warehouse", "--kind", "postgres", "-f", "password=s3cr3t")
    assert stored.returncode == 0, stored.describe()
    assert "s3cr3t" not in stored.stdout + stored.stderr
    listed = cli("credentials", "list", "--json")
    assert listed.json() == [{"name": "warehouse", "kind": "postgres"}]
    assert "s3cr3t" not in listed.stdout
    key_file = home / "credential.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (home / "credentials.json").exists()
    assert b"warehouse" in _at_rest(home) and b"s3cr3t" not in _at_rest(home)
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


def test_a_different_key_is_refused_in_one_clear_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("NOETL_CREDENTIAL_KEY", Fernet.generate_key().decode())
    assert cli("credentials", "set", "api", "-f", "token=tok-first-key").returncode == 0
    monkeypatch.setenv("NOETL_CREDENTIAL_KEY", "a passphrase that is not the key")
    refused = cli("credentials", "set", "other", "-f", "token=tok-second-key")
    assert refused.returncode == 2
    assert "NOETL_CREDENTIAL_KEY differs from the key the credentials" in refused.stderr
    assert "Traceback" not in refused.stderr and "tok-" not in refused.stderr
    # Listing needs no key.
    assert cli("credentials", "list", "--json").json() == [{"name": "api", "kind": "generic"}]
    # A run that needs the credential fails its step with the same explanation.
    playbook = tmp_path / "call.yaml"
    playbook.write_text(PLAYBOOK.format(url="http://127.0.0.1:9"))
    run = cli("run", playbook, "--json")
    assert run.returncode == 1, run.describe()
    message = run.json()["error"]["message"]
    assert "cannot decrypt credential 'api': NOETL_CREDENTIAL_KEY differs from the key it was" in (
        message
    )
    assert "Traceback" not in run.stderr and "tok-" not in run.stdout + run.stderr


def test_a_plain_credentials_file_is_read_then_imported(cli, home):
    legacy = home / "credentials.json"
    legacy.write_text(json.dumps({"old": {"kind": "http", "data": {"token": "tok-legacy-77"}}}))
    legacy.chmod(0o600)
    listed = cli("credentials", "list", "--json")
    assert listed.json() == []
    assert "still in the plain" in listed.stderr and "import-file" in listed.stderr

    imported = cli("credentials", "import-file")
    assert imported.returncode == 0, imported.describe()
    assert "imported 1 credential(s): old" in imported.stdout
    assert not legacy.exists()
    assert cli("credentials", "list", "--json").json() == [{"name": "old", "kind": "http"}]
    assert b"tok-legacy-77" not in _at_rest(home)


PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: echo, path: tests/cli/echo}}
workflow:
  - step: call
    tool: {{kind: http, url: "{url}/echo", auth: api}}
    next: {{arcs: [{{step: denied}}]}}
  - step: denied
    tool: {{kind: http, url: "{url}/deny", auth: api}}
"""


@pytest.mark.parametrize("source", ["store", "environment"])
def test_a_run_stores_and_prints_the_secret_masked(cli, home, tmp_path, monkeypatch, source):
    secret = "tok-cli-6b1e-echoed"
    if source == "store":
        assert cli("credentials", "set", "api", "-f", f"token={secret}").returncode == 0
    else:
        monkeypatch.setenv("NOETL_CREDENTIAL_API", json.dumps({"token": secret}))
    with echo_server() as url:
        playbook = tmp_path / "echo.yaml"
        playbook.write_text(PLAYBOOK.format(url=url))
        run = cli("run", playbook, "--json")
    assert run.returncode == 1, run.describe()
    assert secret not in run.stdout + run.stderr
    assert "refused: Bearer *** is not valid here" in run.json()["error"]["message"]
    events = cli("executions", "events", run.json()["execution_id"], "--json")
    assert secret not in events.stdout and "Bearer ***" in events.stdout
    assert secret.encode() not in _at_rest(home)
