"""bedrock control plane: the foundation-model catalog through boto3."""

from __future__ import annotations

import pytest


def test_list_foundation_models(bedrock):
    models = bedrock.list_foundation_models()["modelSummaries"]
    ids = {m["modelId"] for m in models}
    assert {"qwen.qwen2-5-coder-0-5b-instruct-v1:0", "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.titan-embed-text-v2:0"} <= ids
    qwen = next(m for m in models if m["modelId"] == "qwen.qwen2-5-coder-0-5b-instruct-v1:0")
    assert qwen["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/qwen.qwen2-5-coder-0-5b-instruct-v1:0"
    assert qwen["responseStreamingSupported"] is True and qwen["modelLifecycle"]["status"] == "ACTIVE"


@pytest.mark.parametrize("filters,check", [
    ({"byProvider": "Anthropic"}, lambda m: m["providerName"] == "Anthropic"),
    ({"byOutputModality": "EMBEDDING"}, lambda m: m["outputModalities"] == ["EMBEDDING"]),
    ({"byInferenceType": "ON_DEMAND"}, lambda m: "ON_DEMAND" in m["inferenceTypesSupported"]),
    ({"byCustomizationType": "FINE_TUNING"}, lambda m: "FINE_TUNING" in m["customizationsSupported"]),
])
def test_filters(bedrock, filters, check):
    models = bedrock.list_foundation_models(**filters)["modelSummaries"]
    assert models and all(check(m) for m in models)


def test_bad_filter_value(bedrock):
    with pytest.raises(bedrock.exceptions.ValidationException, match="byOutputModality"):
        bedrock.list_foundation_models(byOutputModality="SMELL")


def test_get_foundation_model(bedrock):
    details = bedrock.get_foundation_model(modelIdentifier="anthropic.claude-3-haiku-20240307-v1:0")["modelDetails"]
    assert details["providerName"] == "Anthropic" and "served by" in details["modelName"]
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"
    assert bedrock.get_foundation_model(modelIdentifier=arn)["modelDetails"]["modelId"] == "amazon.titan-embed-text-v2:0"
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.get_foundation_model(modelIdentifier="acme.nothing-v1")
