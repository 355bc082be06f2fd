"""The model catalog: packaged defaults, user models (models file), and Bedrock model-ID aliases."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.types import Adapter, ModelSpec

QWEN_05B_ID = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"
QWEN_15B_ID = "qwen.qwen2-5-coder-1-5b-instruct-v1:0"
SMOLLM2_ID = "huggingface.smollm2-135m-instruct-v1:0"
MINILM_ID = "sentence-transformers.all-minilm-l6-v2-v1:0"

BUILTIN_MODELS = (
    ModelSpec(QWEN_05B_ID, "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)", "Qwen", "llamacpp",
              pack="qwen2.5-coder-0.5b-instruct", supports_tools=True,
              customizations=("FINE_TUNING", "CONTINUED_PRE_TRAINING"), context_length=32768),
    ModelSpec(SMOLLM2_ID, "SmolLM2-135M-Instruct (Q4_1)", "HuggingFace", "llamacpp",
              pack="smollm2-135m-instruct", customizations=("FINE_TUNING", "CONTINUED_PRE_TRAINING"),
              context_length=8192),
    ModelSpec(QWEN_15B_ID, "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)", "Qwen", "llamacpp",
              pack="qwen2.5-coder-1.5b-instruct", supports_tools=True,
              customizations=("FINE_TUNING", "CONTINUED_PRE_TRAINING"), context_length=32768),
    ModelSpec(MINILM_ID, "all-MiniLM-L6-v2", "Sentence Transformers", "sentence-transformers", kind="embedding",
              pack="all-minilm-l6-v2", output_modalities=("EMBEDDING",), streaming=False, dimensions=384),
)

# Bedrock model IDs that code written for Bedrock sends, and which kind of local model answers them.
# Listed ones appear in ListFoundationModels; the patterns accept every other ID of the family.
BEDROCK_CHAT_IDS = {
    "anthropic.claude-3-haiku-20240307-v1:0": ("Anthropic", "Claude 3 Haiku"),
    "anthropic.claude-3-5-haiku-20241022-v1:0": ("Anthropic", "Claude 3.5 Haiku"),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": ("Anthropic", "Claude 3.5 Sonnet"),
    "anthropic.claude-3-sonnet-20240229-v1:0": ("Anthropic", "Claude 3 Sonnet"),
    "anthropic.claude-v2:1": ("Anthropic", "Claude"),
    "anthropic.claude-instant-v1": ("Anthropic", "Claude Instant"),
    "amazon.titan-text-express-v1": ("Amazon", "Titan Text G1 - Express"),
    "amazon.titan-text-lite-v1": ("Amazon", "Titan Text G1 - Lite"),
    "amazon.titan-text-premier-v1:0": ("Amazon", "Titan Text G1 - Premier"),
    "cohere.command-text-v14": ("Cohere", "Command"),
    "cohere.command-light-text-v14": ("Cohere", "Command Light"),
    "cohere.command-r-v1:0": ("Cohere", "Command R"),
    "cohere.command-r-plus-v1:0": ("Cohere", "Command R+"),
    "meta.llama2-13b-chat-v1": ("Meta", "Llama 2 Chat 13B"),
    "meta.llama3-8b-instruct-v1:0": ("Meta", "Llama 3 8B Instruct"),
    "meta.llama3-1-8b-instruct-v1:0": ("Meta", "Llama 3.1 8B Instruct"),
    "mistral.mistral-7b-instruct-v0:2": ("Mistral AI", "Mistral 7B Instruct"),
    "mistral.mixtral-8x7b-instruct-v0:1": ("Mistral AI", "Mixtral 8x7B Instruct"),
    "mistral.mistral-large-2402-v1:0": ("Mistral AI", "Mistral Large"),
    "ai21.j2-mid-v1": ("AI21 Labs", "Jurassic-2 Mid"),
    "ai21.j2-ultra-v1": ("AI21 Labs", "Jurassic-2 Ultra"),
    "ai21.jamba-1-5-mini-v1:0": ("AI21 Labs", "Jamba 1.5 Mini"),
    "ai21.jamba-instruct-v1:0": ("AI21 Labs", "Jamba-Instruct"),
}
BEDROCK_EMBEDDING_IDS = {
    "amazon.titan-embed-text-v1": ("Amazon", "Titan Embeddings G1 - Text"),
    "amazon.titan-embed-text-v2:0": ("Amazon", "Titan Text Embeddings V2"),
    "cohere.embed-english-v3": ("Cohere", "Embed English"),
    "cohere.embed-multilingual-v3": ("Cohere", "Embed Multilingual"),
}
CHAT_PATTERNS = ("anthropic.claude*", "amazon.titan-text-*", "cohere.command*", "meta.llama*", "mistral.*", "ai21.j2*",
                 "ai21.jamba*")
EMBEDDING_PATTERNS = ("amazon.titan-embed-text-*", "cohere.embed-*")

PRIVATE_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[\w-]*:\d{12}:(custom-model|imported-model|provisioned-model)/")
_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[\w-]*:\d*:(foundation-model|inference-profile|custom-model|"
                  r"provisioned-model|imported-model|application-inference-profile)/(.+)$")
_GEO_PREFIX = re.compile(r"^(us|eu|apac|global|us-gov|ca|jp|au)\.(?=[a-z0-9-]+\.)")


@dataclass
class Resolved:
    """A requested model ID and the local model that answers it."""

    requested: str  # the Bedrock-style ID, with ARN and geography prefix removed
    spec: ModelSpec
    arn: str | None = None  # a private (custom, imported, provisioned) model's ARN: what IAM checks
    adapter: Adapter | None = None  # a custom model's LoRA, applied on its base model's engine

    @property
    def family(self) -> str:
        """The provider prefix that decides InvokeModel's body format."""
        return self.requested.split(".", 1)[0]


