"""The ``http`` tool: one HTTP request per attempt, through a client shared by the executor.

```yaml
tool:
  kind: http
  method: POST                     # default GET
  url: "{{ api_base }}/orders"
  headers: {X-Request-Id: "{{ execution_id }}"}
  params: {page: 1}                # query string
  json: {id: 7}                    # or `body`/`data`: a string is sent as is, a mapping as JSON
  auth: orders_api                 # keychain name: {token} → Bearer, {username, password}
  timeout: 10                      #   → basic, {headers: {...}} → added headers
```

The result is ``{status_code, headers, json}`` when the response is JSON and
``{status_code, headers, text}`` otherwise. A 4xx or 5xx response is an ``http`` error
whose ``code`` is the status and whose ``data`` is that same result; 429 and 5xx are
retryable, as are connection errors (``connection``) and timeouts (``timeout``).
Errors of httpx are translated here, at the edge, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from engine.errors import ToolConfigError
from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, effective_timeout
from engine.tools.outcome import ToolOutcome

DEFAULT_TIMEOUT = 30.0
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_BODY_SNIPPET = 300


def _string_mapping(config: Mapping[str, Any], field: str) -> dict[str, str]:
    value = config.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigInvalid(f"`{field}` must be a mapping of names to values, got {value!r}")
    return {
        str(k): v if isinstance(v, str) else json.dumps(v)
        for k, v in value.items()
        if v is not None
    }


def _query_params(config: Mapping[str, Any]) -> dict[str, Any]:
    value = config.get("params")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigInvalid(f"`params` must be a mapping of query parameters, got {value!r}")
    params: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, list | tuple):
            params[str(key)] = [v if isinstance(v, str) else json.dumps(v) for v in item]
        else:
            params[str(key)] = item if isinstance(item, str) else json.dumps(item)
    return params


def _body(config: Mapping[str, Any]) -> dict[str, Any]:
    """httpx keyword arguments for the request body, from ``json`` or ``body``/``data``."""
    given = [f for f in ("json", "body", "data", "payload") if config.get(f) is not None]
    if len(given) > 1:
        raise ConfigInvalid(f"give one request body, not {' and '.join(f'`{f}`' for f in given)}")
    if not given:
        return {}
    value = config[given[0]]
    if given[0] == "json":
        return {"json": value}
    if isinstance(value, bytes):
        return {"content": value}
    if isinstance(value, str):
        return {"content": value.encode("utf-8")}
    return {"json": value}


async def _auth(config: Mapping[str, Any], ctx: ToolContext) -> tuple[dict[str, str], Any]:
    """Headers to add and an httpx auth object, from the credential ``auth`` names."""
    auth = config.get("auth")
    if auth is None:
        return {}, None
    if isinstance(auth, Mapping):
        name = auth.get("credential") or auth.get("name") or auth.get("key")
        if not isinstance(name, str):
            raise ConfigInvalid(
                "`auth` must name a keychain credential: `auth: NAME` or "
                "`auth: {type: bearer, credential: NAME}`"
            )
    elif isinstance(auth, str) and auth:
        name = auth
    else:
        raise ConfigInvalid(f"`auth` must name a keychain credential, got {auth!r}")
    if ctx.credentials is None:
        raise ConfigInvalid(
            f"`auth: {name}` needs credentials, but none are configured for this run; "
            "start the engine with a credential provider"
        )
    try:
        fields = await ctx.credentials.get(name)
    except ToolConfigError as e:
        raise ConfigInvalid(str(e)) from None
    headers: dict[str, str] = {}
    extra = fields.get("headers")
    if isinstance(extra, Mapping):
        headers.update({str(k): str(v) for k, v in extra.items()})
    token = fields.get("token") or fields.get("bearer_token") or fields.get("access_token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
        return headers, None
    username = fields.get("username") or fields.get("user")
    if username is not None:
        return headers, httpx.BasicAuth(str(username), str(fields.get("password") or ""))
    if not headers:
        raise ConfigInvalid(
            f"credential {name!r} has none of `token`, `username`/`password` or `headers`; "
            "add one of them to use it for http `auth`"
        )
    return headers, None


def _result(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status_code": response.status_code,
        "headers": dict(response.headers.items()),
    }
    content_type = response.headers.get("content-type", "").lower()
    if "json" in content_type and response.content:
        try:
            data["json"] = response.json()
            return data
        except ValueError:
            pass
    data["text"] = response.text
    return data


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("date")
    try:
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    if now is None or when.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _snippet(data: Mapping[str, Any]) -> str:
    body = data.get("json", data.get("text"))
    if body is None or body == "":
        return ""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    text = " ".join(text.split())
    if len(text) > _BODY_SNIPPET:
        text = text[:_BODY_SNIPPET] + "..."
    return f": {text}"


class HttpTool:
    """Sends one request per run; see the module docstring for fields and result."""

    kind = "http"

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=True)
        return self._client

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Send the request; return ``ok`` for 1xx-3xx, ``fail`` for anything else."""
        try:
            method = str(config.get("method") or "GET").upper()
            if method not in METHODS:
                raise ConfigInvalid(
                    f"`method` {method!r} is not one of {', '.join(sorted(METHODS))}"
                )
            url = config.get("url") or config.get("endpoint")
            if not isinstance(url, str) or not url.strip():
                raise ConfigInvalid("missing `url`: give the full URL to request")
            url = url.strip()
            timeout = effective_timeout(config, ctx) or DEFAULT_TIMEOUT
            headers = _string_mapping(config, "headers")
            params = _query_params(config)
            body = _body(config)
            auth_headers, auth = await _auth(config, ctx)
        except ConfigInvalid as e:
            return ToolOutcome.fail("validation", f"http tool: {e}")
        headers.update(auth_headers)
        where = f"{method} {url}"
        try:
            response = await self._get_client().request(
                method,
                url,
                headers=headers,
                params=params or None,
                auth=auth,
                timeout=timeout,
                **body,
            )
        except httpx.TimeoutException as e:
            return ToolOutcome.fail(
                "timeout",
                f"{where} timed out after {timeout:g}s ({type(e).__name__}); "
                "raise `timeout` or check that the server is responsive",
                retryable=True,
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            return ToolOutcome.fail("validation", f"http tool: bad `url` {url!r}: {e}")
        except httpx.TooManyRedirects as e:
            return ToolOutcome.fail("http", f"{where} redirected too many times: {e}")
        except httpx.TransportError as e:
            detail = str(e) or type(e).__name__
            return ToolOutcome.fail(
                "connection",
                f"{where} failed to connect or lost the connection: {detail}; "
                "check the host, port and that the server is running",
                retryable=True,
            )
        except (TypeError, ValueError) as e:  # a body or header httpx cannot encode
            return ToolOutcome.fail("validation", f"http tool: cannot send {where}: {e}")
        data = _result(response)
        status = response.status_code
        if status < 400:
            return ToolOutcome.ok(data, http_status=status)
        meta: dict[str, Any] = {}
        retry_after = _retry_after(response)
        if retry_after is not None:
            meta["retry_after"] = retry_after
        return ToolOutcome.fail(
            "http",
            f"{where} returned {status} {response.reason_phrase}{_snippet(data)}",
            code=status,
            retryable=status == 429 or status >= 500,
            data=data,
            http_status=status,
            **meta,
        )

    async def aclose(self) -> None:
        """Close the shared client; a later run opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
