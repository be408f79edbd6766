"""Errors of the MCP server, and the one place service errors become tool errors.

NoetlError (engine.errors)
└── AgentError (noetl_agent.errors)
    └── McpError
        └── McpConfigError   a setting in the environment that cannot be read

A tool never lets a service error escape as a crash: :func:`tool_errors` turns each
anticipated error into a ``ToolError`` whose message says what was wrong and how to fix
the call (an invalid playbook lists every issue with its path, line, message and hint).
The model reads that message and tries again; anything else is a crash, logged by the
SDK with its traceback and reported to the model only as a failure of the tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from engine.errors import Conflict, NotFound, PlaybookInvalid, StoreError, ToolConfigError
from learning.errors import IndexUnavailable, InvalidQuery, LearningError, ModelUnavailable
from noetl_agent.errors import AgentError, Forbidden


class McpError(AgentError):
    """Base of the MCP server's own errors."""


class McpConfigError(McpError):
    """A setting of the MCP server in the environment that cannot be read."""


INVALID_HINT = (
    "fix each problem at its path (the hint says how) and call again; validate_playbook "
    "checks a playbook without registering it, and the resource schema://playbook holds "
    "the JSON Schema of the language"
)


def invalid_playbook_message(exc: PlaybookInvalid) -> str:
    """Every issue of ``exc`` on its own line (path, line, message, hint), then what to do."""
    return f"{exc}\n{INVALID_HINT}"


@contextmanager
def tool_errors(*, not_found: str = "", conflict: str = "") -> Iterator[None]:
    """Turn the services' anticipated errors into tool errors with a way forward;
    ``not_found`` and ``conflict`` add the hint that fits the tool (which tool lists the
    ids, what to do instead)."""
    try:
        yield
    except PlaybookInvalid as exc:
        raise ToolError(invalid_playbook_message(exc)) from exc
    except NotFound as exc:
        raise ToolError(_join(str(exc), not_found)) from exc
    except Conflict as exc:
        raise ToolError(_join(str(exc), conflict)) from exc
    except Forbidden as exc:
        raise ToolError(
            _join(str(exc), "use a token with the role it names, or leave this to a person")
        ) from exc
    except (IndexUnavailable, ModelUnavailable) as exc:
        raise ToolError(
            _join(str(exc), "the search index is not available now; try again shortly")
        ) from exc
    except InvalidQuery as exc:
        raise ToolError(_join(str(exc), "change the arguments as the message says")) from exc
    except StoreError as exc:
        raise ToolError(_join(str(exc), "the store is not available; try again shortly")) from exc
    except (LearningError, ToolConfigError, AgentError) as exc:
        raise ToolError(str(exc)) from exc


def _join(message: str, hint: str) -> str:
    message = message.rstrip()
    if not hint:
        return message
    return f"{message.rstrip('.')}; {hint}"
