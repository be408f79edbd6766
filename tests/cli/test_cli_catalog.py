"""`noetl-agent catalog register|list` and `run catalog://PATH[@VERSION]`."""

from __future__ import annotations

import shutil


def test_register_versions_list_and_run_by_version(cli, cli_all, home, playbooks, tmp_path):
    source = tmp_path / "child.yaml"
    shutil.copy(playbooks / "child.yaml", source)

    first = cli("catalog", "register", source, "--json")
    assert first.returncode == 0, first.describe()
    assert first.json() == {"path": "tests/cli/child", "version": 1, "name": "child"}
    again = cli("catalog", "register", source, "--json")
    assert again.returncode == 0, again.describe()
    assert again.json()["version"] == 1

    source.write_text(source.read_text().replace("x: 1", "x: 2"))
    changed = cli("catalog", "register", source)
    assert changed.returncode == 0, changed.describe()
    assert "tests/cli/child" in changed.stdout
    assert "version 2" in changed.stdout

    listing, latest, pinned = cli_all(
        ("catalog", "list", "--json"),
        ("run", "catalog://tests/cli/child", "--json"),
        ("run", "catalog://tests/cli/child@1", "--json"),
        home=home,
    )
    assert listing.returncode == 0, listing.describe()
    entries = listing.json()
    assert len(entries) == 1
    assert entries[0]["path"] == "tests/cli/child"
    assert entries[0]["version"] == 2
    assert entries[0]["name"] == "child"
    assert entries[0]["registered_at"]

    assert latest.returncode == 0, latest.describe()
    assert latest.json()["result"] == {"child_value": 20}  # version 2's workload
    assert pinned.returncode == 0, pinned.describe()
    assert pinned.json()["result"] == {"child_value": 10}  # version 1's workload


def test_run_unknown_catalog_path_or_version(cli_all, playbooks):
    unknown, registered = cli_all(
        ("run", "catalog://no/such/playbook", "--json"),
        ("catalog", "register", playbooks / "child.yaml"),
    )
    assert unknown.returncode == 1, unknown.describe()
    assert "no/such/playbook" in unknown.stderr
    assert "catalog list" in unknown.stderr  # the hint
    assert "Traceback" not in unknown.stderr

    assert registered.returncode == 0, registered.describe()
    missing_version, not_a_number = cli_all(
        ("run", "catalog://tests/cli/child@9"),
        ("run", "catalog://tests/cli/child@latest"),
        home=registered.home,
    )
    assert missing_version.returncode == 1, missing_version.describe()
    assert "version 9" in missing_version.stderr
    assert "catalog list" in missing_version.stderr

    assert not_a_number.returncode == 2, not_a_number.describe()
    assert "latest" in not_a_number.stderr
    assert "hint:" in not_a_number.stderr


def test_register_rejects_an_invalid_playbook(cli_all, home, playbooks):
    done, listing = cli_all(
        ("catalog", "register", playbooks / "invalid.yaml"),
        ("catalog", "list", "--json"),
        home=home,
    )
    assert done.returncode == 2, done.describe()
    assert "nxet" in done.stderr
    assert "Traceback" not in done.stderr

    assert listing.returncode == 0, listing.describe()
    assert listing.json() == []
