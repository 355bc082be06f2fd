"""The isolation matrix: every operation, called by another account and by a principal with no policy.

Every route of the app and every KMS operation must appear in OPERATIONS below; a new route that is
not added here fails test_every_route_is_in_the_matrix.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from outcrop.core.access import OPERATIONS as IAM_ACTIONS
from tests.e2e.iam import MANAGED, Principal, new_account

CHAT = "anthropic.claude-3-haiku-20240307-v1%3A0"
EMBED = "amazon.titan-embed-text-v2%3A0"
MSGS = [{"role": "user", "content": [{"text": "hi"}]}]
ROLE = "arn:aws:iam::123456789012:role/kb"
KB_CONFIG = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": "amazon.titan-embed-text-v2:0"}}
KB_DOC_ID = {"dataSourceType": "CUSTOM", "custom": {"id": "a-doc"}}
BATCH_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
BATCH_JOB = {"jobName": "{new}", "roleArn": ROLE, "modelId": "anthropic.claude-3-haiku-20240307-v1:0", "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "{batch_uri}/b-in.jsonl"}}, "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "{batch_uri}/b-out/"}}}
ASYNC_CALL = {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "modelInput": BATCH_BODY, "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "{batch_uri}/b-async/"}}}
KB_DOC = {"content": {"dataSourceType": "CUSTOM", "custom": {"customDocumentIdentifier": {"id": "a-doc"}, "sourceType": "IN_LINE", "inlineContent": {"type": "TEXT", "textContent": {"data": "Tenant A's launch code is 7731."}}}}}

# (operation, method, path, body, how account B's admin fares on account A's resources)
#   shared:   not a tenant resource (the model catalog): B may use it
#   own:      creates or reads B's own things: works, and A's never show up
#   foreign:  names A's resource: B is told it does not exist
#   operator: the service operator's alone: B's admin is denied
#   trail:    B's audit trail: B's own events only (they may name A's IDs: B tried them)
OPERATIONS: list[tuple[str, str, str, Any, str]] = [
    ("Converse", "POST", f"/model/{CHAT}/converse", {"messages": MSGS, "inferenceConfig": {"maxTokens": 1}}, "shared"),
    ("ConverseStream", "POST", f"/model/{CHAT}/converse-stream", {"messages": MSGS, "inferenceConfig": {"maxTokens": 1}}, "shared"),
    ("InvokeModel", "POST", f"/model/{CHAT}/invoke", {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}, "shared"),
    ("InvokeModelWithResponseStream", "POST", f"/model/{CHAT}/invoke-with-response-stream", {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}, "shared"),
    ("CountTokens", "POST", f"/model/{CHAT}/count-tokens", {"input": {"converse": {"messages": MSGS}}}, "shared"),
    ("ListFoundationModels", "GET", "/foundation-models", None, "shared"),
    ("GetFoundationModel", "GET", f"/foundation-models/{CHAT}", None, "shared"),
    ("ListModels", "GET", "/v1/models", None, "shared"),
    ("RetrieveModel", "GET", "/v1/models/qwen.qwen2-5-coder-0-5b-instruct-v1:0", None, "shared"),
    ("CreateChatCompletion", "POST", "/v1/chat/completions", {"model": "anthropic.claude-3-haiku-20240307-v1:0", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}, "shared"),
    ("CreateCompletion", "POST", "/v1/completions", {"model": "anthropic.claude-3-haiku-20240307-v1:0", "max_tokens": 1, "prompt": "hi"}, "shared"),
    ("CreateEmbedding", "POST", "/v1/embeddings", {"model": "amazon.titan-embed-text-v2:0", "input": "hi"}, "shared"),
    ("CreateFile", "POST", "/v1/files", "upload", "own"),
    ("ListFiles", "GET", "/v1/files", None, "own"),
    ("RetrieveFile", "GET", "/v1/files/{file}", None, "foreign"),
    ("RetrieveFileContent", "GET", "/v1/files/{file}/content", None, "foreign"),
    ("DeleteFile", "DELETE", "/v1/files/{file}", None, "foreign"),
    ("GetAccount", "GET", "/outcrop/v1/account", None, "own"),
    ("CreateAccount", "POST", "/outcrop/v1/accounts", {"AccountName": "intruder"}, "operator"),
    ("ListAccounts", "GET", "/outcrop/v1/accounts", None, "operator"),
    ("UpdateAccount", "POST", "/outcrop/v1/accounts/{account}/status", {"Status": "Suspended"}, "operator"),
    ("CreateUser", "POST", "/outcrop/v1/users", {"UserName": "{new}"}, "own"),
    ("ListUsers", "GET", "/outcrop/v1/users", None, "own"),
    ("GetUser", "GET", "/outcrop/v1/users/{user}", None, "foreign"),
    ("DeleteUser", "DELETE", "/outcrop/v1/users/{user}", None, "foreign"),
    ("CreateRole", "POST", "/outcrop/v1/roles", {"RoleName": "{new}"}, "own"),
    ("ListRoles", "GET", "/outcrop/v1/roles", None, "own"),
    ("GetRole", "GET", "/outcrop/v1/roles/{role}", None, "foreign"),
    ("DeleteRole", "DELETE", "/outcrop/v1/roles/{role}", None, "foreign"),
    ("AttachPolicy", "POST", "/outcrop/v1/users/{user}/policies", {"PolicyArn": MANAGED + "AmazonBedrockReadOnly"}, "foreign"),
    ("ListAttachedPolicies", "GET", "/outcrop/v1/users/{user}/policies", None, "foreign"),
    ("DetachPolicy", "DELETE", "/outcrop/v1/users/{user}/policies/{policy}", None, "foreign"),
    ("AttachPolicy", "POST", "/outcrop/v1/roles/{role}/policies", {"PolicyArn": MANAGED + "AmazonBedrockReadOnly"}, "foreign"),
    ("ListAttachedPolicies", "GET", "/outcrop/v1/roles/{role}/policies", None, "foreign"),
    ("DetachPolicy", "DELETE", "/outcrop/v1/roles/{role}/policies/{policy}", None, "foreign"),
    ("CreateAccessKey", "POST", "/outcrop/v1/access-keys", {"UserName": "{user}"}, "foreign"),
    ("ListAccessKeys", "GET", "/outcrop/v1/access-keys?UserName={user}", None, "foreign"),
    ("UpdateAccessKey", "PATCH", "/outcrop/v1/access-keys/{access_key}", {"Status": "Inactive"}, "foreign"),
    ("DeleteAccessKey", "DELETE", "/outcrop/v1/access-keys/{access_key}", None, "foreign"),
    ("RotateAccessKey", "POST", "/outcrop/v1/access-keys/{access_key}/rotate", None, "foreign"),
    ("CreateServiceSpecificCredential", "POST", "/outcrop/v1/api-keys", {"UserName": "{user}"}, "foreign"),
    ("ListServiceSpecificCredentials", "GET", "/outcrop/v1/api-keys?UserName={user}", None, "foreign"),
    ("UpdateServiceSpecificCredential", "PATCH", "/outcrop/v1/api-keys/{api_key}", {"Status": "Inactive"}, "foreign"),
    ("DeleteServiceSpecificCredential", "DELETE", "/outcrop/v1/api-keys/{api_key}", None, "foreign"),
    ("CreatePolicy", "POST", "/outcrop/v1/policies", {"PolicyName": "{new}", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:List*", "Resource": "*"}]}}, "own"),
    ("ListPolicies", "GET", "/outcrop/v1/policies", None, "own"),
    ("GetPolicy", "GET", "/outcrop/v1/policies/{policy}", None, "foreign"),
    ("DeletePolicy", "DELETE", "/outcrop/v1/policies/{policy}", None, "foreign"),
    ("CreateKey", "KMS", "CreateKey", {"Description": "b's key"}, "own"),
    ("ListKeys", "KMS", "ListKeys", {}, "own"),
    ("DescribeKey", "KMS", "DescribeKey", {"KeyId": "{cmk}"}, "foreign"),
    ("EnableKey", "KMS", "EnableKey", {"KeyId": "{cmk}"}, "foreign"),
    ("DisableKey", "KMS", "DisableKey", {"KeyId": "{cmk}"}, "foreign"),
    ("ScheduleKeyDeletion", "KMS", "ScheduleKeyDeletion", {"KeyId": "{cmk}", "PendingWindowInDays": 7}, "foreign"),
    ("CancelKeyDeletion", "KMS", "CancelKeyDeletion", {"KeyId": "{cmk}"}, "foreign"),
    ("LookupEvents", "CLOUDTRAIL", "LookupEvents", {"MaxResults": 50}, "trail"),
    ("LookupEvents", "GET", "/outcrop/v1/audit/events?MaxResults=50", None, "trail"),
    ("VerifyTrail", "POST", "/outcrop/v1/audit/verify", None, "own"),
    ("PutModelInvocationLoggingConfiguration", "PUT", "/logging/modelinvocations", {"loggingConfig": {
        "cloudWatchConfig": {"logGroupName": "b", "roleArn": "arn:aws:iam::1:role/x"}}}, "own"),
    ("GetModelInvocationLoggingConfiguration", "GET", "/logging/modelinvocations", None, "own"),
    ("ListInvocationLogs", "GET", "/outcrop/v1/invocation-logs", None, "own"),
    ("DeleteModelInvocationLoggingConfiguration", "DELETE", "/logging/modelinvocations", None, "own"),
    ("PutQuota", "PUT", "/outcrop/v1/quotas/{account}/anthropic.claude-3-haiku-20240307-v1:0", {"RequestsPerMinute": 1}, "operator"),
    ("ListQuotas", "GET", "/outcrop/v1/quotas", None, "own"),
    ("ListQuotas", "GET", "/outcrop/v1/quotas?AccountId={account}", None, "foreign"),
    ("DeleteQuota", "DELETE", "/outcrop/v1/quotas/{account}/anthropic.claude-3-haiku-20240307-v1:0", None, "operator"),
    ("GetUsage", "GET", "/outcrop/v1/usage", None, "own"),
    ("GetUsage", "GET", "/outcrop/v1/usage?AccountId={account}", None, "operator"),
    # knowledge bases: B's admin is told A's do not exist; B's own never show A's
    ("CreateKnowledgeBase", "PUT", "/knowledgebases/", {"name": "{new}", "roleArn": ROLE, "knowledgeBaseConfiguration": KB_CONFIG}, "own"),
    ("ListKnowledgeBases", "POST", "/knowledgebases/", {}, "own"),
    ("GetKnowledgeBase", "GET", "/knowledgebases/{kb}", None, "foreign"),
    ("UpdateKnowledgeBase", "PUT", "/knowledgebases/{kb}", {"name": "stolen", "roleArn": ROLE, "knowledgeBaseConfiguration": KB_CONFIG}, "foreign"),
    ("CreateDataSource", "PUT", "/knowledgebases/{kb}/datasources/", {"name": "stolen", "dataSourceConfiguration": {"type": "CUSTOM"}}, "foreign"),
    ("ListDataSources", "POST", "/knowledgebases/{kb}/datasources/", {}, "foreign"),
    ("GetDataSource", "GET", "/knowledgebases/{kb}/datasources/{ds}", None, "foreign"),
    ("UpdateDataSource", "PUT", "/knowledgebases/{kb}/datasources/{ds}", {"name": "stolen", "dataSourceConfiguration": {"type": "CUSTOM"}}, "foreign"),
    ("StartIngestionJob", "PUT", "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/", {}, "foreign"),
    ("ListIngestionJobs", "POST", "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/", {}, "foreign"),
    ("GetIngestionJob", "GET", "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}", None, "foreign"),
    ("StopIngestionJob", "POST", "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}/stop", None, "foreign"),
    ("IngestKnowledgeBaseDocuments", "PUT", "/knowledgebases/{kb}/datasources/{ds}/documents", {"documents": [KB_DOC]}, "foreign"),
    ("ListKnowledgeBaseDocuments", "POST", "/knowledgebases/{kb}/datasources/{ds}/documents", {}, "foreign"),
    ("GetKnowledgeBaseDocuments", "POST", "/knowledgebases/{kb}/datasources/{ds}/documents/getDocuments", {"documentIdentifiers": [KB_DOC_ID]}, "foreign"),
    ("DeleteKnowledgeBaseDocuments", "POST", "/knowledgebases/{kb}/datasources/{ds}/documents/deleteDocuments", {"documentIdentifiers": [KB_DOC_ID]}, "foreign"),
    ("Retrieve", "POST", "/knowledgebases/{kb}/retrieve", {"retrievalQuery": {"text": "secret"}}, "foreign"),
    ("RetrieveAndGenerate", "POST", "/retrieveAndGenerate", {"input": {"text": "secret?"}, "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": "{kb}", "modelArn": "anthropic.claude-3-haiku-20240307-v1:0"}}}, "foreign"),
    ("RetrieveAndGenerateStream", "POST", "/retrieveAndGenerateStream", {"input": {"text": "secret?"}, "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": "{kb}", "modelArn": "anthropic.claude-3-haiku-20240307-v1:0"}}}, "foreign"),
    ("Rerank", "POST", "/rerank", {"queries": [{"type": "TEXT", "textQuery": {"text": "q"}}], "sources": [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": "d"}}}], "rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "amazon.rerank-v1:0"}}}}, "shared"),
    # guardrails: B is told A's do not exist, cannot apply them, tag them or see their tags
    ("CreateGuardrail", "POST", "/guardrails", {"name": "{new}", "wordPolicyConfig": {"wordsConfig": [{"text": "x"}]}, "blockedInputMessaging": "x", "blockedOutputsMessaging": "x"}, "own"),
    ("ListGuardrails", "GET", "/guardrails", None, "own"),
    ("ListGuardrails", "GET", "/guardrails?guardrailIdentifier={guardrail}", None, "foreign"),
    ("GetGuardrail", "GET", "/guardrails/{guardrail}", None, "foreign"),
    ("UpdateGuardrail", "PUT", "/guardrails/{guardrail}", {"name": "stolen", "wordPolicyConfig": {"wordsConfig": [{"text": "x"}]}, "blockedInputMessaging": "x", "blockedOutputsMessaging": "x"}, "foreign"),
    ("CreateGuardrailVersion", "POST", "/guardrails/{guardrail}", {}, "foreign"),
    ("ApplyGuardrail", "POST", "/guardrail/{guardrail}/version/DRAFT/apply", {"source": "INPUT", "content": [{"text": {"text": "secret"}}]}, "foreign"),
    ("TagResource", "POST", "/tagResource", {"resourceARN": "{guardrail_arn}", "tags": [{"key": "k", "value": "v"}]}, "foreign"),
    ("ListTagsForResource", "POST", "/listTagsForResource", {"resourceARN": "{guardrail_arn}"}, "foreign"),
    ("UntagResource", "POST", "/untagResource", {"resourceARN": "{guardrail_arn}", "tagKeys": ["team"]}, "foreign"),
    ("DeleteGuardrail", "DELETE", "/guardrails/{guardrail}", None, "foreign"),
    # customization: B cannot see, stop or delete A's jobs and models, nor invoke them
    ("CreateModelCustomizationJob", "POST", "/model-customization-jobs", {"jobName": "{new}", "customModelName": "{new}", "roleArn": ROLE, "baseModelIdentifier": "huggingface.smollm2-135m-instruct-v1:0", "hyperParameters": {"maxSteps": "1", "batchSize": "1"}, "trainingDataConfig": {"s3Uri": "{train_uri}"}, "outputDataConfig": {"s3Uri": "{out_uri}"}}, "own"),
    ("ListModelCustomizationJobs", "GET", "/model-customization-jobs", None, "own"),
    ("GetModelCustomizationJob", "GET", "/model-customization-jobs/{ft_job}", None, "foreign"),
    ("StopModelCustomizationJob", "POST", "/model-customization-jobs/{ft_job}/stop", None, "foreign"),
    ("ListCustomModels", "GET", "/custom-models", None, "own"),
    ("GetCustomModel", "GET", "/custom-models/{custom_model}", None, "foreign"),
    ("Converse", "POST", "/model/{custom_model_arn_q}/converse", {"messages": MSGS, "inferenceConfig": {"maxTokens": 1}}, "foreign"),
    ("CreateModelImportJob", "POST", "/model-import-jobs", {"jobName": "{new}", "importedModelName": "{new}", "roleArn": ROLE, "modelDataSource": {"s3DataSource": {"s3Uri": "{gguf_uri}"}}}, "own"),
    ("ListModelImportJobs", "GET", "/model-import-jobs", None, "own"),
    ("GetModelImportJob", "GET", "/model-import-jobs/{import_job}", None, "foreign"),
    ("ListImportedModels", "GET", "/imported-models", None, "own"),
    ("GetImportedModel", "GET", "/imported-models/{imported_model}", None, "foreign"),
    ("DeleteImportedModel", "DELETE", "/imported-models/{imported_model}", None, "foreign"),
    ("CreateProvisionedModelThroughput", "POST", "/provisioned-model-throughput", {"provisionedModelName": "{new}", "modelUnits": 1, "modelId": "huggingface.smollm2-135m-instruct-v1:0"}, "own"),
    ("ListProvisionedModelThroughputs", "GET", "/provisioned-model-throughputs", None, "own"),
    ("GetProvisionedModelThroughput", "GET", "/provisioned-model-throughput/{provisioned}", None, "foreign"),
    ("UpdateProvisionedModelThroughput", "PATCH", "/provisioned-model-throughput/{provisioned}", {"desiredProvisionedModelName": "stolen"}, "foreign"),
    ("DeleteProvisionedModelThroughput", "DELETE", "/provisioned-model-throughput/{provisioned}", None, "foreign"),
    # batch inference and async invoke: B is told A's jobs and invocations do not exist, cannot stop them
    ("CreateModelInvocationJob", "POST", "/model-invocation-job", BATCH_JOB, "own"),
    ("ListModelInvocationJobs", "GET", "/model-invocation-jobs", None, "own"),
    ("GetModelInvocationJob", "GET", "/model-invocation-job/{batch}", None, "foreign"),
    ("StopModelInvocationJob", "POST", "/model-invocation-job/{batch}/stop", None, "foreign"),
    ("StartAsyncInvoke", "POST", "/async-invoke", ASYNC_CALL, "own"),
    ("ListAsyncInvokes", "GET", "/async-invoke", None, "own"),
    ("GetAsyncInvoke", "GET", "/async-invoke/{async_arn_q}", None, "foreign"),
    # tags on jobs and models: B can neither tag A's nor read their tags
    ("TagResource", "POST", "/tagResource", {"resourceARN": "{custom_model_arn}", "tags": [{"key": "k", "value": "v"}]}, "foreign"),
    ("ListTagsForResource", "POST", "/listTagsForResource", {"resourceARN": "{batch_arn}"}, "foreign"),
    ("UntagResource", "POST", "/untagResource", {"resourceARN": "{batch_arn}", "tagKeys": ["team"]}, "foreign"),
    ("DeleteCustomModel", "DELETE", "/custom-models/{custom_model}", None, "foreign"),
    ("DeleteDataSource", "DELETE", "/knowledgebases/{kb}/datasources/{ds}", None, "foreign"),
    ("DeleteKnowledgeBase", "DELETE", "/knowledgebases/{kb}", None, "foreign"),
]
IDS = [f"{op}:{method}:{path}" for op, method, path, _, _ in OPERATIONS]


def _fill(value: Any, names: dict[str, str]) -> Any:
    text = json.dumps(value) if not isinstance(value, str) else value
    for key, name in names.items():
        text = text.replace("{" + key + "}", name)
    return json.loads(text) if not isinstance(value, str) else text


def call(who: Principal, method: str, path: str, body: Any, agent: str | None = None) -> httpx.Response:
    extra = {"User-Agent": agent} if agent else {}
    if method == "KMS":
        return who.call("POST", "/", body, service="kms", headers={
            "X-Amz-Target": f"TrentService.{path}", "Content-Type": "application/x-amz-json-1.1", **extra})
    if method == "CLOUDTRAIL":
        return who.call("POST", "/", body, service="cloudtrail", headers={
            "X-Amz-Target": f"com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.{path}",
            "Content-Type": "application/x-amz-json-1.1", **extra})
    if path.startswith("/v1/"):
        headers = {"Authorization": f"Bearer {who.api_key}", **extra}
        if body == "upload":
            return httpx.post(who.endpoint + path, headers=headers, timeout=300, data={"purpose": "batch"},
                              files={"file": ("b.jsonl", b'{"b": 1}\n')})
        return httpx.request(method, who.endpoint + path, headers=headers, json=body, timeout=300)
    return who.call(method, path, body, headers=extra)


@pytest.fixture(scope="module")
def world(server, file_root) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Account A with one of everything; account B's admin; A's user with no policy at all."""
    a, b = new_account(server, "tenant-a"), new_account(server, "tenant-b")
    tag = uuid.uuid4().hex[:6]
    names = {"user": f"alice-{tag}", "role": f"robot-{tag}", "new": f"fresh-{tag}"}
    a.ok("POST", "/outcrop/v1/users", {"UserName": names["user"]})
    a.ok("POST", "/outcrop/v1/roles", {"RoleName": names["role"]})
    names["access_key"] = a.ok("POST", "/outcrop/v1/access-keys", {"UserName": names["user"]})["AccessKey"]["AccessKeyId"]
    names["api_key"] = a.ok("POST", "/outcrop/v1/api-keys", {"UserName": names["user"]})[
        "ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    names["policy"] = a.ok("POST", "/outcrop/v1/policies", {"PolicyName": f"pol-{tag}", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}]}})[
        "Policy"]["Arn"]
    a.ok("POST", f"/outcrop/v1/users/{names['user']}/policies", {"PolicyArn": names["policy"]})
    a.ok("POST", f"/outcrop/v1/roles/{names['role']}/policies", {"PolicyArn": names["policy"]})
    names["cmk"] = a.client("kms").create_key(Description="a's key")["KeyMetadata"]["Arn"]
    upload = httpx.post(f"{a.endpoint}/v1/files", headers={"Authorization": f"Bearer {a.api_key}"},
                        data={"purpose": "batch"}, files={"file": ("a.jsonl", b'{"a": 1}\n')})
    names["file"] = upload.json()["id"]
    names["account"] = a.ok("GET", "/outcrop/v1/account")["Account"]["AccountId"]
    names["kb"] = a.ok("PUT", "/knowledgebases/", {"name": f"kb-{tag}", "roleArn": ROLE,
                                                  "knowledgeBaseConfiguration": KB_CONFIG})["knowledgeBase"]["knowledgeBaseId"]
    names["ds"] = a.ok("PUT", f"/knowledgebases/{names['kb']}/datasources/", {
        "name": "notes", "dataSourceConfiguration": {"type": "CUSTOM"}})["dataSource"]["dataSourceId"]
    a.ok("PUT", f"/knowledgebases/{names['kb']}/datasources/{names['ds']}/documents", {"documents": [KB_DOC]})
    names["job"] = a.ok("PUT", f"/knowledgebases/{names['kb']}/datasources/{names['ds']}/ingestionjobs/", {})[
        "ingestionJob"]["ingestionJobId"]
    guardrail = a.ok("POST", "/guardrails", {"name": f"gr-{tag}", "wordPolicyConfig": {"wordsConfig": [{"text": "launch"}]},
                                            "blockedInputMessaging": "no", "blockedOutputsMessaging": "no",
                                            "tags": [{"key": "team", "value": "a"}]})
    names["guardrail"], names["guardrail_arn"] = guardrail["guardrailId"], guardrail["guardrailArn"]
    customization_of(a, names, file_root, tag)
    batch_of(a, names, file_root, tag)
    nobody = a.new_user(f"nobody-{tag}")
    return {"a": a, "b": b, "nobody": nobody, "names": names,
            "b_account": b.ok("GET", "/outcrop/v1/account")["Account"]["AccountId"]}


