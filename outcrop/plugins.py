"""The plugin surface: pluggy hooks, each receiving a `register` callback. Built-ins use them too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from outcrop.markers import hookimpl, hookspec  # noqa: F401  (hookimpl: re-exported for plugins)


class Hooks:
    @hookspec
    def register_engines(self, register: Callable[[type[Any]], None]) -> None:
        """Register engine classes (subclasses of outcrop.engines.base.Engine)."""

    @hookspec
    def register_vector_stores(self, register: Callable[[Any], None]) -> None:
        """Register vector stores (objects with `name`, `create(dimension, metric)` and `load(data)`)."""

    @hookspec
    def register_parsers(self, register: Callable[[str, Callable[[bytes], Any]], None]) -> None:
        """Register document parsers by file suffix (".pdf"): bytes → outcrop.core.knowledge.parsing.ParsedDocument."""

    @hookspec
    def register_guardrail_checks(self, register: Callable[[type[Any]], None]) -> None:
        """Register guardrail check classes (outcrop.core.guardrails.checks.base.ContentCheck or PiiCheck)."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add command groups to the `outcrop` typer app."""


def plugin_manager(extra: list[object] | None = None) -> pluggy.PluginManager:
    """A manager with the built-ins, installed entry points (group `outcrop`) and `extra` plugins."""
    from outcrop.core.guardrails.checks import builtin as builtin_checks
    from outcrop.engines import builtin
    from outcrop.vectorstores import builtin as builtin_stores

    pm = pluggy.PluginManager("outcrop")
    pm.add_hookspecs(Hooks)
    pm.register(builtin)
    pm.register(builtin_stores)
    pm.register(builtin_checks)
    pm.load_setuptools_entrypoints("outcrop")
    for plugin in extra or []:
        pm.register(plugin)
    return pm


def engine_classes(pm: pluggy.PluginManager) -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    pm.hook.register_engines(register=lambda cls: found.__setitem__(cls.name, cls))
    return found


def vector_stores(pm: pluggy.PluginManager) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pm.hook.register_vector_stores(register=lambda store: found.__setitem__(store.name, store))
    return found


def guardrail_checks(pm: pluggy.PluginManager) -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    pm.hook.register_guardrail_checks(register=lambda cls: found.__setitem__(cls.name, cls))
    return found


def parsers(pm: pluggy.PluginManager) -> dict[str, Callable[[bytes], Any]]:
    found: dict[str, Callable[[bytes], Any]] = {}
    pm.hook.register_parsers(register=lambda suffix, parse: found.__setitem__(suffix.lower(), parse))
    return found
