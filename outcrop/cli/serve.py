"""`outcrop serve` and `outcrop env`."""

from __future__ import annotations

from pathlib import Path

import typer

from outcrop.cli.common import console, friendly_errors, load_settings, prepare_packs
from outcrop.core.tls import self_signed
from outcrop.settings import Settings


def export_lines(settings: Settings, creds: object) -> str:
    host, region = settings.host, settings.region
    endpoint = f"{settings.scheme}://{host}:{settings.port}"
    trust = ""
    if settings.tls_self_signed:
        cert = settings.home / "tls" / "self-signed.crt"
        trust = f"export AWS_CA_BUNDLE={cert} SSL_CERT_FILE={cert}\n"
    return (trust + f"export AWS_ENDPOINT_URL={endpoint} AWS_REGION={region} AWS_DEFAULT_REGION={region}\n"
            f"export AWS_ACCESS_KEY_ID={creds.access_key_id} AWS_SECRET_ACCESS_KEY={creds.secret_access_key}\n"  # type: ignore[attr-defined]
            f"export OPENAI_BASE_URL={endpoint}/v1 OPENAI_API_KEY={creds.api_key}")  # type: ignore[attr-defined]


def serve(
    host: str = typer.Option(None, help="address to bind (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8480)"),
    models_file: Path = typer.Option(None, "--models-file", help="extra models (TOML)"),
    prepare: bool = typer.Option(True, help="assemble and verify the default model packs before serving"),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM certificate (enables https)"),
    tls_key: Path = typer.Option(None, "--tls-key", help="PEM private key"),
    tls_self_signed: bool = typer.Option(None, "--tls-self-signed", help="serve https with a generated certificate"),
) -> None:
    """Start the server (Bedrock + OpenAI APIs) on the local models."""
    import uvicorn

    from outcrop import modelpacks
    from outcrop.server.app import create_app
    from outcrop.server.deps import Services

    settings = load_settings(host=host, port=port, models_file=models_file, tls_cert=tls_cert, tls_key=tls_key,
                             tls_self_signed=tls_self_signed)
    with friendly_errors():
        if prepare:
            try:
                prepare_packs(settings, [p.name for p in modelpacks.DEFAULT_PACKS])
            except Exception as exc:  # the server still starts: missing packs fall back or answer ModelNotReady
                console.print(f"[yellow bold]warning:[/yellow bold] model packs not ready: {exc}")
        services = Services.build(settings)
        created = services.accounts.bootstrap()
    if created:
        console.print("[bold]First start: created the default account.[/bold] Its admin's secrets are shown once "
                      f"here and kept in {services.identity.credentials_path} (mode 0600) for `outcrop env`.")
        console.print("Point AWS SDKs and the openai SDK at Outcrop with:\n")
        print(export_lines(settings, created), flush=True)
    else:  # secrets do not go to the terminal (or a log collecting it) on every start
        console.print("Serving. `eval \"$(outcrop env)\"` sets the AWS and OpenAI variables for the admin.")
    app = create_app(settings, services)
    cert, key = settings.tls_cert, settings.tls_key
    if settings.tls_self_signed and cert is None:
        cert, key = self_signed(settings.home / "tls", settings.host)
    # X-Forwarded-For/-Proto only from proxies the operator names: otherwise any local process could pose as
    # another source address (allowlist, aws:SourceIp) or as https (aws:SecureTransport).
    proxies = settings.forwarded_allow_ips
    from outcrop.server.logs import configure

    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                log_config=configure(settings.log_level, settings.log_format),
                ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None,
                proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) if proxies else None)


def env() -> None:
    """Print the export lines that point AWS SDKs and the openai SDK at this server."""
    from outcrop.core.identity import Credentials

    settings = load_settings()
    path = settings.home / "credentials.json"
    if not path.exists():
        console.print(f"[red]no credentials in {path}; run `outcrop serve` once first[/red]")
        raise typer.Exit(1)
    import json

    creds = Credentials(**json.loads(path.read_text()))
    print(export_lines(settings, creds))


def worker() -> None:
    """Run jobs (ingestion, ...) from the shared database, beside or instead of a server's own worker."""
    import threading

    from outcrop.server.deps import Services

    with friendly_errors():
        services = Services.build(load_settings())
        services.jobs.start()
        console.print("[green]job worker running[/green] (Ctrl-C stops it; a job it was running resumes elsewhere)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            services.close()
