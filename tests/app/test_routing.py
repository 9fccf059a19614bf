"""Tests for fullduplex.app.routing: path templates and the router."""

from __future__ import annotations

import pytest

from fullduplex.app.routing import Route, Router, compile_template


class TestCompileTemplate:
    """Templates compile to anchored regular expressions."""

    def test_literal_has_no_pattern(self) -> None:
        assert compile_template("/echo") == (None, ())

    def test_parameters_in_order(self) -> None:
        pattern, names = compile_template("/chat/{room}/{user}")
        assert names == ("room", "user")
        assert pattern is not None
        found = pattern.match("/chat/a/b")
        assert found is not None and found.groupdict() == {"room": "a", "user": "b"}

    def test_segment_parameter_is_one_non_empty_segment(self) -> None:
        pattern, _ = compile_template("/chat/{room}")
        assert pattern is not None
        assert pattern.match("/chat/a/b") is None
        assert pattern.match("/chat/") is None
        assert pattern.match("/chat/a/") is None

    def test_path_parameter_takes_the_rest(self) -> None:
        pattern, _ = compile_template("/files/{rest:path}")
        assert pattern is not None
        found = pattern.match("/files/a/b/c.txt")
        assert found is not None and found["rest"] == "a/b/c.txt"

    def test_literal_text_is_escaped(self) -> None:
        pattern, _ = compile_template("/a.b/{x}")
        assert pattern is not None
        assert pattern.match("/a.b/1") is not None
        assert pattern.match("/aXb/1") is None

    @pytest.mark.parametrize(
        "template",
        [
            "chat/{room}",  # not absolute
            "/chat/{room",  # unbalanced
            "/chat/room}",
            "/chat/{}",  # no name
            "/chat/{1room}",  # invalid name
            "/chat/{room}/{room}",  # repeated
            "/chat/{room:int}",  # unknown kind
            "/chat/{a{b}}",
        ],
    )
    def test_invalid(self, template: str) -> None:
        with pytest.raises(ValueError):
            compile_template(template)


class TestRouter:
    """Router.match: literal routes first, then templates in the order they were added."""

    def test_match_returns_route_and_params(self) -> None:
        router: Router[str] = Router()
        router.add("/chat/{room}", "chat")
        found = router.match("/chat/lobby")
        assert found is not None
        route, params = found
        assert isinstance(route, Route)
        assert (route.template, route.target, route.parameters) == (
            "/chat/{room}",
            "chat",
            ("room",),
        )
        assert params == {"room": "lobby"}

    def test_no_match(self) -> None:
        router: Router[str] = Router()
        router.add("/echo", "echo")
        router.add("/chat/{room}", "chat")
        assert router.match("/other") is None
        assert router.match("/echo/") is None
        assert router.match("/chat") is None

    def test_literal_beats_template_whatever_the_order(self) -> None:
        router: Router[str] = Router()
        router.add("/chat/{room}", "template")
        router.add("/chat/lobby", "literal")
        assert router.match("/chat/lobby") == (router.get("/chat/lobby"), {})
        found = router.match("/chat/other")
        assert found is not None and found[0].target == "template"

    def test_first_template_wins(self) -> None:
        router: Router[str] = Router()
        router.add("/a/{x}", "first")
        router.add("/{y}/b", "second")
        found = router.match("/a/b")
        assert found is not None and found[0].target == "first"

    def test_params_are_percent_decoded(self) -> None:
        router: Router[str] = Router()
        router.add("/chat/{room}", "chat")
        found = router.match("/chat/caf%C3%A9%20au%20lait")
        assert found is not None and found[1] == {"room": "café au lait"}

    def test_non_ascii_literal(self) -> None:
        router: Router[str] = Router()
        router.add("/café", "cafe")
        found = router.match("/caf%C3%A9")
        assert found is not None and found[0].target == "cafe"

    def test_duplicate(self) -> None:
        router: Router[str] = Router()
        router.add("/chat/{room}", "a")
        with pytest.raises(ValueError, match="already"):
            router.add("/chat/{room}", "b")

    def test_container(self) -> None:
        router: Router[int] = Router()
        router.add("/a", 1)
        router.add("/b/{x}", 2)
        assert len(router) == 2
        assert "/b/{x}" in router and "/b/1" not in router
        assert [route.target for route in router] == [1, 2]
        assert router.get("/nope") is None
