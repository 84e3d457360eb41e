"""``tidings asyncapi MODULE:APP``: the App's AsyncAPI 3.0 document (JSON, or YAML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tidings.cli._output import echo
from tidings.cli._target import load_app
from tidings.schemas.asyncapi import document

__all__ = ["asyncapi"]


def asyncapi(
    target: Annotated[str, typer.Argument(metavar="MODULE:APP", help="The App to describe.")],
    yaml: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="The document's title (the App's name).")
    ] = None,
    version: Annotated[str, typer.Option(help="The API's version.")] = "1.0.0",
) -> None:
    """Print the App's AsyncAPI 3.0 document: channels, messages, operations, servers."""
    doc = document(load_app(target), title=title, version=version)
    if yaml:
        import yaml as pyyaml

        text = pyyaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        echo(text.rstrip("\n"))
