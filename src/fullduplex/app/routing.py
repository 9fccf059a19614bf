"""Path templates and the router that matches request paths against them.

A template is a path with parameters in braces::

    /chat/{room}            {room} matches one non-empty path segment (no "/")
    /files/{rest:path}      {rest:path} matches the rest of the path, slashes included

Templates are compiled to regular expressions once, when they are added. Matching is done on
the path as it was sent (percent-encoded, without the query string); parameter values are
percent-decoded. A template without parameters is found by one dict lookup and wins over any
template with parameters; among those, the first added that matches wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

__all__ = ["Route", "Router", "compile_template"]

T = TypeVar("T")

# {name} or {name:kind}; anything else between braces is an error.
_PARAMETER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KINDS = {"str": "[^/]+", "path": ".*"}
# What a template's literal text may contain unescaped: what a client sends unescaped.
_SAFE = "/:@!$&'()*+,;=-._~"


def compile_template(template: str) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """Compile a path template.

    Args:
        template: A path starting with "/", with ``{name}`` or ``{name:path}`` parameters.

    Returns:
        The regular expression matching the whole (percent-encoded) path, or None when the
        template has no parameter; and the parameter names in order.

    Raises:
        ValueError: The template does not start with "/", has an unbalanced brace, an invalid
            or repeated parameter name, or an unknown kind.
    """
    if not template.startswith("/"):
        raise ValueError(f"a path template must start with '/': {template!r}")
    names: list[str] = []
    pattern = []
    position = 0
    for match in _PARAMETER.finditer(template):
        pattern.append(_literal(template, template[position : match.start()]))
        name, _, kind = match.group(1).partition(":")
        if not _NAME.match(name):
            raise ValueError(f"invalid parameter name {name!r} in {template!r}")
        if name in names:
            raise ValueError(f"parameter {name!r} appears twice in {template!r}")
        regex = _KINDS.get(kind or "str")
        if regex is None:
            raise ValueError(f"unknown parameter kind {kind!r} in {template!r}: use str or path")
        names.append(name)
        pattern.append(f"(?P<{name}>{regex})")
        position = match.end()
    if not names:
        _literal(template, template)
        return None, ()
    pattern.append(_literal(template, template[position:]))
    return re.compile("".join(pattern) + r"\Z"), tuple(names)


def _literal(template: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"unbalanced brace in path template {template!r}")
    return re.escape(quote(text, safe=_SAFE))


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    """A compiled template and what it routes to.

    Attributes:
        template: The template as given, e.g. ``/chat/{room}``.
        target: What the router returns for a matching path (an endpoint, a function...).
        pattern: The compiled regular expression, or None for a template without parameters.
        parameters: The parameter names, in order.
    """

    template: str
    target: T
    pattern: re.Pattern[str] | None = field(repr=False)
    parameters: tuple[str, ...] = ()


class Router(Generic[T]):
    """Templates to targets; :meth:`match` finds the route for a path."""

    __slots__ = ("_by_template", "_literal", "_patterns")

    def __init__(self) -> None:
        self._by_template: dict[str, Route[T]] = {}
        self._literal: dict[str, Route[T]] = {}
        self._patterns: list[Route[T]] = []

    def add(self, template: str, target: T) -> Route[T]:
        """Add a route.

        Args:
            template: The path template (see :func:`compile_template`).
            target: What :meth:`match` returns for paths that match it.

        Returns:
            The new route.

        Raises:
            ValueError: The template is invalid or already routed.
        """
        if template in self._by_template:
            raise ValueError(f"{template!r} is already routed")
        pattern, parameters = compile_template(template)
        route = Route(template, target, pattern, parameters)
        self._by_template[template] = route
        if pattern is None:
            self._literal[quote(template, safe=_SAFE)] = route
        else:
            self._patterns.append(route)
        return route

    def match(self, path: str) -> tuple[Route[T], dict[str, str]] | None:
        """Find the route for ``path``.

        Args:
            path: The request path, percent-encoded as sent, without the query string.

        Returns:
            The route and its parameters (percent-decoded), or None when nothing matches.
        """
        route = self._literal.get(path)
        if route is not None:
            return route, {}
        for route in self._patterns:
            assert route.pattern is not None
            found = route.pattern.match(path)
            if found is not None:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
        return None

    def get(self, template: str) -> Route[T] | None:
        """Return the route added with exactly this template, or None."""
        return self._by_template.get(template)

    def __contains__(self, template: object) -> bool:
        """Tell whether a route was added with exactly this template."""
        return template in self._by_template

    def __iter__(self) -> Iterator[Route[T]]:
        """Iterate over the routes in the order they were added."""
        return iter(self._by_template.values())

    def __len__(self) -> int:
        """The number of routes."""
        return len(self._by_template)