@dataclass
class Alias:
    pattern: str
    target: str


@dataclass
class Catalog:
    settings: Settings
    models: dict[str, ModelSpec] = field(default_factory=dict)
    aliases: list[Alias] = field(default_factory=list)
    _listing: list[tuple[str, str, str, ModelSpec]] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> Catalog:
        catalog = cls(settings)
        for spec in BUILTIN_MODELS:
            catalog.models[spec.model_id] = spec
        user = read_models_file(settings.models_path)
        for spec in user.models:
            catalog.models[spec.model_id] = spec
        catalog.aliases = user.aliases + [Alias(p, settings.default_chat_model) for p in CHAT_PATTERNS]
        catalog.aliases += [Alias(p, settings.default_embedding_model) for p in EMBEDDING_PATTERNS]
        return catalog

    def resolve(self, model_id: str) -> Resolved:
        requested = normalize_model_id(model_id)
        if requested in self.models:
            return Resolved(requested, self.models[requested])
        by_name = [s for s in self.models.values() if s.name == requested]
        if len(by_name) == 1:
            return Resolved(requested, by_name[0])
        for alias in self.aliases:
            if fnmatch.fnmatchcase(requested, alias.pattern):
                target = self.models.get(alias.target)
                if target is None:
                    raise NotFound(f"Model {requested} is an alias of {alias.target}, which is not in the catalog.")
                return Resolved(requested, target)
        raise NotFound(f"The provided model identifier is invalid: {model_id}. Use ListFoundationModels to see them.")

    def foundation_models(self) -> list[tuple[str, str, str, ModelSpec]]:
        """(model ID, provider, name, serving spec) for every listed model, local ones first.

        The catalog does not change after load, so the alias resolution runs once, not per listing call."""
        if self._listing is None:
            self._listing = self._list_models()
        return self._listing

    def _list_models(self) -> list[tuple[str, str, str, ModelSpec]]:
        rows = [(s.model_id, s.provider, s.name, s) for s in self.models.values()]
        for table in (BEDROCK_CHAT_IDS, BEDROCK_EMBEDDING_IDS):
            for model_id, (provider, name) in table.items():
                try:
                    rows.append((model_id, provider, name, self.resolve(model_id).spec))
                except NotFound:
                    continue
        return rows


def normalize_model_id(model_id: str) -> str:
    """Strip ARN wrapping and cross-region profile prefixes: `us.anthropic.x` → `anthropic.x`."""
    value = unquote(model_id.strip())
    if not value:
        raise Invalid("modelId must not be empty")
    match = _ARN.match(value)
    if match:
        value = match.group(2)
    return _GEO_PREFIX.sub("", value, count=1)


# --- the models file ------------------------------------------------------------------------------

_SPEC_FIELDS = {f.name for f in fields(ModelSpec)}


@dataclass
class ModelsFile:
    models: list[ModelSpec]
    aliases: list[Alias]


def read_models_file(path: Path) -> ModelsFile:
    """Parse `[[models]]` and `[[aliases]]` tables; a broken file is a clear start-up error."""
    if not path.exists():
        return ModelsFile([], [])
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"{path}: {exc}") from exc
    models = [spec_from_dict(entry, source=str(path)) for entry in data.get("models", [])]
    aliases = [Alias(a["pattern"], a["target"]) for a in data.get("aliases", [])]
    return ModelsFile(models, aliases)


def spec_from_dict(entry: dict[str, Any], source: str = "model") -> ModelSpec:
    unknown = set(entry) - _SPEC_FIELDS - {"id"}
    if unknown:
        raise Invalid(f"{source}: unknown model fields {sorted(unknown)}")
    values = dict(entry)
    if "id" in values:
        values["model_id"] = values.pop("id")
    for required in ("model_id", "engine"):
        if required not in values:
            raise Invalid(f"{source}: a model needs `{required if required != 'model_id' else 'id'}`")
    values.setdefault("name", values["model_id"])
    values.setdefault("provider", "Custom")
    for tuple_field in ("input_modalities", "output_modalities", "customizations"):
        if tuple_field in values:
            values[tuple_field] = tuple(values[tuple_field])
    if values.get("kind") == "embedding":
        values.setdefault("output_modalities", ("EMBEDDING",))
        values.setdefault("streaming", False)
    return ModelSpec(**values)


def append_model(path: Path, entry: dict[str, Any]) -> ModelSpec:
    """Validate and add one model to the models file (replacing one with the same id)."""
    import tomli_w

    spec = spec_from_dict(entry)
    data: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    kept = [m for m in data.get("models", []) if m.get("id") != spec.model_id]
    data["models"] = kept + [{k: v for k, v in entry.items() if v is not None}]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(data))
    tmp.replace(path)
    return spec
