"""The services one server process holds, built once at start-up and shared by every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from outcrop.core import guardrails as guardrails_module
from outcrop.core.access import BEARER_ACTION, OPERATIONS, AccessService, attached_policies
from outcrop.core.accounts import AccountsService
from outcrop.core.catalog import Catalog
from outcrop.core.crypto import MasterKeyring
from outcrop.core.customization.batch import BatchInference
from outcrop.core.customization.records import ModelJobs
from outcrop.core.customization.service import Customization
from outcrop.core.files import FileService
from outcrop.core.governance import Admissions, CallContext, Recorders
from outcrop.core.governance.audit import AuditTrail
from outcrop.core.governance.integrity import DigestSigner, prune
from outcrop.core.governance.invocation_log import InvocationLogger
from outcrop.core.governance.metrics import Metrics, ModelLabels
from outcrop.core.governance.quotas import QuotaService
from outcrop.core.governance.usage import UsageLedger
from outcrop.core.guardrails.runtime import Guardrails
from outcrop.core.identity import IdentityService
from outcrop.core.inference import InferenceService, ModelPool
from outcrop.core.jobs import JobService
from outcrop.core.kms import KeyService
from outcrop.core.knowledge import parsing
from outcrop.core.knowledge.service import Knowledge
from outcrop.core.objects import ObjectStore
from outcrop.core.policies import PoliciesService
from outcrop.core.tags import Tags
from outcrop.ids import request_id
from outcrop.plugins import engine_classes, guardrail_checks, parsers, plugin_manager, vector_stores
from outcrop.server.auth import AuthThrottle, attempted_key, authenticate
from outcrop.settings import Settings
from outcrop.storage.blobs import BlobStore
from outcrop.storage.db import make_engine, migrate, session_factory
from outcrop.storage.tables import Guardrail


def master_keyring(settings: Settings) -> MasterKeyring:
    if settings.master_key is not None:
        return MasterKeyring.from_secret(settings.master_key.get_secret_value())
    return MasterKeyring.from_file(settings.master_key_path, create=settings.master_key_file is None)


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    inference: InferenceService
    identity: IdentityService
    access: AccessService
    accounts: AccountsService
    policies: PoliciesService
    keys: KeyService
    files: FileService
    throttle: AuthThrottle
    audit: AuditTrail
    signer: DigestSigner
    invocation_log: InvocationLogger
    metrics: Metrics
    usage: UsageLedger
    quotas: QuotaService
    jobs: JobService
    knowledge: Knowledge
    guardrails: Guardrails
    model_jobs: ModelJobs
    customization: Customization
    batch: BatchInference
    tags: Tags
    objects: Callable[[str], ObjectStore]  # an account's inputs and outputs for jobs (its uploads included)

    @classmethod
    def build(cls, settings: Settings, plugins: list[object] | None = None) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.home.chmod(0o700)
        db = make_engine(settings.database_url)
        migrate(db)
        sessions = session_factory(db)
        identity = IdentityService(sessions, master_keyring(settings), settings.home / "credentials.json")
        access = AccessService(attached_policies(sessions))
        identity.on_change.append(access.invalidate)
        accounts = AccountsService(identity, access)
        keys = KeyService(sessions, identity.master, access, settings.region)
        keys.purge_due()
        catalog = Catalog.load(settings)
        pm = plugin_manager(plugins)
        pool = ModelPool(settings, engine_classes(pm))
        parsing.PARSERS.update(parsers(pm))
        signer = DigestSigner(sessions, settings.home / "audit-signing.key", settings.audit_digest_every_s)
        audit = AuditTrail(sessions, access, on_batch=signer.touched)
        if settings.audit_retention_days:
            prune(sessions, signer, datetime.now(UTC) - timedelta(days=settings.audit_retention_days))
        invocation_log = InvocationLogger(sessions, keys, access, settings.home)
        models = ModelLabels.of(catalog)
        metrics = Metrics(models, loaded_models=lambda: len(pool.engines))
        usage = UsageLedger(sessions, access, models)
        quotas = QuotaService(sessions, access)
        # quotas first: only admitted calls count as in flight
        inference = InferenceService(settings, catalog, pool, recorder=Recorders(metrics, usage, invocation_log),
                                     access=access, admission=Admissions(quotas, metrics))
        blobs = BlobStore(settings.home / "blobs")
        jobs = JobService(sessions, lease_s=settings.job_lease_s)
        knowledge = Knowledge.build(settings, sessions, access, keys, inference, blobs, jobs, vector_stores(pm))
        guardrails = guardrails_module.build(settings, sessions, access, keys, inference, guardrail_checks(pm))
        knowledge.generation.guardrails = guardrails
        model_jobs = ModelJobs(settings, sessions, access, keys, jobs)
        files = FileService(keys, blobs, access)

        def objects(account_id: str) -> ObjectStore:
            return ObjectStore(settings, lambda file_id: files.content_of(account_id, file_id))

        customization = Customization.build(settings, sessions, access, keys, blobs, catalog, inference, jobs,
                                            model_jobs, objects)
        tags = Tags(sessions)
        tags.register("guardrail", Guardrail, guardrails.service.locate)
        customization.register_tags(tags, model_jobs)
        return cls(settings, catalog, inference, identity, access, accounts, PoliciesService(accounts, access), keys,
                   files, AuthThrottle(settings.auth_failures_per_minute), audit, signer,
                   invocation_log, metrics, usage, quotas, jobs, knowledge, guardrails, model_jobs, customization,
                   BatchInference(settings, model_jobs, inference), tags, objects)

    def close(self) -> None:
        self.batch.close()  # before the worker's join: a batch job stops taking records and stays resumable
        self.jobs.close()
        self.customization.close()
        self.knowledge.close()
        self.invocation_log.flush()
        self.quotas.flush()
        self.usage.close()
        self.audit.close()
        self.signer.sign_pending()
        self.inference.pool.close()


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def operation(name: str, bearer_only: bool = False,
              service: str = "bedrock") -> Callable[[Request], Awaitable[CallContext]]:
    """A route dependency: authenticate the request and describe it for authorization and governance."""
    if name not in OPERATIONS:
        raise KeyError(f"operation {name!r} has no IAM action in outcrop.core.access.OPERATIONS")

    async def dependency(request: Request) -> CallContext:
        return await call_context(request, name, bearer_only, service)

    return dependency


async def call_context(request: Request, name: str, bearer_only: bool = False,
                       service: str = "bedrock") -> CallContext:
    svc = services(request)
    scope = request.scope
    scope["outcrop.operation"] = name  # from here on the call is audited, whatever happens
    client = scope["client"][0] if scope.get("client") else None
    try:
        who = await authenticate(request, svc.identity, svc.throttle, svc.settings.region, client,
                                 bearer_only=bearer_only, service=service)
    except Exception:
        scope["outcrop.attempted_key"] = attempted_key(request.headers.get("authorization", ""))
        raise
    # straight from the ASGI scope: building request.url costs ~20 µs a request
    ctx = CallContext(who, name, request_id=scope.get("outcrop.request_id") or request_id(), source_ip=client,
                      user_agent=request.headers.get("user-agent"), secure=scope.get("scheme") == "https",
                      region=svc.settings.region)
    scope["outcrop.ctx"] = ctx
    if who.auth == "api_key":
        svc.access.require(ctx, "*", BEARER_ACTION)
    return ctx
