"""Credential providers: file round trip and permissions, environment, chain, no leaked values."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engine.adapters.credentials import (
    ChainCredentialProvider,
    CredentialInfo,
    CredentialNotFound,
    EnvCredentialProvider,
    FileCredentialProvider,
    MemoryCredentialProvider,
    env_var_name,
)
from engine.errors import ToolConfigError

SECRET = "hunter2-do-not-print"


async def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "home" / "credentials.json"
    provider = FileCredentialProvider(path)
    provider.set("warehouse", "postgres", {"host": "db", "port": 5432, "password": SECRET})
    provider.set("api", "bearer", {"token": SECRET})

    again = FileCredentialProvider(path)
    credential = await again.get("warehouse")
    assert dict(credential) == {"host": "db", "port": 5432, "password": SECRET}
    assert credential.kind == "postgres"
    assert again.list() == [
        CredentialInfo("api", "bearer"),
        CredentialInfo("warehouse", "postgres"),
    ]

    assert again.delete("api") is True
    assert again.delete("api") is False
    assert [info.name for info in FileCredentialProvider(path).list()] == ["warehouse"]


async def test_file_is_written_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    provider = FileCredentialProvider(path)
    provider.set("api", "bearer", {"token": SECRET})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    provider.set("api", "bearer", {"token": "rotated"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dict(await provider.get("api")) == {"token": "rotated"}
    assert not [p for p in tmp_path.iterdir() if p.name != "credentials.json"]


async def test_file_changes_on_disk_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    reader = FileCredentialProvider(path)
    with pytest.raises(CredentialNotFound):
        await reader.get("late")
    FileCredentialProvider(path).set("late", "generic", {"k": "v"})
    assert dict(await reader.get("late")) == {"k": "v"}


async def test_invalid_file_error_does_not_echo_its_content(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text('{"api": {"token": "' + SECRET + '"')
    with pytest.raises(ToolConfigError) as caught:
        await FileCredentialProvider(path).get("api")
    assert "not valid JSON" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_set_rejects_bad_names_and_non_json_values(tmp_path: Path) -> None:
    provider = FileCredentialProvider(tmp_path / "credentials.json")
    with pytest.raises(ToolConfigError, match="invalid credential name"):
        provider.set("has space", "generic", {})
    with pytest.raises(ToolConfigError, match="JSON value") as caught:
        provider.set("ok", "generic", {"when": object(), "password": SECRET})
    assert SECRET not in str(caught.value)


async def test_env_provider_reads_json() -> None:
    environ = {
        "NOETL_CREDENTIAL_PG_LOCAL": json.dumps({"user": "postgres", "password": SECRET}),
        "NOETL_CREDENTIAL_API": json.dumps({"kind": "bearer", "data": {"token": SECRET}}),
        "UNRELATED": "x",
    }
    provider = EnvCredentialProvider(environ)
    assert env_var_name("pg-local") == "NOETL_CREDENTIAL_PG_LOCAL"
    assert dict(await provider.get("pg-local")) == {"user": "postgres", "password": SECRET}
    api = await provider.get("api")
    assert (api.kind, dict(api)) == ("bearer", {"token": SECRET})
    assert provider.list() == [
        CredentialInfo("api", "bearer"),
        CredentialInfo("pg_local", "generic"),
    ]


async def test_env_provider_bad_json_does_not_echo_the_value() -> None:
    provider = EnvCredentialProvider({"NOETL_CREDENTIAL_API": SECRET})
    with pytest.raises(ToolConfigError) as caught:
        await provider.get("api")
    assert "NOETL_CREDENTIAL_API is not valid JSON" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_chain_takes_the_first_provider_that_knows_the_name(tmp_path: Path) -> None:
    file = FileCredentialProvider(tmp_path / "credentials.json")
    file.set("shared", "generic", {"from": "file"})
    file.set("file_only", "generic", {"from": "file"})
    env = EnvCredentialProvider({"NOETL_CREDENTIAL_SHARED": '{"from": "env"}'})
    chain = ChainCredentialProvider([env, file])
    assert dict(await chain.get("shared")) == {"from": "env"}
    assert dict(await chain.get("file_only")) == {"from": "file"}


async def test_chain_propagates_broken_sources_instead_of_skipping_them(tmp_path: Path) -> None:
    env = EnvCredentialProvider({"NOETL_CREDENTIAL_API": "not json"})
    file = FileCredentialProvider(tmp_path / "credentials.json")
    file.set("api", "bearer", {"token": SECRET})
    with pytest.raises(ToolConfigError, match="not valid JSON"):
        await ChainCredentialProvider([env, file]).get("api")


async def test_unknown_name_says_how_to_define_it(tmp_path: Path) -> None:
    chain = ChainCredentialProvider(
        [EnvCredentialProvider({}), FileCredentialProvider(tmp_path / "c.json")]
    )
    with pytest.raises(ToolConfigError) as caught:
        await chain.get("pg-prod")
    message = str(caught.value)
    assert "credential 'pg-prod' is not defined" in message
    assert "noetl-agent credentials set pg-prod" in message
    assert "NOETL_CREDENTIAL_PG_PROD" in message


async def test_values_never_appear_in_reprs(tmp_path: Path) -> None:
    memory = MemoryCredentialProvider({"api": {"kind": "bearer", "data": {"token": SECRET}}})
    file = FileCredentialProvider(tmp_path / "credentials.json")
    file.set("api", "bearer", {"token": SECRET})
    env = EnvCredentialProvider({"NOETL_CREDENTIAL_API": json.dumps({"token": SECRET})})
    chain = ChainCredentialProvider([memory, file, env])
    for provider in (memory, file, env, chain):
        credential = await provider.get("api")
        assert credential["token"] == SECRET
        assert SECRET not in repr(credential)
        assert SECRET not in str(credential)
        assert SECRET not in repr(provider)
        assert "token=***" in repr(credential)
    with pytest.raises(TypeError):
        json.dumps(await memory.get("api"))
