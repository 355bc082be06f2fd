import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from outcrop.core.policy import (
    MANAGED,
    MAX_DOCUMENT_CHARS,
    AccessRequest,
    Decision,
    MalformedPolicy,
    Policy,
    evaluate,
)
from outcrop.errors import Invalid

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


# --- actions ---

@pytest.mark.parametrize("pattern,action,expected", [
    ("bedrock:InvokeModel", "bedrock:InvokeModel", ALLOW),
    ("bedrock:Invoke*", "bedrock:InvokeModel", ALLOW),
    ("bedrock:Invoke*", "bedrock:InvokeModelWithResponseStream", ALLOW),
    ("bedrock:Invoke*", "bedrock:ListFoundationModels", IMPLICIT),
    ("bedrock:*", "bedrock:CreateGuardrail", ALLOW),
    ("bedrock:*", "iam:CreateUser", IMPLICIT),
    ("*", "iam:CreateUser", ALLOW),
    ("bedrock:InvokeMode?", "bedrock:InvokeModel", ALLOW),
    ("bedrock:InvokeMode?", "bedrock:InvokeModels", IMPLICIT),
    ("bedrock:invokemodel", "bedrock:InvokeModel", ALLOW),
    ("bedrock:InvokeModel", "BEDROCK:INVOKEMODEL", ALLOW),
    ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", IMPLICIT),
    ("bedrock:*Model", "bedrock:GetFoundationModel", ALLOW),
    ("bedrock:*Model", "bedrock:GetFoundationModels", IMPLICIT),
])
def test_action_wildcards_and_case(pattern, action, expected):
    assert decide(policy(allow(pattern)), action=action) is expected


def test_action_list_matches_any_entry():
    p = policy(allow(["bedrock:ListFoundationModels", "bedrock:Get*"]))
    assert decide(p, "bedrock:GetFoundationModel") is ALLOW
    assert decide(p, "bedrock:ListFoundationModels") is ALLOW
    assert decide(p, "bedrock:InvokeModel") is IMPLICIT


def test_action_regex_metacharacters_are_literal():
    p = policy(allow("bedrock:Invoke-Model"))
    assert decide(p, "bedrock:Invoke-Model") is ALLOW
    assert decide(p, "bedrock:InvokexModel") is IMPLICIT


def test_not_action_applies_to_everything_else():
    p = policy({"Effect": "Allow", "NotAction": ["iam:*", "kms:*"], "Resource": "*"})
    assert decide(p, "bedrock:InvokeModel") is ALLOW
    assert decide(p, "iam:CreateUser") is IMPLICIT
    assert decide(p, "KMS:Decrypt") is IMPLICIT


def test_not_action_deny_with_allow_all():
    p = policy(allow(), {"Effect": "Deny", "NotAction": "bedrock:*", "Resource": "*"})
    assert decide(p, "bedrock:InvokeModel") is ALLOW
    assert decide(p, "iam:CreateAccessKey") is DENY


# --- resources ---

@pytest.mark.parametrize("pattern,resource,expected", [
    (MODEL_ARN, MODEL_ARN, ALLOW),
    ("*", MODEL_ARN, ALLOW),
    ("*", "*", ALLOW),
    ("arn:aws:bedrock:*", MODEL_ARN, ALLOW),  # one * spans ':' and '/'
    ("arn:aws:bedrock:*:*:foundation-model/*", MODEL_ARN, ALLOW),
    ("arn:aws:bedrock:us-east-1::foundation-model/qwen.*", MODEL_ARN, ALLOW),
    ("arn:aws:bedrock:*/qwen.x-v1:0", MODEL_ARN, ALLOW),
    ("arn:aws:bedrock:us-west-2::foundation-model/*", MODEL_ARN, IMPLICIT),
    ("arn:aws:bedrock:us-east-?::foundation-model/qwen.x-v1:0", MODEL_ARN, ALLOW),
    ("arn:aws:bedrock:us-east-1::foundation-model/QWEN.x-v1:0", MODEL_ARN, IMPLICIT),  # case-sensitive
    ("arn:aws:bedrock:*", "*", IMPLICIT),
    ("arn:aws:bedrock:us-east-1::foundation-model/qwen.x-v1", MODEL_ARN, IMPLICIT),  # whole string must match
])
def test_resource_wildcards(pattern, resource, expected):
    assert decide(policy(allow(resource=pattern)), resource=resource) is expected


