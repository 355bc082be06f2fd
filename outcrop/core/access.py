"""Authorization: every operation's IAM action, resource ARNs, and the policy check each call passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.governance import CallContext
from outcrop.core.policy import MANAGED, AccessRequest, Decision, Policy, evaluate
from outcrop.errors import AccessDenied

# Operation name (as routes declare it) → IAM action. Every route's operation must be listed here
# (tests/e2e/test_isolation.py fails on a route whose operation is missing).
OPERATIONS: dict[str, str] = {
    # bedrock-runtime; the streaming variants need their own action, as on AWS
    "Converse": "bedrock:InvokeModel",
    "ConverseStream": "bedrock:InvokeModelWithResponseStream",
    "InvokeModel": "bedrock:InvokeModel",
    "InvokeModelWithResponseStream": "bedrock:InvokeModelWithResponseStream",
    "CountTokens": "bedrock:CountTokens",
    # bedrock control plane
    "ListFoundationModels": "bedrock:ListFoundationModels",
    "GetFoundationModel": "bedrock:GetFoundationModel",
    # OpenAI surface → the equivalent Bedrock actions (a stream asks for InvokeModelWithResponseStream)
    "ListModels": "bedrock:ListFoundationModels",
    "RetrieveModel": "bedrock:GetFoundationModel",
    "CreateChatCompletion": "bedrock:InvokeModel",
    "CreateCompletion": "bedrock:InvokeModel",
    "CreateEmbedding": "bedrock:InvokeModel",
    "CreateFile": "bedrock:CreateFile",
    "ListFiles": "bedrock:ListFiles",
    "RetrieveFile": "bedrock:GetFile",
    "RetrieveFileContent": "bedrock:RetrieveFileContent",  # not a Get*: read-only policies see metadata only
    "DeleteFile": "bedrock:DeleteFile",
    # native: identity, as IAM names it
    "GetAccount": "iam:GetAccountSummary",
    "CreateUser": "iam:CreateUser", "GetUser": "iam:GetUser", "ListUsers": "iam:ListUsers",
    "DeleteUser": "iam:DeleteUser",
    "CreateRole": "iam:CreateRole", "GetRole": "iam:GetRole", "ListRoles": "iam:ListRoles",
    "DeleteRole": "iam:DeleteRole",
    "CreateAccessKey": "iam:CreateAccessKey", "ListAccessKeys": "iam:ListAccessKeys",
    "UpdateAccessKey": "iam:UpdateAccessKey", "DeleteAccessKey": "iam:DeleteAccessKey",
    "RotateAccessKey": "iam:CreateAccessKey",
    # Bedrock long-term API keys are IAM service-specific credentials on AWS
    "CreateServiceSpecificCredential": "iam:CreateServiceSpecificCredential",
    "ListServiceSpecificCredentials": "iam:ListServiceSpecificCredentials",
    "UpdateServiceSpecificCredential": "iam:UpdateServiceSpecificCredential",
    "DeleteServiceSpecificCredential": "iam:DeleteServiceSpecificCredential",
    "CreatePolicy": "iam:CreatePolicy", "GetPolicy": "iam:GetPolicy", "ListPolicies": "iam:ListPolicies",
    "DeletePolicy": "iam:DeletePolicy",
    "AttachPolicy": "iam:AttachUserPolicy", "DetachPolicy": "iam:DetachUserPolicy",
    "ListAttachedPolicies": "iam:ListAttachedUserPolicies",
    # KMS-style customer-managed keys
    "CreateKey": "kms:CreateKey", "DescribeKey": "kms:DescribeKey", "ListKeys": "kms:ListKeys",
    "EnableKey": "kms:EnableKey", "DisableKey": "kms:DisableKey",
    "ScheduleKeyDeletion": "kms:ScheduleKeyDeletion", "CancelKeyDeletion": "kms:CancelKeyDeletion",
    # the service operator's own operations (never granted by a policy)
    "CreateAccount": "outcrop:CreateAccount", "ListAccounts": "outcrop:ListAccounts",
    "UpdateAccount": "outcrop:UpdateAccount",
    "PutQuota": "outcrop:PutQuota", "DeleteQuota": "outcrop:DeleteQuota",
    # quotas as an account sees its own (Service Quotas), usage, the audit trail, invocation logging
    "ListQuotas": "servicequotas:ListServiceQuotas",
    "GetUsage": "bedrock:GetUsage",
    "LookupEvents": "cloudtrail:LookupEvents",
    "VerifyTrail": "cloudtrail:ValidateTrail",
    "PutModelInvocationLoggingConfiguration": "bedrock:PutModelInvocationLoggingConfiguration",
    "GetModelInvocationLoggingConfiguration": "bedrock:GetModelInvocationLoggingConfiguration",
    "DeleteModelInvocationLoggingConfiguration": "bedrock:DeleteModelInvocationLoggingConfiguration",
    "ListInvocationLogs": "bedrock:ListInvocationLogs",
    # knowledge bases (bedrock-agent) and retrieval (bedrock-agent-runtime); data-source actions name the KB
    "CreateKnowledgeBase": "bedrock:CreateKnowledgeBase", "GetKnowledgeBase": "bedrock:GetKnowledgeBase",
    "ListKnowledgeBases": "bedrock:ListKnowledgeBases", "UpdateKnowledgeBase": "bedrock:UpdateKnowledgeBase",
    "DeleteKnowledgeBase": "bedrock:DeleteKnowledgeBase", "CreateDataSource": "bedrock:CreateDataSource",
    "GetDataSource": "bedrock:GetDataSource", "ListDataSources": "bedrock:ListDataSources",
    "UpdateDataSource": "bedrock:UpdateDataSource", "DeleteDataSource": "bedrock:DeleteDataSource",
    "StartIngestionJob": "bedrock:StartIngestionJob", "GetIngestionJob": "bedrock:GetIngestionJob",
    "ListIngestionJobs": "bedrock:ListIngestionJobs", "StopIngestionJob": "bedrock:StopIngestionJob",
    "IngestKnowledgeBaseDocuments": "bedrock:IngestKnowledgeBaseDocuments",
    "GetKnowledgeBaseDocuments": "bedrock:GetKnowledgeBaseDocuments",
    "ListKnowledgeBaseDocuments": "bedrock:ListKnowledgeBaseDocuments",
    "DeleteKnowledgeBaseDocuments": "bedrock:DeleteKnowledgeBaseDocuments", "Retrieve": "bedrock:Retrieve",
    "RetrieveAndGenerate": "bedrock:RetrieveAndGenerate", "Rerank": "bedrock:Rerank",
    "RetrieveAndGenerateStream": "bedrock:RetrieveAndGenerate",
    # guardrails (bedrock) and ApplyGuardrail (bedrock-runtime; also required of a guarded model call)
    "CreateGuardrail": "bedrock:CreateGuardrail", "GetGuardrail": "bedrock:GetGuardrail",
    "ListGuardrails": "bedrock:ListGuardrails", "UpdateGuardrail": "bedrock:UpdateGuardrail",
    "DeleteGuardrail": "bedrock:DeleteGuardrail", "CreateGuardrailVersion": "bedrock:CreateGuardrailVersion",
    "ApplyGuardrail": "bedrock:ApplyGuardrail", "TagResource": "bedrock:TagResource",
    "UntagResource": "bedrock:UntagResource", "ListTagsForResource": "bedrock:ListTagsForResource",
    # customization, custom and imported models, provisioned throughput, batch and async inference
    "CreateModelCustomizationJob": "bedrock:CreateModelCustomizationJob",
    "GetModelCustomizationJob": "bedrock:GetModelCustomizationJob",
    "ListModelCustomizationJobs": "bedrock:ListModelCustomizationJobs",
    "StopModelCustomizationJob": "bedrock:StopModelCustomizationJob", "GetCustomModel": "bedrock:GetCustomModel",
    "ListCustomModels": "bedrock:ListCustomModels", "DeleteCustomModel": "bedrock:DeleteCustomModel",
    "CreateModelImportJob": "bedrock:CreateModelImportJob", "GetModelImportJob": "bedrock:GetModelImportJob",
    "ListModelImportJobs": "bedrock:ListModelImportJobs", "GetImportedModel": "bedrock:GetImportedModel",
    "ListImportedModels": "bedrock:ListImportedModels", "DeleteImportedModel": "bedrock:DeleteImportedModel",
    "CreateProvisionedModelThroughput": "bedrock:CreateProvisionedModelThroughput",
    "GetProvisionedModelThroughput": "bedrock:GetProvisionedModelThroughput",
    "ListProvisionedModelThroughputs": "bedrock:ListProvisionedModelThroughputs",
    "UpdateProvisionedModelThroughput": "bedrock:UpdateProvisionedModelThroughput",
    "DeleteProvisionedModelThroughput": "bedrock:DeleteProvisionedModelThroughput",
    "CreateModelInvocationJob": "bedrock:CreateModelInvocationJob",
    "GetModelInvocationJob": "bedrock:GetModelInvocationJob",
    "ListModelInvocationJobs": "bedrock:ListModelInvocationJobs",
    "StopModelInvocationJob": "bedrock:StopModelInvocationJob", "StartAsyncInvoke": "bedrock:StartAsyncInvoke",
    "GetAsyncInvoke": "bedrock:GetAsyncInvoke", "ListAsyncInvokes": "bedrock:ListAsyncInvokes",
}
# Role and user variants of the attach family share one route; the action follows the principal kind.
_ROLE_ACTIONS = {"iam:AttachUserPolicy": "iam:AttachRolePolicy", "iam:DetachUserPolicy": "iam:DetachRolePolicy",
                 "iam:ListAttachedUserPolicies": "iam:ListAttachedRolePolicies"}
STREAM_ACTION = "bedrock:InvokeModelWithResponseStream"
BEARER_ACTION = "bedrock:CallWithBearerToken"  # AWS requires it of every call made with a Bedrock API key


def model_arn(region: str, model_id: str) -> str:
    if model_id.startswith("arn:"):
        return model_id
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def iam_arn(account_id: str, kind: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:{kind}/{name}"


def role_variant(action: str, principal_kind: str) -> str:
    return _ROLE_ACTIONS.get(action, action) if principal_kind == "role" else action


class AccessService:
    """Evaluates the caller's policies for each call; account admins hold every action in their account."""

    def __init__(self, load_policies: Callable[[str, str], list]) -> None:  # type: ignore[type-arg]
        self._load = load_policies  # (account_id, principal_id) → [Policy]; cleared by invalidate() on any change
        self._cache: dict[str, list] = {}  # type: ignore[type-arg]
        self._lock = threading.Lock()
        self._last: tuple[CallContext | None, dict[str, object]] = (None, {})

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def require(self, ctx: CallContext, resource: str = "*", action: str | None = None) -> None:
        caller = ctx.caller
        if caller is None:  # a local operator at the CLI, with the data dir in hand
            return
        action = action or OPERATIONS[ctx.operation]
        if action.startswith("outcrop:"):
            if not caller.is_operator:
                raise AccessDenied(_message(caller.arn, action, resource, explicit=False))
            return
        if caller.is_admin:
            return
        last = self._last  # one call often needs two checks (e.g. the bearer action, then the model)
        values = last[1] if last[0] is ctx else _context(ctx)
        self._last = (ctx, values)
        decision = evaluate(self._policies(caller.account_id, caller.principal_id),
                            AccessRequest(action, resource, values))
        if decision is not Decision.ALLOW:
            raise AccessDenied(_message(caller.arn, action, resource, decision is Decision.EXPLICIT_DENY))

    def _policies(self, account_id: str, principal_id: str) -> list:  # type: ignore[type-arg]
        cached = self._cache.get(principal_id)
        if cached is None:
            cached = self._cache[principal_id] = self._load(account_id, principal_id)
        return cached


