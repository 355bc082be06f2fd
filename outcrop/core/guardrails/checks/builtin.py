"""The built-in guardrail checks, registered through the same hook as third-party ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outcrop.markers import hookimpl


@hookimpl
def register_guardrail_checks(register: Callable[[type[Any]], None]) -> None:
    from outcrop.core.guardrails.checks.lexicon import LexiconCheck
    from outcrop.core.guardrails.checks.pii import PresidioPii
    from outcrop.core.guardrails.checks.prompt_attack import NanoGuard

    for check in (NanoGuard, LexiconCheck, PresidioPii):
        register(check)
