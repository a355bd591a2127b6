"""Bounding a YAML document before anything expands it: size, nesting, aliases, and the
node count the document has once its aliases are expanded.

PyYAML shares an anchored node between its aliases when it constructs, but everything
that walks the result afterwards (valohai-yaml's validator, an error message quoting a
value) walks it as a tree: six levels of ten aliases in 469 bytes become a million nodes
and a 7 MB message. The parser's event stream neither constructs nor expands, so it is
walked here with integer counts; an alias costs what the node it names costs. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from dockyard_common.errors import InvalidInput

__all__ = ["YamlLimits", "check_yaml_bounds", "load_bounded_yaml"]

# libyaml's parser when PyYAML was built with it (20x faster than the Python one here);
# the document is then loaded by the same parser, so the bound counts what is loaded.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, kw_only=True)
class YamlLimits:
    """What a document may cost. A valohai.yaml of fifty steps and endpoints is a few
    thousand nodes, about ten levels deep, with a handful of aliases (``<<: *defaults``)."""

    max_bytes: int = 256 * 1024
    max_depth: int = 64
    """Nested sequences and mappings; the loader composes recursively."""
    max_aliases: int = 1_000
    max_nodes: int = 50_000
    """Nodes once every alias is expanded: what validating and quoting the document walks."""


def check_yaml_bounds(text: str, limits: YamlLimits = YamlLimits()) -> None:
    """Refuse ``text`` with :class:`InvalidInput` naming the bound it breaks, before it is
    constructed; YAML syntax errors are left to the loader."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > limits.max_bytes:
        raise InvalidInput(f"the YAML document is {size} bytes; at most {limits.max_bytes} are")
    # Each open collection: its anchor and the expanded node count of its children so far.
    open_nodes: list[tuple[str | None, int]] = []
    weights: dict[str, int] = {}
    aliases = 0
    total = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            weight: int | None = None
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_nodes) >= limits.max_depth:
                    raise InvalidInput(
                        f"the YAML document nests deeper than {limits.max_depth} levels "
                        f"(line {_line(event)})"
                    )
                open_nodes.append((event.anchor, 0))
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, children = open_nodes.pop()
                weight = 1 + children
            elif isinstance(event, yaml.ScalarEvent):
                anchor, weight = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    raise InvalidInput(
                        f"the YAML document uses more than {limits.max_aliases} aliases"
                    )
                anchor, weight = None, _alias_weight(event, weights, open_nodes)
            if weight is None:
                continue  # stream and document markers
            if anchor is not None:
                weights[anchor] = weight
            if open_nodes:
                parent_anchor, children = open_nodes[-1]
                open_nodes[-1] = (parent_anchor, children + weight)
            else:
                total += weight
            if weight > limits.max_nodes or total > limits.max_nodes:
                raise InvalidInput(
                    f"the YAML document expands to more than {limits.max_nodes} nodes once "
                    f"its aliases (*name) are expanded (line {_line(event)}); write the "
                    "values out, or use fewer nested aliases"
                )
    except yaml.YAMLError:
        return  # not YAML: the loader says where, in its own words


def _alias_weight(
    event: yaml.AliasEvent, weights: dict[str, int], open_nodes: list[tuple[str | None, int]]
) -> int:
    anchor = str(event.anchor)
    if any(open_anchor == anchor for open_anchor, _ in open_nodes):
        # PyYAML would build a list that holds itself; every walk of it recurses forever.
        raise InvalidInput(f"the YAML alias *{anchor} refers to a node that contains it")
    if anchor not in weights:
        raise InvalidInput(f"the YAML alias *{anchor} names no anchor (&{anchor}) before it")
    return weights[anchor]


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return (mark.line + 1) if mark is not None else 0


def load_bounded_yaml(text: str, limits: YamlLimits = YamlLimits()) -> object:
    """The data of ``text`` once it passed :func:`check_yaml_bounds`; ``yaml.YAMLError`` when
    it is not YAML. Blocking (it may take a second at the bounds): call it from a thread."""
    check_yaml_bounds(text, limits)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, chosen above
