"""Server settings: server.toml's tables as pydantic models."""
