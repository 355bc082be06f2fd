"""Shared CLI plumbing: settings from flags, progress bars, errors printed plainly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from outcrop.errors import OutcropError
from outcrop.settings import Settings

console = Console(stderr=True)


def load_settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)
    except ValueError as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except OutcropError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


def prepare_packs(settings: Settings, names: list[str]) -> dict[str, Path]:
    """Assemble and verify packs into the model cache, with a progress bar per pack."""
    from outcrop import modelpacks

    paths: dict[str, Path] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        for name in names:
            pack = modelpacks.PACKS[name]
            task = progress.add_task(f"{'verify' if pack.folder else 'assemble'} {name}", total=pack.size or 1)

            def update(done: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            paths[name] = modelpacks.pack_path(pack, settings.model_cache, update)
            progress.update(task, completed=pack.size or 1, total=pack.size or 1)
    return paths