def customization_of(a: Principal, names: dict[str, str], file_root: Path, tag: str) -> None:
    """A's fine-tuned model (one training step), an imported model and a provisioned throughput."""
    folder = file_root / f"isolation-{tag}"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"prompt": f"Say {i}", "completion": str(i)}) + "\n"
                                                for i in range(8)))
    write_tiny_gguf(folder / "model" / "tiny.gguf")
    names.update(train_uri=(folder / "train.jsonl").as_uri(), out_uri=(folder / "out").as_uri() + "/",
                 gguf_uri=(folder / "model").as_uri())
    job = a.ok("POST", "/model-customization-jobs", {
        "jobName": f"ft-{tag}", "customModelName": f"cm-{tag}", "roleArn": ROLE,
        "baseModelIdentifier": "huggingface.smollm2-135m-instruct-v1:0",
        "hyperParameters": {"maxSteps": "1", "batchSize": "1"}, "trainingDataConfig": {"s3Uri": names["train_uri"]},
        "outputDataConfig": {"s3Uri": names["out_uri"]}})["jobArn"]
    names["ft_job"] = job.rsplit("/", 1)[-1]
    deadline = time.monotonic() + 300
    while (done := a.ok("GET", f"/model-customization-jobs/{names['ft_job']}"))["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert done["status"] == "Completed", done
    names["custom_model_arn"] = done["outputModelArn"]
    names["custom_model"] = done["outputModelArn"].rsplit("/", 1)[-1]
    names["custom_model_arn_q"] = quote(done["outputModelArn"], safe="")
    imported = a.ok("POST", "/model-import-jobs", {"jobName": f"imp-{tag}", "importedModelName": f"im-{tag}",
                                                   "roleArn": ROLE, "modelDataSource": {"s3DataSource": {
                                                       "s3Uri": names["gguf_uri"]}}})["jobArn"]
    names["import_job"] = imported.rsplit("/", 1)[-1]
    while (done := a.ok("GET", f"/model-import-jobs/{names['import_job']}"))["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    names["imported_model"] = done["importedModelArn"].rsplit("/", 1)[-1]
    names["provisioned"] = a.ok("POST", "/provisioned-model-throughput", {
        "provisionedModelName": f"pt-{tag}", "modelUnits": 1, "modelId": names["custom_model_arn"]})[
        "provisionedModelArn"].rsplit("/", 1)[-1]


def batch_of(a: Principal, names: dict[str, str], file_root: Path, tag: str) -> None:
    """A's batch job (one record) and async invoke; B's own calls use the same folder."""
    folder = file_root / f"batch-isolation-{tag}"
    folder.mkdir()
    (folder / "in.jsonl").write_text(json.dumps({"recordId": "A1", "modelInput": BATCH_BODY}) + "\n")
    names["batch_uri"] = folder.as_uri()
    job = {**_fill(BATCH_JOB, names), "jobName": f"batch-{tag}",
           "inputDataConfig": {"s3InputDataConfig": {"s3Uri": (folder / "in.jsonl").as_uri()}}}
    names["batch_arn"] = a.ok("POST", "/model-invocation-job", job)["jobArn"]
    names["batch"] = names["batch_arn"].rsplit("/", 1)[-1]
    arn = a.ok("POST", "/async-invoke", _fill(ASYNC_CALL, names))["invocationArn"]
    names["async"], names["async_arn_q"] = arn.rsplit("/", 1)[-1], quote(arn, safe="")


def write_tiny_gguf(path: Path) -> None:
    """A GGUF file holding only metadata: importable (the header is what the import reads), never served."""
    import gguf

    path.parent.mkdir(parents=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_every_route_is_in_the_matrix(server):
    from outcrop.server.app import create_app
    from outcrop.server.cloudtrail.routes import HANDLERS as TRAIL_HANDLERS
    from outcrop.server.kms.routes import HANDLERS
    from outcrop.settings import Settings

    app = create_app(Settings(home=server.home))
    routes = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    called = [(method, path.split("?")[0].replace("{", "").replace("}", "")) for _, method, path, _, _ in OPERATIONS]
    covered = {(m, p) for m, p in routes
               if any(m == method and _template(p).match(path) for method, path in called)}
    assert routes - covered == set(), f"routes missing from the isolation matrix: {sorted(routes - covered)}"
    assert set(HANDLERS) <= {path for _, method, path, _, _ in OPERATIONS if method == "KMS"}
    assert set(TRAIL_HANDLERS) <= {path for _, method, path, _, _ in OPERATIONS if method == "CLOUDTRAIL"}
    assert {op for op, *_ in OPERATIONS} == set(IAM_ACTIONS)


def _template(openapi_path: str) -> re.Pattern[str]:
    """/users/{name}/policies → a regex matching a concrete path (a parameter may span slashes: ARNs)."""
    return re.compile("^" + ".+".join(re.escape(part) for part in re.split(r"\{[^}]+\}", openapi_path)) + "$")


@pytest.mark.parametrize("operation,method,path,body,kind", OPERATIONS, ids=IDS)
def test_other_account_cannot_reach(world, operation, method, path, body, kind):
    names = world["names"]
    response = call(world["b"], method, _fill(path, names), _fill(body, names) if body is not None else None)
    if kind == "foreign":
        expected = 400 if method in ("KMS", "CLOUDTRAIL") else 404
        assert response.status_code == expected, response.text
        code = response.json().get("__type") if method in ("KMS", "CLOUDTRAIL") else response.headers.get("x-amzn-ErrorType", "")
        assert "NotFound" in (code or "") or response.status_code == 404
    elif kind == "operator":
        assert response.status_code == 403, response.text
    elif kind == "trail":
        assert response.status_code == 200, response.text
        events = [json.loads(e["CloudTrailEvent"]) if "CloudTrailEvent" in e else e for e in response.json()["Events"]]
        assert events and {e["recipientAccountId"] for e in events} == {world["b_account"]}
    else:
        assert response.status_code < 300, response.text
        for resource in ("user", "role", "access_key", "api_key", "file", "cmk", "account", "policy", "kb", "ds",
                         "guardrail", "ft_job", "custom_model", "import_job", "imported_model", "provisioned",
                         "batch", "async"):
            assert names[resource] not in response.text, f"{operation} showed account A's {resource}"


def test_account_a_resources_survive_b(world):
    """After B's every attempt (deletes included), A's things are all still there and unchanged."""
    a, names = world["a"], world["names"]
    assert a.ok("GET", f"/outcrop/v1/users/{names['user']}")["User"]["UserName"] == names["user"]
    keys = a.ok("GET", f"/outcrop/v1/access-keys?UserName={names['user']}")["AccessKeyMetadata"]
    assert [k["Status"] for k in keys if k["AccessKeyId"] == names["access_key"]] == ["Active"]
    content = httpx.get(f"{a.endpoint}/v1/files/{names['file']}/content", headers={"Authorization": f"Bearer {a.api_key}"})
    assert content.status_code == 200 and content.content == b'{"a": 1}\n'
    assert a.client("kms").describe_key(KeyId=names["cmk"])["KeyMetadata"]["KeyState"] == "Enabled"
    hits = a.ok("POST", f"/knowledgebases/{names['kb']}/retrieve", {"retrievalQuery": {"text": "launch code"}})
    assert [r["content"]["text"] for r in hits["retrievalResults"]] == ["Tenant A's launch code is 7731."]
    guarded = a.ok("POST", f"/guardrail/{names['guardrail']}/version/DRAFT/apply",
                   {"source": "INPUT", "content": [{"text": {"text": "the launch code"}}]})
    assert guarded["action"] == "GUARDRAIL_INTERVENED"
    assert a.ok("POST", "/listTagsForResource", {"resourceARN": names["guardrail_arn"]})["tags"] == [
        {"key": "team", "value": "a"}]
    assert a.ok("GET", f"/custom-models/{names['custom_model']}")["modelStatus"] == "Active"
    assert a.ok("GET", f"/imported-models/{names['imported_model']}")["modelArchitecture"] == "llama"
    assert a.ok("GET", f"/provisioned-model-throughput/{names['provisioned']}")["provisionedModelName"].startswith("pt-")
    assert a.ok("GET", f"/model-customization-jobs/{names['ft_job']}")["status"] == "Completed"
    assert a.ok("GET", f"/model-invocation-job/{names['batch']}")["status"] not in ("Stopping", "Stopped")
    assert a.ok("GET", f"/async-invoke/{names['async_arn_q']}")["status"] in ("InProgress", "Completed")


@pytest.mark.parametrize("operation,method,path,body,kind", OPERATIONS, ids=IDS)
def test_principal_without_policy_is_denied(world, operation, method, path, body, kind):
    names = world["names"]
    response = call(world["nobody"], method, _fill(path, names), _fill(body, names) if body is not None else None)
    if method in ("KMS", "CLOUDTRAIL"):
        assert response.status_code == 400 and response.json()["__type"] == "AccessDeniedException", response.text
    elif path.startswith("/v1/"):
        assert response.status_code == 403, response.text
    else:
        assert response.status_code == 403 and response.headers["x-amzn-ErrorType"].startswith(
            "AccessDeniedException"), response.text
    assert IAM_ACTIONS[operation].split(":")[0] + ":" in response.text or kind == "operator" or "outcrop:" in response.text
