"""IAM policy conditions: every operator family, missing keys, set operators, policy variables."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.unit.policy_helpers import ALLOW, DENY, IMPLICIT, allow, decide, deny, policy, when

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


