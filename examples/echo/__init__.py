"""Echo: the endpoint in :mod:`examples.echo.server`, the page in ``static/echo.html``."""

from .server import PATH, app, register

__all__ = ["PATH", "app", "register"]
