"""Customization's services, built once per server and wired to inference (private models) and the job worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.catalog import Catalog, Resolved
from outcrop.core.customization import finetune, imports
from outcrop.core.customization.finetune import CustomizationJobs
from outcrop.core.customization.imports import ModelImports
from outcrop.core.customization.models import CustomModels
from outcrop.core.customization.provisioned import ProvisionedThroughput
from outcrop.core.customization.records import ModelJobs
from outcrop.core.inference import InferenceService
from outcrop.core.jobs import JobService
from outcrop.core.kms import KeyService
from outcrop.core.objects import ObjectStore
from outcrop.settings import Settings
from outcrop.storage.blobs import BlobStore


@dataclass
class Customization:
    models: CustomModels
    finetune: CustomizationJobs
    imports: ModelImports
    provisioned: ProvisionedThroughput

    @classmethod
    def build(cls, settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
              blobs: BlobStore, catalog: Catalog, inference: InferenceService, jobs: JobService,
              records: ModelJobs, objects: Callable[[str], ObjectStore]) -> Customization:
        models = CustomModels(settings, sessions, access, keys, blobs, catalog)
        inference.private = models
        tuning = CustomizationJobs(settings, catalog, records, models, objects)
        importer = ModelImports(settings, records, models, objects)
        jobs.register(finetune.KIND, tuning.run)
        jobs.register(imports.KIND, importer.run)

        def warm(resolved: Resolved) -> None:
            engine = inference.pool.get_blocking(resolved.spec, catalog)
            preload = getattr(engine, "preload", None)
            if resolved.adapter is not None and preload is not None:
                preload(resolved.adapter)

        provisioned = ProvisionedThroughput(settings, sessions, access, lambda account, model_id: inference.resolve(
            model_id, account), warm)  # a catalog model, or one of the account's own
        return cls(models, tuning, importer, provisioned)

    def close(self) -> None:
        self.models.close()
