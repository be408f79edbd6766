"""The HTTP API server: FastAPI routes over the engine, bearer tokens, problem documents."""

from noetl_agent.api.app import create_app

__all__ = ["create_app"]
