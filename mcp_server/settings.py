"""What an operator configures about the MCP server, from the environment.

NOETL_MCP_DISABLED_GROUPS   comma-separated tool groups to leave out (catalog, author, run,
                            learn, improve, humans)
NOETL_MCP_READ_ONLY         1/true/yes/on: list only the tools that change nothing
NOETL_MCP_REVIEW_URL        base URL of the review queue page that ``request_review``
                            links to (default: the API server serving ``/mcp``, else
                            ``NOETL_SERVER_URL``, else http://127.0.0.1:8080)
NOETL_MCP_ALLOWED_HOSTS     extra Host header values ``/mcp`` accepts (``name:port`` or
                            ``name:*``), for a server reached through a proxy or DNS name
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mcp_server.errors import McpConfigError

GROUPS: tuple[str, ...] = ("catalog", "author", "run", "learn", "improve", "humans")
DISABLED_GROUPS_ENV = "NOETL_MCP_DISABLED_GROUPS"
READ_ONLY_ENV = "NOETL_MCP_READ_ONLY"
REVIEW_URL_ENV = "NOETL_MCP_REVIEW_URL"
ALLOWED_HOSTS_ENV = "NOETL_MCP_ALLOWED_HOSTS"
SERVER_URL_ENV = "NOETL_SERVER_URL"
DEFAULT_REVIEW_URL = "http://127.0.0.1:8080"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _names(raw: str) -> list[str]:
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


@dataclass(frozen=True, slots=True)
class McpSettings:
    """Which tool groups are served, whether tools that change anything are hidden, and
    where the review queue lives."""

    disabled_groups: frozenset[str] = frozenset()
    read_only: bool = False
    review_url: str | None = None  # None: the transport's own default
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.disabled_groups) - set(GROUPS))
        if unknown:
            raise McpConfigError(
                f"{DISABLED_GROUPS_ENV} names unknown tool group(s) {', '.join(unknown)}; "
                f"the groups are {', '.join(GROUPS)}"
            )

    def serves(self, group: str) -> bool:
        """Whether tools of ``group`` are served."""
        return group not in self.disabled_groups

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> McpSettings:
        """Read the settings above; ``McpConfigError`` names a value that is wrong."""
        env = os.environ if environ is None else environ
        read_only = env.get(READ_ONLY_ENV, "").strip().lower()
        if read_only not in _TRUE | _FALSE:
            raise McpConfigError(
                f"{READ_ONLY_ENV}={env.get(READ_ONLY_ENV)!r} is not a switch; use 1 or 0"
            )
        review = env.get(REVIEW_URL_ENV, "").strip().rstrip("/")
        return cls(
            disabled_groups=frozenset(_names(env.get(DISABLED_GROUPS_ENV, ""))),
            read_only=read_only in _TRUE,
            review_url=review or None,
            allowed_hosts=tuple(_names(env.get(ALLOWED_HOSTS_ENV, ""))),
        )


def stdio_review_url(settings: McpSettings, environ: Mapping[str, str] | None = None) -> str:
    """Where ``request_review`` points when serving over stdio: the configured review
    URL, else the API server the CLI talks to, else the default local server."""
    env = os.environ if environ is None else environ
    server = env.get(SERVER_URL_ENV, "").strip().rstrip("/")
    return settings.review_url or server or DEFAULT_REVIEW_URL
