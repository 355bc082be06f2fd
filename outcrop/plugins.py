"""The plugin surface: pluggy hooks, each receiving a `register` callback. Built-ins use them too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("outcrop")
hookimpl = pluggy.HookimplMarker("outcrop")


class Hooks:
    @hookspec
    def register_engines(self, register: Callable[[type[Any]], None]) -> None:
        """Register engine classes (subclasses of outcrop.engines.base.Engine)."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add command groups to the `outcrop` typer app."""


def plugin_manager(extra: list[object] | None = None) -> pluggy.PluginManager:
    """A manager with the built-ins, installed entry points (group `outcrop`) and `extra` plugins."""
    from outcrop.engines import builtin

    pm = pluggy.PluginManager("outcrop")
    pm.add_hookspecs(Hooks)
    pm.register(builtin)
    pm.load_setuptools_entrypoints("outcrop")
    for plugin in extra or []:
        pm.register(plugin)
    return pm


def engine_classes(pm: pluggy.PluginManager) -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    pm.hook.register_engines(register=lambda cls: found.__setitem__(cls.name, cls))
    return found
