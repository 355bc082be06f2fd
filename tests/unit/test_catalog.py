import pytest

from outcrop.core.catalog import MINILM_ID, QWEN_05B_ID, Catalog, append_model, normalize_model_id
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path)


@pytest.mark.parametrize("given", [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-haiku-20240307-v1%3A0",
])
def test_bedrock_ids_normalize(given):
    assert normalize_model_id(given) == "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.mark.parametrize("model_id,target", [
    ("anthropic.claude-v2", QWEN_05B_ID), ("amazon.titan-text-express-v1", QWEN_05B_ID),
    ("cohere.command-r-plus-v1:0", QWEN_05B_ID), ("meta.llama3-70b-instruct-v1:0", QWEN_05B_ID),
    ("mistral.mistral-large-2407-v1:0", QWEN_05B_ID), ("ai21.j2-ultra-v1", QWEN_05B_ID),
    ("ai21.jamba-1-5-large-v1:0", QWEN_05B_ID), ("amazon.titan-embed-text-v2:0", MINILM_ID),
    ("cohere.embed-multilingual-v3", MINILM_ID), ("eu.meta.llama3-2-1b-instruct-v1:0", QWEN_05B_ID),
])
def test_aliases(settings, model_id, target):
    assert Catalog.load(settings).resolve(model_id).spec.model_id == target


def test_unknown_model(settings):
    with pytest.raises(NotFound):
        Catalog.load(settings).resolve("openai.gpt-99")


def test_models_file_adds_models_and_aliases(settings):
    append_model(settings.models_path, {"id": "ollama.llama3-v1:0", "engine": "openai-compatible",
                                        "base_url": "http://127.0.0.1:1/v1"})
    settings.models_path.write_text(settings.models_path.read_text()
                                    + '\n[[aliases]]\npattern = "anthropic.claude-3-opus*"\ntarget = "ollama.llama3-v1:0"\n')
    catalog = Catalog.load(settings)
    assert catalog.resolve("ollama.llama3-v1:0").spec.base_url == "http://127.0.0.1:1/v1"
    assert catalog.resolve("anthropic.claude-3-opus-20240229-v1:0").spec.model_id == "ollama.llama3-v1:0"
    assert catalog.resolve("anthropic.claude-3-haiku-20240307-v1:0").spec.model_id == QWEN_05B_ID


def test_models_file_rejects_unknown_fields(settings):
    settings.models_path.write_text('[[models]]\nid = "x.y"\nengine = "llamacpp"\ncolour = "red"\n')
    with pytest.raises(Invalid, match="colour"):
        Catalog.load(settings)


def test_public_bind_refused(tmp_path):
    with pytest.raises(ValueError, match="refusing to bind"):
        Settings(home=tmp_path, host="0.0.0.0")