def test_resource_list_and_dots_are_literal():
    p = policy(allow(resource=["arn:aws:bedrock:us-east-1::foundation-model/a.b", MODEL_ARN]))
    assert decide(p) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:us-east-1::foundation-model/axb") is IMPLICIT


def test_not_resource():
    p = policy({"Effect": "Allow", "Action": "bedrock:*", "NotResource": "arn:aws:bedrock:*:*:guardrail/*"})
    assert decide(p) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:us-east-1:123456789012:guardrail/abc") is IMPLICIT


def test_not_resource_deny():
    p = policy(allow(), {"Effect": "Deny", "Action": "*", "NotResource": MODEL_ARN})
    assert decide(p) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:us-east-1::foundation-model/other") is DENY


# --- evaluation logic ---

def test_explicit_deny_in_another_policy_beats_allow():
    allow_all = policy(allow())
    deny_invoke = policy(deny("bedrock:InvokeModel"))
    assert decide([allow_all, deny_invoke]) is DENY
    assert decide([deny_invoke, allow_all]) is DENY
    assert decide([allow_all, deny_invoke], "bedrock:ListFoundationModels", "*") is ALLOW


def test_implicit_deny_when_nothing_matches():
    assert decide(policy(allow("iam:*"))) is IMPLICIT
    assert decide([]) is IMPLICIT
    assert decide(policy(deny("iam:*"))) is IMPLICIT