def _context(ctx: CallContext) -> dict[str, object]:
    caller = ctx.caller
    assert caller is not None
    values: dict[str, object] = {
        "aws:CurrentTime": datetime.now(UTC), "aws:EpochTime": str(int(time.time())),
        "aws:SecureTransport": ctx.secure, "aws:PrincipalArn": caller.arn,
        "aws:PrincipalAccount": caller.account_id, "aws:username": caller.principal_name,
        "aws:userid": caller.principal_id, "aws:PrincipalType": "User" if caller.kind == "user" else "AssumedRole",
        "aws:RequestedRegion": ctx.region,
    }
    if ctx.source_ip:
        values["aws:SourceIp"] = ctx.source_ip
    return values


def _message(arn: str, action: str, resource: str, explicit: bool) -> str:
    why = ("with an explicit deny in an identity-based policy" if explicit
           else f"because no identity-based policy allows the {action} action")
    return f"User: {arn} is not authorized to perform: {action} on resource: {resource} {why}"


def attached_policies(sessions: sessionmaker[Session]) -> Callable[[str, str], list]:  # type: ignore[type-arg]
    """The loader AccessService uses: the managed and customer policies attached to one principal."""
    from outcrop.storage.repositories import AccountScope
    from outcrop.storage.tables import PolicyDocument

    def load(account_id: str, principal_id: str) -> list[Policy]:
        with sessions() as session:
            scope = AccountScope(session, account_id)
            policies = []
            for arn in scope.attached(principal_id):
                if arn in MANAGED:
                    policies.append(MANAGED[arn])
                    continue
                row = scope.first(PolicyDocument, PolicyDocument.name == arn.rsplit("/", 1)[-1])
                if row is not None:
                    policies.append(Policy.parse(row.document))
            return policies

    return load
