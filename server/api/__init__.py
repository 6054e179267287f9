"""The HTTP API (FastAPI): one router per resource, bearer API keys with roles."""

from server.api.factory import create_app

__all__ = ["create_app"]
