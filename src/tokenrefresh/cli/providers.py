"""`providers list | show`: what each provider profile says."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenrefresh.cli.options import AsJson
from tokenrefresh.cli.root import errors_as_json, handles_errors, providers_app, setup

__all__ = ["providers_list", "providers_show"]


@providers_app.command("list")
@handles_errors
def providers_list(as_json: AsJson = False) -> None:
    """List the provider profiles: the shipped ones and the configuration file's."""
    setup()
    from tokenrefresh.base.apps import configured_profiles
    from tokenrefresh.render.providers import show_profiles
    from tokenrefresh.render.terminal import Terminal

    with errors_as_json(as_json):
        profiles = configured_profiles()
    show_profiles(Terminal(), [profiles[name] for name in sorted(profiles)], as_json=as_json)


@providers_app.command("show")
@handles_errors
def providers_show(
    name: Annotated[str, typer.Argument(help="The profile's name (see `providers list`).")],
    as_json: AsJson = False,
) -> None:
    """Print every key of a profile, its parents' included, as TOML (or --json)."""
    setup()
    from tokenrefresh.base.apps import configured_profiles
    from tokenrefresh.base.providers import find_profile
    from tokenrefresh.render.providers import show_profile
    from tokenrefresh.render.terminal import Terminal

    with errors_as_json(as_json):
        profile = find_profile(configured_profiles(), name)
    show_profile(Terminal(), profile, as_json=as_json)
