"""A small SigV4-signing client for the native API (/outcrop/v1), and helpers to set up principals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


@dataclass
class Principal:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    api_key: str | None = None
    verify: bool | str = True

    def call(self, method: str, path: str, body: Any = None, service: str = "bedrock",
             headers: dict[str, str] | None = None) -> httpx.Response:
        data = json.dumps(body).encode() if body is not None else b""
        request = AWSRequest(method=method, url=self.endpoint + path, data=data,
                             headers={"Content-Type": "application/json", **(headers or {})})
        SigV4Auth(Credentials(self.access_key_id, self.secret_access_key), service, "us-east-1").add_auth(request)
        return httpx.request(method, self.endpoint + path, content=data, headers=dict(request.headers.items()),
                             timeout=300, verify=self.verify)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.call(method, path, body)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def client(self, service: str):  # type: ignore[no-untyped-def]
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=600))

    def openai(self):  # type: ignore[no-untyped-def]
        import openai

        return openai.OpenAI(base_url=f"{self.endpoint}/v1", api_key=self.api_key, max_retries=0, timeout=600)

    def new_user(self, name: str, *policy_arns: str) -> Principal:
        """Create a user with an access key and an API key, and attach the given policies."""
        self.ok("POST", "/outcrop/v1/users", {"UserName": name})
        key = self.ok("POST", "/outcrop/v1/access-keys", {"UserName": name})["AccessKey"]
        api = self.ok("POST", "/outcrop/v1/api-keys", {"UserName": name})["ServiceSpecificCredential"]
        for arn in policy_arns:
            self.ok("POST", f"/outcrop/v1/users/{name}/policies", {"PolicyArn": arn})
        return Principal(self.endpoint, key["AccessKeyId"], key["SecretAccessKey"], api["ServiceApiKeyValue"],
                         self.verify)


def operator(server: Any) -> Principal:
    return Principal(server.endpoint, server.creds["access_key_id"], server.creds["secret_access_key"],
                     server.creds["api_key"])


def new_account(server: Any, name: str) -> Principal:
    created = operator(server).ok("POST", "/outcrop/v1/accounts", {"AccountName": name})
    return Principal(server.endpoint, created["AccessKey"]["AccessKeyId"], created["AccessKey"]["SecretAccessKey"],
                     created["ApiKey"]["ServiceApiKeyValue"])


MANAGED = "arn:aws:iam::aws:policy/"
