"""deploy/lab/recipes.py: every template renders, per-node lines repeat, None drops a line."""

from __future__ import annotations

import pytest
from deploy.lab.recipes import DEPLOY_DIR, Node, TemplateError, placeholders, render

TEMPLATES = sorted(
    str(p.relative_to(DEPLOY_DIR))
    for p in DEPLOY_DIR.glob("*/*.c*f*")
    if p.parent.name in ("haproxy", "nginx")
)
NODES = [Node("node1", "10.0.0.1:8443"), Node("node2", "10.0.0.2:8443")]


def test_all_four_recipes_are_there() -> None:
    assert TEMPLATES == [
        "haproxy/tls-passthrough.cfg",
        "haproxy/tls-terminate.cfg",
        "nginx/tls-passthrough.conf",
        "nginx/tls-terminate.conf",
    ]


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_recipe_renders_with_one_server_line_per_node(name: str) -> None:
    text = (DEPLOY_DIR / name).read_text()
    values = {key: f"<{key}>" for key in placeholders(text)}
    rendered = render(text, values, NODES)
    body = [line for line in rendered.splitlines() if not line.lstrip().startswith("#")]
    assert not any("${" in line for line in body)
    for node in NODES:
        assert sum(node.addr in line for line in body) == 1
    # nginx's own variables pass through untouched.
    if name.startswith("nginx/"):
        assert "$" in "".join(body)


def test_a_missing_value_is_an_error() -> None:
    with pytest.raises(TemplateError, match="PORT"):
        render("listen ${PORT};\n", {}, NODES)


def test_none_drops_the_line_and_comments_stay() -> None:
    text = "# set ${MODULE} here\nload_module ${MODULE};\nworker_processes 1;\n"
    assert render(text, {"MODULE": None}, NODES) == "# set ${MODULE} here\nworker_processes 1;\n"


def test_no_nodes_is_an_error() -> None:
    with pytest.raises(ValueError, match="node"):
        render("x\n", {}, [])
