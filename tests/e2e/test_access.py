"""IAM through real clients: managed and customer policies, deny precedence, key lifecycle, API keys."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e.iam import MANAGED, Principal, operator

CHAT = "anthropic.claude-3-haiku-20240307-v1:0"
HELLO = [{"role": "user", "content": [{"text": "Say hi."}]}]


def _converse(principal: Principal, model: str = CHAT):  # type: ignore[no-untyped-def]
    return principal.client("bedrock-runtime").converse(modelId=model, messages=HELLO,
                                                        inferenceConfig={"maxTokens": 4})


def _code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def admin(server):  # type: ignore[no-untyped-def]
    return operator(server)


def test_invoke_only_user_can_converse_but_not_manage_keys(admin):
    user = admin.new_user(f"invoker-{uuid.uuid4().hex[:6]}", MANAGED + "OutcropInvokeOnly")
    assert _converse(user)["output"]["message"]["content"][0]["text"]
    denied = user.call("POST", "/outcrop/v1/access-keys", {})
    assert denied.status_code == 403
    assert denied.headers["x-amzn-ErrorType"].startswith("AccessDeniedException")
    message = denied.json()["message"]
    assert message.startswith(f"User: arn:aws:iam::{admin.ok('GET', '/outcrop/v1/account')['Account']['AccountId']}:user/")
    assert "is not authorized to perform: iam:CreateAccessKey on resource: arn:aws:iam::" in message
    assert user.call("GET", "/outcrop/v1/access-keys").status_code == 403
    with pytest.raises(ClientError) as excinfo:  # invoke-only: no control plane beyond the catalog
        user.client("bedrock-runtime").converse_stream  # noqa: B018 - the stream action is granted too
        user.client("kms").create_key()
    assert _code(excinfo) == "AccessDeniedException"


def test_user_without_policies_is_denied_everything(admin):
    user = admin.new_user(f"nobody-{uuid.uuid4().hex[:6]}")
    with pytest.raises(ClientError) as excinfo:
        _converse(user)
    assert _code(excinfo) == "AccessDeniedException"
    assert "because no identity-based policy allows the bedrock:InvokeModel action" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        user.client("bedrock").list_foundation_models()
    assert _code(excinfo) == "AccessDeniedException"


def test_explicit_deny_on_one_model_beats_wildcard_allow(admin):
    name = f"no-haiku-{uuid.uuid4().hex[:6]}"
    policy = admin.ok("POST", "/outcrop/v1/policies", {"PolicyName": name, "PolicyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
                      {"Effect": "Deny", "Action": "bedrock:InvokeModel*",
                       "Resource": f"arn:aws:bedrock:*::foundation-model/{CHAT}"}]}})["Policy"]
    user = admin.new_user(name, policy["Arn"])
    with pytest.raises(ClientError) as excinfo:
        _converse(user)
    assert _code(excinfo) == "AccessDeniedException"
    assert "with an explicit deny in an identity-based policy" in excinfo.value.response["Error"]["Message"]
    assert _converse(user, "qwen.qwen2-5-coder-0-5b-instruct-v1:0")["stopReason"] in ("max_tokens", "end_turn")
    # the same rule holds on the OpenAI surface, which maps to the same actions
    import openai

    with pytest.raises(openai.PermissionDeniedError):
        user.openai().chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_condition_on_source_ip_and_secure_transport(admin):
    name = f"tls-only-{uuid.uuid4().hex[:6]}"
    policy = admin.ok("POST", "/outcrop/v1/policies", {"PolicyName": name, "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
            {"Effect": "Deny", "Action": "bedrock:ListFoundationModels", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}})["Policy"]
    user = admin.new_user(name, policy["Arn"])
    assert _converse(user)["output"]
    with pytest.raises(ClientError) as excinfo:  # this server speaks plain http
        user.client("bedrock").list_foundation_models()
    assert "explicit deny" in excinfo.value.response["Error"]["Message"]


def test_deactivated_key_stops_at_once_and_rotation(admin):
    user = admin.new_user(f"rotator-{uuid.uuid4().hex[:6]}", MANAGED + "AmazonBedrockFullAccess")
    bedrock = user.client("bedrock")
    assert bedrock.list_foundation_models()["modelSummaries"]
    admin.ok("PATCH", f"/outcrop/v1/access-keys/{user.access_key_id}", {"Status": "Inactive"})
    with pytest.raises(ClientError) as excinfo:
        bedrock.list_foundation_models()
    assert _code(excinfo) == "UnrecognizedClientException"
    admin.ok("PATCH", f"/outcrop/v1/access-keys/{user.access_key_id}", {"Status": "Active"})
    assert bedrock.list_foundation_models()["modelSummaries"]
    rotated = admin.ok("POST", f"/outcrop/v1/access-keys/{user.access_key_id}/rotate")["AccessKey"]
    with pytest.raises(ClientError):
        bedrock.list_foundation_models()
    fresh = Principal(admin.endpoint, rotated["AccessKeyId"], rotated["SecretAccessKey"])
    assert fresh.client("bedrock").list_foundation_models()["modelSummaries"]
    listed = admin.ok("GET", f"/outcrop/v1/access-keys?UserName={rotated['UserName']}")["AccessKeyMetadata"]
    assert {k["AccessKeyId"]: k["Status"] for k in listed} == {user.access_key_id: "Inactive",
                                                               rotated["AccessKeyId"]: "Active"}
    admin.ok("DELETE", f"/outcrop/v1/access-keys/{user.access_key_id}")
    assert admin.call("DELETE", f"/outcrop/v1/access-keys/{user.access_key_id}").status_code == 404


def test_api_key_expiry_and_deactivation(admin, server):
    user = admin.new_user(f"bearer-{uuid.uuid4().hex[:6]}", MANAGED + "OutcropInvokeOnly")
    models = user.openai().models.list()
    assert models.data
    keys = admin.ok("GET", f"/outcrop/v1/api-keys?UserName={admin_user(user, admin)}")["ServiceSpecificCredentials"]
    assert all("ServiceApiKeyValue" not in k for k in keys)  # the secret is shown once, never listed
    admin.ok("PATCH", f"/outcrop/v1/api-keys/{keys[0]['ServiceSpecificCredentialId']}", {"Status": "Inactive"})
    import openai

    with pytest.raises(openai.AuthenticationError):
        user.openai().models.list()


def admin_user(user: Principal, admin: Principal) -> str:
    """The user name behind an access key, through the API."""
    for row in admin.ok("GET", "/outcrop/v1/users")["Users"]:
        keys = admin.ok("GET", f"/outcrop/v1/access-keys?UserName={row['UserName']}")["AccessKeyMetadata"]
        if any(k["AccessKeyId"] == user.access_key_id for k in keys):
            return str(row["UserName"])
    raise AssertionError("no such user")


def short_term_token(access_key_id: str, secret: str, region: str = "us-east-1", expires: int = 43200) -> str:
    """What aws-bedrock-token-generator makes: a SigV4 query-presigned URL, base64'd."""
    request = AWSRequest(method="POST", url="https://bedrock.amazonaws.com/", headers={"host": "bedrock.amazonaws.com"},
                         params={"Action": "CallWithBearerToken"})
    SigV4QueryAuth(Credentials(access_key_id, secret), "bedrock", region, expires=expires).add_auth(request)
    return "bedrock-api-key-" + base64.b64encode((request.url.replace("https://", "") + "&Version=1").encode()).decode()


