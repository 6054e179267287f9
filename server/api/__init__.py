"""The HTTP API (FastAPI): one router per resource, bearer API keys with roles.

``factory.create_app`` builds the application from the routers.
"""
