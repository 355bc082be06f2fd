"""Shared builders for the policy unit tests."""

from outcrop.core.policy import AccessRequest, Decision, Policy, evaluate

MODEL_ARN = "arn:aws:bedrock:us-east-1::foundation-model/qwen.x-v1:0"
ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY


def policy(*statements, version="2012-10-17"):
    return Policy.parse({"Version": version, "Statement": list(statements)})


def allow(action="*", resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action="*", resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(policies, action="bedrock:InvokeModel", resource=MODEL_ARN, **context):
    if isinstance(policies, Policy):
        policies = [policies]
    return evaluate(policies, AccessRequest(action, resource, context))


def when(condition, action="bedrock:InvokeModel", resource=MODEL_ARN, **context):
    """Decision of one Allow-everything statement guarded by `condition`."""
    return decide(policy(allow(Condition=condition)), action, resource, **context)
