"""The fullduplex sample apps: echo, chat and multiplayer snake, and the demo serving them all.

``fullduplex demo`` (or ``python -m fullduplex demo``) serves :data:`examples.demo.app`.
"""

__all__: list[str] = []
