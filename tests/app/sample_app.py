"""A small app for the ``fullduplex serve`` tests: ``fullduplex serve tests.app.sample_app:app``."""

from __future__ import annotations

from fullduplex.app import App, CloseReason, Endpoint, Request, Session

__all__ = ["Counter", "app", "echo", "health"]

app = App()


@app.on_message("/echo")
async def echo(session: Session, message: str | bytes) -> str | bytes:
    """Send every message back."""
    return message


@app.endpoint("/count/{start}")
class Counter(Endpoint):
    """Counts messages from the path's start value; says goodbye with the close code."""

    def on_open(self, session: Session) -> None:
        """Start counting."""
        self.count = int(session.path_params["start"])

    def on_message(self, session: Session, message: str | bytes) -> str:
        """Reply with the running count."""
        self.count += 1
        return str(self.count)

    def on_close(self, session: Session, reason: CloseReason) -> None:
        """Nothing to clean up."""


@app.get("/health")
def health(request: Request) -> dict[str, str]:
    """A health check."""
    return {"status": "ok"}
