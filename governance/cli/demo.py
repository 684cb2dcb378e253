"""`govern demo`: the main job end to end on the embedded default."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from governance.cli.base import EXIT_FAILED, fail_cleanly, settings

if TYPE_CHECKING:
    pass


@click.command()
@fail_cleanly
def demo() -> None:
    """Run the product end to end on this instance and print what happened."""
    from governance.demo import DemoError, run_demo

    try:
        summary = run_demo(settings(), echo=click.echo)
    except DemoError as exc:
        click.echo(f"error: the demo stopped: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(summary, sort_keys=True))
