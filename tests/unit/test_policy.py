"""IAM policies: actions, resources, evaluation order, parsing, managed policies."""

import json

import pytest

from outcrop.core.policy import (
    MANAGED,
    MAX_DOCUMENT_CHARS,
    AccessRequest,
    MalformedPolicy,
    Policy,
)
from outcrop.errors import Invalid
from tests.unit.policy_helpers import ALLOW, DENY, IMPLICIT, MODEL_ARN, allow, decide, deny, policy

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
