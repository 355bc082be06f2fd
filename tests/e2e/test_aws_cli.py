"""The AWS CLI, unmodified, pointed at Outcrop with --endpoint-url."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AWS = shutil.which("aws") or str(Path(sys.executable).parent / "aws")


def aws(server, *args: str) -> dict:
    if not Path(AWS).exists():
        pytest.skip("the AWS CLI is not installed")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.creds["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": server.creds["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_MAX_ATTEMPTS": "1"}
    env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    result = subprocess.run([AWS, *args, "--endpoint-url", server.endpoint, "--output", "json"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_converse(server):
    messages = json.dumps([{"role": "user", "content": [{"text": "What is the capital of France?"}]}])
    out = aws(server, "bedrock-runtime", "converse", "--model-id", "anthropic.claude-3-haiku-20240307-v1:0",
              "--messages", messages, "--inference-config", "maxTokens=40,temperature=0")
    assert "Paris" in out["output"]["message"]["content"][0]["text"]


def test_list_foundation_models(server):
    out = aws(server, "bedrock", "list-foundation-models", "--by-provider", "Amazon")
    assert {"amazon.titan-text-express-v1", "amazon.titan-embed-text-v2:0"} <= {m["modelId"] for m in out["modelSummaries"]}


def test_invoke_model_to_file(server, tmp_path):
    if not Path(AWS).exists():
        pytest.skip("the AWS CLI is not installed")
    outfile = tmp_path / "out.json"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.creds["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": server.creds["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    body = json.dumps({"inputText": "hello world"})
    result = subprocess.run([AWS, "bedrock-runtime", "invoke-model", "--model-id", "amazon.titan-embed-text-v2:0",
                             "--body", body, "--endpoint-url",
                             server.endpoint, str(outfile)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(outfile.read_text())["embedding"]) == 384
