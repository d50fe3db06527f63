"""The ASGI application: HTTP API, WebSocket rooms, auth, settings and CLI."""
