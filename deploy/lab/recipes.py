"""Render the balancer templates of ``deploy/haproxy`` and ``deploy/nginx``.

A template is a real configuration file in which ``${NAME}`` (upper case,
braced) marks a value to fill in. Two rules keep templates readable:

- a line holding ``${NODE_NAME}`` or ``${NODE_ADDR}`` is written once per node;
- a line whose placeholder is given the value ``None`` is left out (for
  example ``load_module`` where nginx has the stream module built in);
- comment lines (``#`` first) are copied as they are, so they may talk about
  placeholders.

nginx's own variables (``$http_upgrade``) are lower case and never braced
this way, so they pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEPLOY_DIR",
    "Node",
    "TemplateError",
    "render",
    "render_file",
    "placeholders",
    "without_http_checks",
    "without_proxy_protocol",
]

#: The ``deploy`` folder: the templates live in ``haproxy/`` and ``nginx/`` below it.
DEPLOY_DIR = Path(__file__).resolve().parent.parent

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_PER_NODE = frozenset({"NODE_NAME", "NODE_ADDR"})


class TemplateError(ValueError):
    """A template names a placeholder no value was given for."""


@dataclass(frozen=True)
class Node:
    """One backend in a rendered recipe: its ``name`` and ``host:port`` ``addr``."""

    name: str
    addr: str


def placeholders(text: str) -> set[str]:
    """The placeholder names a template uses."""
    return set(_PLACEHOLDER.findall(text))


def render(text: str, values: Mapping[str, str | None], nodes: Sequence[Node]) -> str:
    """Fill ``text`` with ``values`` and one copy of each per-node line per node.

    Raises :class:`TemplateError` for a placeholder without a value, and
    :class:`ValueError` when ``nodes`` is empty.
    """
    if not nodes:
        raise ValueError("a recipe needs at least one node")
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        names = set(_PLACEHOLDER.findall(line))
        if names & _PER_NODE:
            for node in nodes:
                per_node = {**values, "NODE_NAME": node.name, "NODE_ADDR": node.addr}
                filled = _fill(line, per_node)
                if filled is not None:
                    out.append(filled)
            continue
        filled = _fill(line, values)
        if filled is not None:
            out.append(filled)
    return "".join(out)


def render_file(
    template: str | Path, values: Mapping[str, str | None], nodes: Sequence[Node], destination: Path
) -> Path:
    """Render ``template`` (a path, or a name relative to :data:`DEPLOY_DIR`) into ``destination``.

    Raises :class:`TemplateError` as :func:`render` does and :class:`OSError`.
    """
    source = Path(template)
    if not source.is_absolute():
        source = DEPLOY_DIR / source
    destination.write_text(render(source.read_text(encoding="utf-8"), values, nodes), encoding="utf-8")
    return destination


def without_http_checks(config: Path) -> None:
    """Turn a rendered HAProxy recipe's HTTP health checks into connect-only checks, in place.

    A stopgap for nodes without ``/readyz``: a connect check cannot see a
    draining node or a lost broker, only a closed listener.
    """
    lines = config.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip().startswith(("option httpchk", "http-check"))]
    config.write_text("\n".join(kept) + "\n", encoding="utf-8")


def without_proxy_protocol(config: Path) -> None:
    """Take the PROXY protocol out of a rendered recipe, in place (nodes without ``--proxy-protocol``)."""
    text = config.read_text(encoding="utf-8")
    text = text.replace(" send-proxy-v2 check-send-proxy", "")
    lines = [line for line in text.splitlines() if line.strip() != "proxy_protocol on;"]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fill(line: str, values: Mapping[str, str | None]) -> str | None:
    # None drops the line: the setting does not apply here.
    missing = [name for name in _PLACEHOLDER.findall(line) if name not in values]
    if missing:
        raise TemplateError(f"no value for ${{{missing[0]}}} in: {line.strip()}")
    if any(values[name] is None for name in _PLACEHOLDER.findall(line)):
        return None
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), line)