def test_short_term_api_key_is_verified_offline(admin):
    user = admin.new_user(f"short-{uuid.uuid4().hex[:6]}", MANAGED + "OutcropInvokeOnly")
    token = short_term_token(user.access_key_id, user.secret_access_key)
    listed = httpx.get(f"{admin.endpoint}/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200 and listed.json()["data"]
    wrong_secret = short_term_token(user.access_key_id, "not-the-secret")
    assert httpx.get(f"{admin.endpoint}/v1/models", headers={"Authorization": f"Bearer {wrong_secret}"}).status_code == 401
    other_region = short_term_token(user.access_key_id, user.secret_access_key, region="eu-west-1")
    assert httpx.get(f"{admin.endpoint}/v1/models", headers={"Authorization": f"Bearer {other_region}"}).status_code == 401
    # a deactivated signing key takes its short-term tokens with it
    admin.ok("PATCH", f"/outcrop/v1/access-keys/{user.access_key_id}", {"Status": "Inactive"})
    assert httpx.get(f"{admin.endpoint}/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_policy_documents_are_validated(admin):
    bad = admin.call("POST", "/outcrop/v1/policies", {"PolicyName": "bad", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*",
                                                "Principal": "*"}]}})
    assert bad.status_code == 400 and "MalformedPolicyDocument" in bad.json()["message"]
    assert admin.call("GET", "/outcrop/v1/policies/arn:aws:iam::aws:policy/NoSuchPolicy").status_code == 404
    listed = admin.ok("GET", "/outcrop/v1/policies?Scope=AWS")["Policies"]
    assert {p["PolicyName"] for p in listed} == {"AmazonBedrockFullAccess", "AmazonBedrockReadOnly",
                                                 "OutcropInvokeOnly"}


