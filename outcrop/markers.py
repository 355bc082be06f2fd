"""pluggy's markers for Outcrop's hooks, apart from plugins.py so that built-in plugins import nothing else."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("outcrop")
hookimpl = pluggy.HookimplMarker("outcrop")
