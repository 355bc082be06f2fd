"""The native API (/outcrop/v1): accounts, users, roles, keys and policies, in IAM's JSON shapes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.errors import Invalid
from outcrop.server.deps import operation, services
from outcrop.server.native.wire import body_of, field, json_response, no_content

router = APIRouter(prefix="/outcrop/v1")


@router.get("/account")
async def get_account(request: Request, ctx: CallContext = Depends(operation("GetAccount"))) -> Response:
    return json_response({"Account": services(request).accounts.get_account(ctx)})


@router.post("/accounts")
async def create_account(request: Request, ctx: CallContext = Depends(operation("CreateAccount"))) -> Response:
    body = await body_of(request)
    return json_response(services(request).accounts.create_account(ctx, field(body, "AccountName", str)), 201)


@router.get("/accounts")
async def list_accounts(request: Request, ctx: CallContext = Depends(operation("ListAccounts"))) -> Response:
    return json_response({"Accounts": services(request).accounts.list_accounts(ctx)})


@router.post("/accounts/{account_id}/status")
async def update_account(account_id: str, request: Request,
                         ctx: CallContext = Depends(operation("UpdateAccount"))) -> Response:
    body = await body_of(request)
    return json_response({"Account": services(request).accounts.update_account(ctx, account_id,
                                                                              field(body, "Status", str))})


def _principal_routes(kind: str, noun: str) -> None:
    """Users and roles share their routes; only the names differ (CreateUser / CreateRole, ...)."""
    plural, title, name_key = noun + "s", noun.title(), f"{noun.title()}Name"

    async def create(request: Request, ctx: CallContext = Depends(operation(f"Create{title}"))) -> Response:
        body = await body_of(request)
        return json_response({title: services(request).accounts.create_principal(ctx, kind, field(body, name_key, str))},
                             201)

    async def listing(request: Request, ctx: CallContext = Depends(operation(f"List{title}s"))) -> Response:
        return json_response({f"{title}s": services(request).accounts.list_principals(ctx, kind)})

    async def get(name: str, request: Request, ctx: CallContext = Depends(operation(f"Get{title}"))) -> Response:
        return json_response({title: services(request).accounts.get_principal(ctx, kind, name)})

    async def delete(name: str, request: Request, ctx: CallContext = Depends(operation(f"Delete{title}"))) -> Response:
        services(request).accounts.delete_principal(ctx, kind, name)
        return no_content()

    async def attach(name: str, request: Request, ctx: CallContext = Depends(operation("AttachPolicy"))) -> Response:
        body = await body_of(request)
        services(request).policies.attach(ctx, kind, name, field(body, "PolicyArn", str))
        return no_content()

    async def attached(name: str, request: Request,
                       ctx: CallContext = Depends(operation("ListAttachedPolicies"))) -> Response:
        return json_response({"AttachedPolicies": services(request).policies.list_attached(ctx, kind, name)})

    async def detach(name: str, arn: str, request: Request,
                     ctx: CallContext = Depends(operation("DetachPolicy"))) -> Response:
        services(request).policies.detach(ctx, kind, name, arn)
        return no_content()

    router.add_api_route(f"/{plural}", create, methods=["POST"])
    router.add_api_route(f"/{plural}", listing, methods=["GET"])
    router.add_api_route(f"/{plural}/{{name}}", get, methods=["GET"])
    router.add_api_route(f"/{plural}/{{name}}", delete, methods=["DELETE"])
    router.add_api_route(f"/{plural}/{{name}}/policies", attach, methods=["POST"])
    router.add_api_route(f"/{plural}/{{name}}/policies", attached, methods=["GET"])
    router.add_api_route(f"/{plural}/{{name}}/policies/{{arn:path}}", detach, methods=["DELETE"])


_principal_routes("user", "user")
_principal_routes("role", "role")


@router.post("/access-keys")
async def create_access_key(request: Request, ctx: CallContext = Depends(operation("CreateAccessKey"))) -> Response:
    body = await body_of(request)
    return json_response({"AccessKey": services(request).accounts.create_access_key(
        ctx, field(body, "UserName", str, required=False), field(body, "RoleName", str, required=False))}, 201)


@router.get("/access-keys")
async def list_access_keys(request: Request, ctx: CallContext = Depends(operation("ListAccessKeys"))) -> Response:
    q = request.query_params
    keys = services(request).accounts.list_access_keys(ctx, q.get("UserName"), q.get("RoleName"))
    return json_response({"AccessKeyMetadata": keys})


@router.patch("/access-keys/{key_id}")
async def update_access_key(key_id: str, request: Request,
                            ctx: CallContext = Depends(operation("UpdateAccessKey"))) -> Response:
    body = await body_of(request)
    return json_response({"AccessKey": services(request).accounts.update_access_key(ctx, key_id,
                                                                                   field(body, "Status", str))})


@router.delete("/access-keys/{key_id}")
async def delete_access_key(key_id: str, request: Request,
                            ctx: CallContext = Depends(operation("DeleteAccessKey"))) -> Response:
    services(request).accounts.delete_access_key(ctx, key_id)
    return no_content()


@router.post("/access-keys/{key_id}/rotate")
async def rotate_access_key(key_id: str, request: Request,
                            ctx: CallContext = Depends(operation("RotateAccessKey"))) -> Response:
    return json_response({"AccessKey": services(request).accounts.rotate_access_key(ctx, key_id)}, 201)


@router.post("/api-keys")
async def create_api_key(request: Request,
                         ctx: CallContext = Depends(operation("CreateServiceSpecificCredential"))) -> Response:
    body = await body_of(request)
    created = services(request).accounts.create_api_key(ctx, field(body, "UserName", str, required=False),
                                                        field(body, "CredentialAgeDays", int, required=False),
                                                        field(body, "RoleName", str, required=False))
    return json_response({"ServiceSpecificCredential": created}, 201)


@router.get("/api-keys")
async def list_api_keys(request: Request,
                        ctx: CallContext = Depends(operation("ListServiceSpecificCredentials"))) -> Response:
    q = request.query_params
    keys = services(request).accounts.list_api_keys(ctx, q.get("UserName"), q.get("RoleName"))
    return json_response({"ServiceSpecificCredentials": keys})


@router.patch("/api-keys/{key_id}")
async def update_api_key(key_id: str, request: Request,
                         ctx: CallContext = Depends(operation("UpdateServiceSpecificCredential"))) -> Response:
    body = await body_of(request)
    updated = services(request).accounts.update_api_key(ctx, key_id, field(body, "Status", str))
    return json_response({"ServiceSpecificCredential": updated})


@router.delete("/api-keys/{key_id}")
async def delete_api_key(key_id: str, request: Request,
                         ctx: CallContext = Depends(operation("DeleteServiceSpecificCredential"))) -> Response:
    services(request).accounts.delete_api_key(ctx, key_id)
    return no_content()


@router.post("/policies")
async def create_policy(request: Request, ctx: CallContext = Depends(operation("CreatePolicy"))) -> Response:
    body = await body_of(request)
    document: Any = body.get("PolicyDocument")
    if document is None:
        raise Invalid("PolicyDocument is required")
    created = services(request).policies.create(ctx, field(body, "PolicyName", str), document,
                                                field(body, "Description", str, required=False) or "")
    return json_response({"Policy": created}, 201)


@router.get("/policies")
async def list_policies(request: Request, ctx: CallContext = Depends(operation("ListPolicies"))) -> Response:
    scope = request.query_params.get("Scope", "All")
    return json_response({"Policies": services(request).policies.list_policies(ctx, scope)})


@router.get("/policies/{arn:path}")
async def get_policy(arn: str, request: Request, ctx: CallContext = Depends(operation("GetPolicy"))) -> Response:
    return json_response({"Policy": services(request).policies.get(ctx, arn)})


@router.delete("/policies/{arn:path}")
async def delete_policy(arn: str, request: Request, ctx: CallContext = Depends(operation("DeletePolicy"))) -> Response:
    services(request).policies.delete(ctx, arn)
    return no_content()