def test_only_the_operator_manages_accounts(admin):
    user = admin.new_user(f"tenant-admin-{uuid.uuid4().hex[:6]}", MANAGED + "AmazonBedrockFullAccess")
    denied = user.call("POST", "/outcrop/v1/accounts", {"AccountName": "sneaky"})
    assert denied.status_code == 403 and "outcrop:CreateAccount" in denied.json()["message"]
    assert any(a["AccountName"] == "default" for a in admin.ok("GET", "/outcrop/v1/accounts")["Accounts"])


def test_suspended_account_keys_stop_working(server, admin):
    from tests.e2e.iam import new_account

    tenant = new_account(server, f"suspend-{uuid.uuid4().hex[:6]}")
    assert tenant.client("bedrock").list_foundation_models()["modelSummaries"]
    account_id = tenant.ok("GET", "/outcrop/v1/account")["Account"]["AccountId"]
    admin.ok("POST", f"/outcrop/v1/accounts/{account_id}/status", {"Status": "Suspended"})
    with pytest.raises(ClientError) as excinfo:
        tenant.client("bedrock").list_foundation_models()
    assert _code(excinfo) == "UnrecognizedClientException"


def test_security_headers_on_json_responses(server):
    response = httpx.get(f"{server.endpoint}/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_repeated_auth_failures_are_throttled(tmp_path):
    from tests.e2e.conftest import free_port, start_server, stop_server

    guarded = start_server(tmp_path / "home", free_port(), {"OUTCROP_AUTH_FAILURES_PER_MINUTE": "5"})
    try:
        bad = Principal(guarded.endpoint, "AKIAAAAAAAAAAAAAAAAA", "wrong")
        codes = [bad.call("GET", "/foundation-models").status_code for _ in range(7)]
        assert codes[:5] == [403] * 5 and codes[5:] == [429, 429]
        good = operator(guarded)  # the source is locked out for the minute, whatever key it tries next
        assert good.call("GET", "/foundation-models").status_code == 429
    finally:
        stop_server(guarded)


def test_cidr_allowlist_refuses_other_networks(tmp_path):
    from outcrop.server.app import create_app
    from outcrop.settings import Settings

    app = create_app(Settings(home=tmp_path, allowed_cidrs=["127.0.0.0/8", "fd00::/8"]))

    async def probe(client_ip: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://outcrop") as client:
            return await client.get("/healthz")

    import asyncio

    assert asyncio.run(probe("127.0.0.1")).status_code == 200
    refused = asyncio.run(probe("10.1.2.3"))
    assert refused.status_code == 403
    assert refused.headers["x-amzn-ErrorType"].startswith("AccessDeniedException")
    assert "10.1.2.3" in refused.json()["message"]


def test_role_holds_keys_and_policies(admin):
    role = f"service-{uuid.uuid4().hex[:6]}"
    created = admin.ok("POST", "/outcrop/v1/roles", {"RoleName": role})["Role"]
    assert created["Arn"].endswith(f":role/{role}")
    admin.ok("POST", f"/outcrop/v1/roles/{role}/policies", {"PolicyArn": MANAGED + "AmazonBedrockReadOnly"})
    key = admin.ok("POST", "/outcrop/v1/access-keys", {"RoleName": role})["AccessKey"]
    assert key["RoleName"] == role
    service = Principal(admin.endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    assert service.client("bedrock").list_foundation_models()["modelSummaries"]
    with pytest.raises(ClientError) as excinfo:
        _converse(service)
    assert f":role/{role} is not authorized to perform: bedrock:InvokeModel" in excinfo.value.response["Error"]["Message"]
    assert [k["AccessKeyId"] for k in admin.ok("GET", f"/outcrop/v1/access-keys?RoleName={role}")["AccessKeyMetadata"]] \
        == [key["AccessKeyId"]]