def test_deny_with_false_condition_does_not_apply():
    p = policy(allow(), deny(Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert decide(p, **{"aws:SecureTransport": True}) is ALLOW
    assert decide(p, **{"aws:SecureTransport": False}) is DENY


# --- string conditions ---

def test_string_equals_and_not_equals():
    cond = {"StringEquals": {"aws:username": ["alice", "bob"]}}
    assert when(cond, **{"aws:username": "bob"}) is ALLOW
    assert when(cond, **{"aws:username": "Bob"}) is IMPLICIT
    assert when(cond) is IMPLICIT  # key absent
    neg = {"StringNotEquals": {"aws:username": ["alice", "bob"]}}
    assert when(neg, **{"aws:username": "carol"}) is ALLOW
    assert when(neg, **{"aws:username": "alice"}) is IMPLICIT


def test_string_equals_treats_wildcards_literally():
    cond = {"StringEquals": {"aws:username": "a*"}}
    assert when(cond, **{"aws:username": "a*"}) is ALLOW
    assert when(cond, **{"aws:username": "ab"}) is IMPLICIT


def test_string_ignore_case():
    cond = {"StringEqualsIgnoreCase": {"aws:RequestedRegion": "US-EAST-1"}}
    assert when(cond, **{"aws:RequestedRegion": "us-east-1"}) is ALLOW
    assert when(cond, **{"aws:RequestedRegion": "us-west-2"}) is IMPLICIT
    neg = {"StringNotEqualsIgnoreCase": {"aws:RequestedRegion": "US-EAST-1"}}
    assert when(neg, **{"aws:RequestedRegion": "Us-East-1"}) is IMPLICIT
    assert when(neg, **{"aws:RequestedRegion": "eu-west-1"}) is ALLOW


def test_string_like_on_principal_arn():
    cond = {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/team-?/*"}}
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/team-a/alice"}) is ALLOW
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/team-ab/alice"}) is IMPLICIT
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::999999999999:user/team-a/alice"}) is IMPLICIT
    neg = {"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}}
    assert when(neg, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/a"}) is ALLOW
    assert when(neg, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:root"}) is IMPLICIT


def test_condition_key_names_are_case_insensitive():
    cond = {"StringEquals": {"AWS:USERNAME": "alice"}}
    assert when(cond, **{"aws:username": "alice"}) is ALLOW
    assert when({"StringEquals": {"aws:username": "alice"}}, **{"Aws:UserName": "alice"}) is ALLOW


def test_operators_and_keys_are_anded_values_ored():
    cond = {
        "StringEquals": {"aws:username": ["alice", "bob"], "aws:PrincipalAccount": "123456789012"},
        "Bool": {"aws:SecureTransport": True},
    }
    ctx = {"aws:username": "alice", "aws:PrincipalAccount": "123456789012", "aws:SecureTransport": True}
    assert when(cond, **ctx) is ALLOW
    assert when(cond, **{**ctx, "aws:PrincipalAccount": "000000000000"}) is IMPLICIT
    assert when(cond, **{**ctx, "aws:SecureTransport": False}) is IMPLICIT
    assert when(cond, **{**ctx, "aws:username": "eve"}) is IMPLICIT


# --- numeric, date, bool ---

@pytest.mark.parametrize("op,bound,value,expected", [
    ("NumericEquals", "10", 10, ALLOW),
    ("NumericEquals", 10, "10", ALLOW),
    ("NumericEquals", "10", 11, IMPLICIT),
    ("NumericNotEquals", "10", 11, ALLOW),
    ("NumericNotEquals", "10", 10, IMPLICIT),
    ("NumericLessThan", "10", 9.5, ALLOW),
    ("NumericLessThan", "10", 10, IMPLICIT),
    ("NumericLessThanEquals", "10", 10, ALLOW),
    ("NumericLessThanEquals", "10", 11, IMPLICIT),
    ("NumericGreaterThan", "-1.5", 0, ALLOW),
    ("NumericGreaterThan", "10", 10, IMPLICIT),
    ("NumericGreaterThanEquals", "10", 10, ALLOW),
    ("NumericGreaterThanEquals", "10", "9", IMPLICIT),
    ("NumericEquals", "10", "ten", IMPLICIT),
])
def test_numeric_operators(op, bound, value, expected):
    assert when({op: {"bedrock:MaxTokens": bound}}, **{"bedrock:MaxTokens": value}) is expected


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("op,bound,expected", [
    ("DateLessThan", "2025-12-31T00:00:00Z", ALLOW),
    ("DateLessThan", "2025-01-01T00:00:00Z", IMPLICIT),
    ("DateLessThan", "2025-06-01T12:00:00Z", IMPLICIT),
    ("DateLessThanEquals", "2025-06-01T12:00:00Z", ALLOW),
    ("DateGreaterThan", "2025-01-01", ALLOW),
    ("DateGreaterThan", "2026-01-01", IMPLICIT),
    ("DateGreaterThanEquals", "2025-06-01T14:00:00+02:00", ALLOW),  # same instant, other zone
    ("DateEquals", "2025-06-01T12:00:00Z", ALLOW),
    ("DateEquals", int(NOW.timestamp()), ALLOW),  # epoch seconds
    ("DateEquals", str(int(NOW.timestamp())), ALLOW),
    ("DateNotEquals", "2025-06-01T12:00:00Z", IMPLICIT),
    ("DateNotEquals", "2025-06-01T12:00:01Z", ALLOW),
])
def test_date_operators_on_current_time(op, bound, expected):
    assert when({op: {"aws:CurrentTime": bound}}, **{"aws:CurrentTime": NOW}) is expected


def test_date_context_may_be_text_or_epoch_and_other_zones():
    cond = {"DateLessThan": {"aws:CurrentTime": "2025-06-01T12:00:01Z"}}
    assert when(cond, **{"aws:CurrentTime": "2025-06-01T12:00:00Z"}) is ALLOW
    assert when(cond, **{"aws:CurrentTime": NOW.timestamp()}) is ALLOW
    east = timezone(timedelta(hours=3))
    assert when(cond, **{"aws:CurrentTime": datetime(2025, 6, 1, 15, 0, 0, tzinfo=east)}) is ALLOW
    assert when(cond, **{"aws:CurrentTime": datetime(2025, 6, 1, 15, 0, 1, tzinfo=east)}) is IMPLICIT
    assert when(cond, **{"aws:CurrentTime": "not a date"}) is IMPLICIT


@pytest.mark.parametrize("bound", ["true", "TRUE", True, ["true"]])
def test_bool_on_secure_transport(bound):
    cond = {"Bool": {"aws:SecureTransport": bound}}
    assert when(cond, **{"aws:SecureTransport": True}) is ALLOW
    assert when(cond, **{"aws:SecureTransport": "true"}) is ALLOW
    assert when(cond, **{"aws:SecureTransport": False}) is IMPLICIT
    assert when(cond) is IMPLICIT


def test_deny_insecure_transport_pattern():
    p = policy(allow(), deny(Condition={"Bool": {"aws:SecureTransport": False}}))
    assert decide(p, **{"aws:SecureTransport": False}) is DENY
    assert decide(p, **{"aws:SecureTransport": True}) is ALLOW


# --- IP addresses ---

@pytest.mark.parametrize("address,expected", [
    ("203.0.113.7", ALLOW),
    ("203.0.114.7", IMPLICIT),
    ("10.0.0.1", ALLOW),  # single address
    ("10.0.0.2", IMPLICIT),
    ("2001:db8::1", ALLOW),
    ("2001:db9::1", IMPLICIT),
    ("::1", IMPLICIT),
    ("not-an-ip", IMPLICIT),
])
def test_ip_address_v4_and_v6(address, expected):
    cond = {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "10.0.0.1", "2001:db8::/32"]}}
    assert when(cond, **{"aws:SourceIp": address}) is expected


def test_not_ip_address():
    cond = {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}}
    assert when(cond, **{"aws:SourceIp": "198.51.100.1"}) is ALLOW
    assert when(cond, **{"aws:SourceIp": "192.0.2.9"}) is IMPLICIT
    assert when(cond, **{"aws:SourceIp": "2001:db8::5"}) is IMPLICIT
    assert when(cond, **{"aws:SourceIp": "2001:db9::5"}) is ALLOW


def test_deny_outside_corporate_network():
    p = policy(allow(), deny(Condition={"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    assert decide(p, **{"aws:SourceIp": "192.0.2.1"}) is ALLOW
    assert decide(p, **{"aws:SourceIp": "8.8.8.8"}) is DENY


# --- ARN conditions ---

@pytest.mark.parametrize("op", ["ArnLike", "ArnEquals"])
def test_arn_like_matches_component_wise(op):
    cond = {op: {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/alice"}) is ALLOW
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/a/b:c"}) is ALLOW
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:role/alice"}) is IMPLICIT
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:sts::123456789012:user/alice"}) is IMPLICIT


def test_arn_wildcard_does_not_cross_components():
    arn = "arn:aws:iam::123456789012:extra:user/alice"  # the '*' would have to swallow a ':'
    assert when({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, **{"aws:PrincipalArn": arn}) is IMPLICIT
    assert when({"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, **{"aws:PrincipalArn": arn}) is ALLOW
    cond = {"ArnLike": {"aws:PrincipalArn": "arn:aws:i?m::123456789012:user/alice"}}
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/alice"}) is ALLOW
    assert when(cond, **{"aws:PrincipalArn": "not an arn"}) is IMPLICIT


@pytest.mark.parametrize("op", ["ArnNotLike", "ArnNotEquals"])
def test_arn_negated(op):
    cond = {op: {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/admin-*"}}
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/alice"}) is ALLOW
    assert when(cond, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/admin-1"}) is IMPLICIT
    assert when(cond) is ALLOW  # absent key


# --- missing keys, IfExists, Null ---

@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:username": "x"}},
    {"StringEqualsIgnoreCase": {"aws:username": "x"}},
    {"StringLike": {"aws:username": "*"}},
    {"NumericEquals": {"k:n": 1}},
    {"NumericLessThan": {"k:n": 1}},
    {"DateGreaterThan": {"aws:CurrentTime": "2000-01-01"}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}},
    {"ArnLike": {"aws:PrincipalArn": "arn:*:*:*:*:*"}},
    {"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}},
    {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}},
])
def test_missing_key_fails_positive_operators(condition):
    assert when(condition) is IMPLICIT


@pytest.mark.parametrize("condition", [
    {"StringNotEquals": {"aws:username": "x"}},
    {"StringNotEqualsIgnoreCase": {"aws:username": "x"}},
    {"StringNotLike": {"aws:username": "*"}},
    {"NumericNotEquals": {"k:n": 1}},
    {"DateNotEquals": {"aws:CurrentTime": "2000-01-01"}},
    {"NotIpAddress": {"aws:SourceIp": "0.0.0.0/0"}},
    {"ArnNotEquals": {"aws:PrincipalArn": "arn:*:*:*:*:*"}},
    {"ArnNotLike": {"aws:PrincipalArn": "arn:*:*:*:*:*"}},
    {"ForAllValues:StringEquals": {"aws:TagKeys": "a"}},
    {"StringEqualsIfExists": {"aws:username": "x"}},
    {"NumericLessThanIfExists": {"k:n": 1}},
    {"BoolIfExists": {"aws:SecureTransport": "true"}},
    {"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}},
    {"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "a"}},
])
def test_missing_key_passes_negated_ifexists_and_for_all_values(condition):
    assert when(condition) is ALLOW


def test_if_exists_still_checks_a_present_key():
    cond = {"StringEqualsIfExists": {"aws:RequestedRegion": "us-east-1"}}
    assert when(cond, **{"aws:RequestedRegion": "us-east-1"}) is ALLOW
    assert when(cond, **{"aws:RequestedRegion": "eu-west-1"}) is IMPLICIT
    cond = {"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}
    assert when(cond, **{"aws:SourceIp": "192.168.0.1"}) is IMPLICIT


def test_null_operator():
    absent = {"Null": {"aws:username": "true"}}
    present = {"Null": {"aws:username": False}}
    assert when(absent) is ALLOW
    assert when(absent, **{"aws:username": "alice"}) is IMPLICIT
    assert when(present, **{"aws:username": "alice"}) is ALLOW
    assert when(present) is IMPLICIT
    assert when(absent, **{"aws:username": None}) is ALLOW


def test_negated_if_exists_checks_a_present_key():
    cond = {"StringNotEqualsIfExists": {"aws:username": "root"}}
    assert when(cond, **{"aws:username": "root"}) is IMPLICIT
    assert when(cond, **{"aws:username": "alice"}) is ALLOW


def test_empty_multi_valued_key_counts_as_absent():
    assert when({"Null": {"aws:TagKeys": "true"}}, **{"aws:TagKeys": []}) is ALLOW
    assert when({"StringEquals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": []}) is IMPLICIT


def test_non_string_values_compare_as_text():
    assert when({"StringEquals": {"k:n": 5}}, **{"k:n": 5}) is ALLOW
    assert when({"StringEquals": {"aws:SecureTransport": True}}, **{"aws:SecureTransport": True}) is ALLOW
    assert when({"StringLike": {"aws:CurrentTime": "2025-06-01T*"}}, **{"aws:CurrentTime": NOW}) is ALLOW


def test_unusable_context_values_never_match():
    assert when({"StringEquals": {"k": "x"}}, k={"nested": "x"}) is IMPLICIT
    assert when({"NumericEquals": {"k": 1}}, k=True) is IMPLICIT
    assert when({"Bool": {"k": "true"}}, k="yes") is IMPLICIT
    assert when({"IpAddress": {"k": "0.0.0.0/0"}}, k=1234) is IMPLICIT


# --- set operators ---

def test_for_any_value():
    cond = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["project", "team"]}}
    assert when(cond, **{"aws:TagKeys": ["cost", "team"]}) is ALLOW
    assert when(cond, **{"aws:TagKeys": ["cost"]}) is IMPLICIT
    assert when(cond, **{"aws:TagKeys": []}) is IMPLICIT
    assert when(cond, **{"aws:TagKeys": "team"}) is ALLOW  # a single value is a one-element set


def test_for_all_values():
    cond = {"ForAllValues:StringLike": {"aws:TagKeys": ["project", "team-*"]}}
    assert when(cond, **{"aws:TagKeys": ["project", "team-a"]}) is ALLOW
    assert when(cond, **{"aws:TagKeys": ["project", "cost"]}) is IMPLICIT
    assert when(cond, **{"aws:TagKeys": []}) is ALLOW  # vacuously true


def test_set_operators_negate_per_value():
    any_not = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}
    assert when(any_not, **{"aws:TagKeys": ["a", "z"]}) is ALLOW
    assert when(any_not, **{"aws:TagKeys": ["a", "b"]}) is IMPLICIT
    all_not = {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}
    assert when(all_not, **{"aws:TagKeys": ["y", "z"]}) is ALLOW
    assert when(all_not, **{"aws:TagKeys": ["a", "z"]}) is IMPLICIT


def test_multi_valued_key_without_set_operator():
    assert when({"StringEquals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": ["a", "b"]}) is ALLOW
    assert when({"StringNotEquals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": ["a", "b"]}) is IMPLICIT
    assert when({"StringNotEquals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": ["b"]}) is ALLOW


# --- policy variables ---

def test_variable_in_resource():
    p = policy(allow(resource="arn:aws:bedrock:us-east-1:${aws:PrincipalAccount}:custom-model/${aws:username}/*"))
    ctx = {"aws:PrincipalAccount": "123456789012", "aws:username": "alice"}
    assert decide(p, resource="arn:aws:bedrock:us-east-1:123456789012:custom-model/alice/m1", **ctx) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:us-east-1:123456789012:custom-model/bob/m1", **ctx) is IMPLICIT
    assert decide(p, resource="arn:aws:bedrock:us-east-1:999999999999:custom-model/alice/m1", **ctx) is IMPLICIT


def test_variable_keys_are_case_insensitive_and_values_literal():
    p = policy(allow(resource="arn:aws:bedrock:::custom-model/${AWS:UserName}"))
    assert decide(p, resource="arn:aws:bedrock:::custom-model/a.b", **{"aws:username": "a.b"}) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:::custom-model/axb", **{"aws:username": "a.b"}) is IMPLICIT
    assert decide(p, resource="arn:aws:bedrock:::custom-model/abc", **{"aws:username": "a*"}) is IMPLICIT


def test_unresolvable_variable_matches_nothing():
    p = policy(allow(resource="arn:aws:bedrock:::custom-model/${aws:username}"))
    assert decide(p, resource="arn:aws:bedrock:::custom-model/${aws:username}") is IMPLICIT
    assert decide(p, resource="arn:aws:bedrock:::custom-model/") is IMPLICIT
    q = policy({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:bedrock:::custom-model/${aws:username}"})
    assert decide(q, resource="arn:aws:bedrock:::custom-model/alice") is ALLOW


def test_variable_default_value():
    p = policy(allow(resource="arn:aws:bedrock:::custom-model/${aws:username, 'shared'}/*"))
    assert decide(p, resource="arn:aws:bedrock:::custom-model/shared/m") is ALLOW
    assert decide(p, resource="arn:aws:bedrock:::custom-model/alice/m", **{"aws:username": "alice"}) is ALLOW
    assert decide(p, resource="arn:aws:bedrock:::custom-model/shared/m", **{"aws:username": "alice"}) is IMPLICIT


def test_escaped_special_characters():
    p = policy(allow(resource="arn:aws:bedrock:::custom-model/${*}${?}${$}"))
    assert decide(p, resource="arn:aws:bedrock:::custom-model/*?$") is ALLOW
    assert decide(p, resource="arn:aws:bedrock:::custom-model/ab$") is IMPLICIT
    cond = {"StringEquals": {"aws:username": "a${*}"}}
    assert when(cond, **{"aws:username": "a*"}) is ALLOW


def test_variables_in_conditions():
    cond = {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}"}}
    ctx = {"aws:PrincipalAccount": "123456789012", "aws:username": "alice"}
    assert when(cond, **ctx, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/alice"}) is ALLOW
    assert when(cond, **ctx, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/bob"}) is IMPLICIT
    like = {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::${aws:PrincipalAccount}:user/*"}}
    assert when(like, **ctx, **{"aws:PrincipalArn": "arn:aws:iam::123456789012:user/x"}) is ALLOW
    assert when(like, **ctx, **{"aws:PrincipalArn": "arn:aws:iam::000000000000:user/x"}) is IMPLICIT
    ip = {"StringEquals": {"aws:username": "${aws:SourceIp}"}}
    assert when(ip, **{"aws:SourceIp": "10.0.0.1", "aws:username": "10.0.0.1"}) is ALLOW


def test_2008_version_treats_variables_as_literal_text():
    p = policy(allow(resource="arn:aws:bedrock:::custom-model/${aws:username}"), version="2008-10-17")
    assert decide(p, resource="arn:aws:bedrock:::custom-model/alice", **{"aws:username": "alice"}) is IMPLICIT
    assert decide(p, resource="arn:aws:bedrock:::custom-model/${aws:username}") is ALLOW


# --- parsing ---

def test_parse_accepts_json_text_and_keeps_document():
    text = json.dumps({"Version": "2012-10-17", "Id": "x", "Statement": allow("bedrock:*")})
    p = Policy.parse(text)
    assert p.document == json.loads(text)
    assert len(p.statements) == 1 and p.statements[0].sid is None
    assert decide(p) is ALLOW


def test_missing_version_reads_as_2008():
    p = Policy.parse({"Statement": [allow()]})
    assert p.version == "2008-10-17"
    assert "Version" not in p.document


def test_document_is_a_copy():
    doc = {"Version": "2012-10-17", "Statement": [allow()]}
    p = Policy.parse(doc)
    doc["Statement"][0]["Effect"] = "Deny"
    assert p.document["Statement"][0]["Effect"] == "Allow"


def test_request_context_lookup_is_case_insensitive():
    request = AccessRequest("bedrock:InvokeModel", "*", {"AWS:SourceIP": "10.0.0.1"})
    assert request.value("aws:sourceip") == "10.0.0.1"
    assert request.value("aws:username") is None


def test_statements_are_compiled_in_order():
    p = policy({**allow(), "Sid": "First"}, {**deny("iam:*"), "Sid": "Second"})
    assert [(s.sid, s.deny) for s in p.statements] == [("First", False), ("Second", True)]


def test_prefix_is_not_doubled():
    assert MalformedPolicy("MalformedPolicyDocument: x").message == "MalformedPolicyDocument: x"
    assert MalformedPolicy("x").message == "MalformedPolicyDocument: x"


def test_malformed_is_invalid_with_aws_prefix():
    with pytest.raises(Invalid) as info:
        Policy.parse({"Version": "2012-10-17", "Statement": [{"Action": "*", "Resource": "*"}]})
    assert isinstance(info.value, MalformedPolicy)
    assert info.value.message.startswith("MalformedPolicyDocument: ")
    assert str(info.value).startswith("MalformedPolicyDocument: ")


GOOD = {"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": "*"}


@pytest.mark.parametrize("document,fragment", [
    ({"Version": "2012-10-18", "Statement": [GOOD]}, "Version"),
    ({"Version": 2012, "Statement": [GOOD]}, "Version"),
    ({"Version": "2012-10-17"}, "Statement"),
    ({"Version": "2012-10-17", "Statement": []}, "Statement"),
    ({"Version": "2012-10-17", "Statement": "Allow"}, "Statement"),
    ({"Version": "2012-10-17", "Statement": ["Allow"]}, "statement must be a JSON object"),
    ({"Version": "2012-10-17", "Statement": [GOOD, [GOOD]]}, "statement must be a JSON object"),
    ({"Version": "2012-10-17", "Statement": [GOOD], "Extra": 1}, "Extra"),
    ({"Version": "2012-10-17", "Id": 5, "Statement": [GOOD]}, "Id"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Effect": None}]}, "Effect"),
    ({"Version": "2012-10-17", "Statement": [{"Action": "*", "Resource": "*"}]}, "Effect"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Effect": "allow"}]}, "Effect"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "NotAction": "iam:*"}]}, "exactly one of Action"),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}, "exactly one of Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "NotResource": "*"}]}, "exactly one of Resource"),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}, "exactly one of Resource"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Action": []}]}, "Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Action": ["bedrock:X", 3]}]}, "Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Action": "InvokeModel"}]}, "Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Action": "Bedrock:InvokeModel"}]}, "Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Action": "bedrock:"}]}, "Action"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Resource": "model"}]}, "ARN format"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Resource": {"a": 1}}]}, "Resource"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Principal": "*"}]}, "principal"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "NotPrincipal": {"AWS": "*"}}]}, "principal"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Actions": "*"}]}, "Actions"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Sid": "has space"}]}, "SID"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Sid": "A"}, {**GOOD, "Sid": "A"}]}, "unique"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": []}]}, "Condition"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"StringEqual": {"k": "v"}}}]}, "StringEqual"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"ForSomeValues:StringEquals": {"k": "v"}}}]}, "operator"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"NullIfExists": {"k": "true"}}}]}, "operator"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"StringEquals": "v"}}]}, "StringEquals"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"StringEquals": {"k": []}}}]}, "value"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"StringEquals": {"k": {"a": 1}}}}]}, "value"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}}]}, "CIDR"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0"}}}]}, "CIDR"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"NotIpAddress": {"aws:SourceIp": ["::/0", "x"]}}}]}, "CIDR"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"NumericLessThan": {"k": "ten"}}}]}, "numeric"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"NumericLessThan": {"k": True}}}]}, "numeric"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"DateLessThan": {"k": "yesterday"}}}]}, "date"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"Bool": {"k": "yes"}}}]}, "boolean"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"Null": {"k": 1}}}]}, "boolean"),
    ({"Version": "2012-10-17", "Statement": [{**GOOD, "Condition": {"ArnLike": {"k": "*"}}}]}, "ARN"),
])
def test_malformed_documents(document, fragment):
    with pytest.raises(MalformedPolicy) as info:
        Policy.parse(document)
    assert fragment in info.value.message


@pytest.mark.parametrize("text", ["", "{", "not json", '{"Version": "2012-10-17",}', "[]", '"x"', "null"])
def test_invalid_json_text(text):
    with pytest.raises(MalformedPolicy):
        Policy.parse(text)


def test_duplicate_json_keys_are_refused():
    text = '{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Effect": "Allow", "Action": "*", "Resource": "*"}}'
    with pytest.raises(MalformedPolicy, match="duplicate key 'Effect'"):
        Policy.parse(text)


def test_non_json_mapping_is_refused():
    with pytest.raises(MalformedPolicy):
        Policy.parse({"Version": "2012-10-17", "Statement": [{**GOOD, "Sid": object()}]})
    with pytest.raises(MalformedPolicy):
        Policy.parse(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_too_long_document():
    actions = [f"bedrock:Action{i:05d}" for i in range(400)]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    assert len(json.dumps(doc, separators=(",", ":"))) > MAX_DOCUMENT_CHARS
    with pytest.raises(MalformedPolicy, match="LimitExceeded"):
        Policy.parse(doc)
    with pytest.raises(MalformedPolicy, match="LimitExceeded"):
        Policy.parse(json.dumps(doc))


def test_white_space_does_not_count_toward_the_limit():
    doc = {"Version": "2012-10-17", "Statement": [GOOD]}
    Policy.parse(json.dumps(doc, indent=4000))


def test_single_statement_object_and_string_condition_values():
    p = Policy.parse({"Statement": {**GOOD, "Condition": {"NumericLessThan": {"k": 5}}}})
    assert decide(p, **{"k": 4}) is ALLOW


# --- managed policies ---

def managed(name):
    return MANAGED[f"arn:aws:iam::aws:policy/{name}"]


def test_managed_policy_names():
    assert set(MANAGED) == {
        "arn:aws:iam::aws:policy/AmazonBedrockFullAccess",
        "arn:aws:iam::aws:policy/AmazonBedrockReadOnly",
        "arn:aws:iam::aws:policy/OutcropInvokeOnly",
    }
    for p in MANAGED.values():
        assert Policy.parse(p.document).document == p.document


def test_full_access():
    p = managed("AmazonBedrockFullAccess")
    assert decide(p, "bedrock:InvokeModel") is ALLOW
    assert decide(p, "bedrock:CreateModelCustomizationJob", "*") is ALLOW
    assert decide(p, "kms:DescribeKey", "*") is ALLOW
    assert decide(p, "kms:Decrypt", "*") is ALLOW  # using customer-managed keys through Bedrock
    assert decide(p, "kms:CreateKey", "*") is IMPLICIT
    assert decide(p, "iam:CreateUser", "*") is IMPLICIT


def test_read_only():
    p = managed("AmazonBedrockReadOnly")
    assert decide(p, "bedrock:ListFoundationModels", "*") is ALLOW
    assert decide(p, "bedrock:GetFoundationModel") is ALLOW
    assert decide(p, "bedrock:InvokeModel") is IMPLICIT
    assert decide(p, "bedrock:CreateGuardrail", "*") is IMPLICIT


def test_invoke_only():
    p = managed("OutcropInvokeOnly")
    for action in ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:CountTokens",
                   "bedrock:ListFoundationModels", "bedrock:GetFoundationModel"):
        assert decide(p, action) is ALLOW
    assert decide(p, "iam:CreateAccessKey", "*") is IMPLICIT
    assert decide(p, "bedrock:CreateGuardrail", "*") is IMPLICIT


def test_managed_plus_customer_deny():
    boundary = policy(deny("bedrock:InvokeModel*", resource="arn:aws:bedrock:*::foundation-model/qwen.*"))
    assert decide([managed("OutcropInvokeOnly"), boundary]) is DENY
    assert decide([managed("OutcropInvokeOnly"), boundary], resource="arn:aws:bedrock:us-east-1::foundation-model/smol") is ALLOW
