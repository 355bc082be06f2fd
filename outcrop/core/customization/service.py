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
from outcrop.core.customization.models import RESOURCE as MODEL_RESOURCE
from outcrop.core.customization.models import CustomModels
from outcrop.core.customization.provisioned import ProvisionedThroughput
from outcrop.core.customization.records import RESOURCE, ModelJobs
from outcrop.core.inference import InferenceService
from outcrop.core.jobs import TRAINING_LANE, JobService
from outcrop.core.kms import KeyService
from outcrop.core.objects import ObjectStore
from outcrop.core.tags import Tags
from outcrop.settings import Settings
from outcrop.storage.blobs import BlobStore
from outcrop.storage.tables import CustomModel, ModelJob, ProvisionedModel


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
        jobs.register(finetune.KIND, tuning.run, TRAINING_LANE)  # never holds up batch jobs or ingestion
        jobs.register(imports.KIND, importer.run, TRAINING_LANE)

        def warm(resolved: Resolved) -> None:
            engine = inference.pool.get_blocking(resolved.spec, catalog)
            preload = getattr(engine, "preload", None)
            if resolved.adapter is not None and preload is not None:
                preload(resolved.adapter)

        provisioned = ProvisionedThroughput(settings, sessions, access, lambda account, model_id: inference.resolve(
            model_id, account), warm)  # a catalog model, or one of the account's own
        return cls(models, tuning, importer, provisioned)

    def register_tags(self, tags: Tags, records: ModelJobs) -> None:
        """Jobs, custom and imported models and provisioned throughput take TagResource and friends."""
        for kind, resource in RESOURCE.items():
            tags.register(resource, ModelJob, records.locator(kind))
        for kind, resource in MODEL_RESOURCE.items():
            tags.register(resource, CustomModel, self.models.locator(kind))
        tags.register("provisioned-model", ProvisionedModel, self.provisioned.locate)

    def close(self) -> None:
        self.models.close()
