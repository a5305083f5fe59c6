"""MLflow's users, one per role of the platform, each allowed only what its work needs.

MLflow's basic-auth app (the cluster's, helm-values/mlflow.yaml) gives a user nothing
unless granted (`default_permission = NO_PERMISSIONS`, config/init.sh). These grants are
all that the platform's processes may do:
- `trainer`, held by Ray's trainer nodes (the jobs, the warm trainer, a search's trials):
  creates runs and logs to them, registers versions and tags them, and moves the
  champion alias when a version passes the gate;
- `api`, held by the API: reads runs and models; moves the alias when an operator
  promotes or rolls back, and tags a version adopted by hand (`mlops.ml.adopt`). EDIT on
  registered models only: it cannot create a run or upload an artifact;
- `serving`, held by Ray's serving nodes (Serve's replicas): reads.
MLflow's admin is for people and for this module, which config/init.sh runs in the Ray
head with the admin's login on stdin, never on a command line:

    python -m mlops.clients.mlflow_users < request.json

The grants name every experiment and registered model ("*"): models are named by the
platform's users, and a grant per name would need the admin's login whenever a model is
created. Running it again sets the same passwords and grants.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from mlops import logs

log = logging.getLogger(__name__)

Role = Literal["trainer", "api", "serving"]
_USERS = "/api/2.0/mlflow/users"
_GRANTS = "/api/3.0/mlflow/users/permissions"
_EXISTS = "RESOURCE_ALREADY_EXISTS"


@dataclass(frozen=True)
class Grant:
    resource_type: Literal["experiment", "registered_model"]
    permission: Literal["READ", "EDIT"]
    resource_id: str = "*"


GRANTS: Mapping[Role, tuple[Grant, ...]] = {
    "trainer": (Grant("experiment", "EDIT"), Grant("registered_model", "EDIT")),
    "api": (Grant("experiment", "READ"), Grant("registered_model", "EDIT")),
    "serving": (Grant("experiment", "READ"), Grant("registered_model", "READ")),
}


class ProvisionRequest(BaseModel):
    """What config/init.sh sends on stdin (and `make up`'s tests build)."""

    tracking_uri: str
    admin_username: str = "admin"
    admin_password: SecretStr
    passwords: dict[Role, SecretStr]


class MlflowUsersError(Exception):
    """MLflow refused to create a user or a grant; the message has its answer."""


def provision(request: ProvisionRequest, *, timeout: float = 30) -> list[str]:
    """Create (or reset the password of) each role's user and give it its grants; returns
    one line per user saying what it may do."""
    admin = (request.admin_username, request.admin_password.get_secret_value())
    done = []
    with httpx.Client(base_url=request.tracking_uri, auth=admin, timeout=timeout) as mlflow:
        for role, password in request.passwords.items():
            _create_or_reset(mlflow, role, password.get_secret_value())
            for grant in GRANTS[role]:
                _grant(mlflow, role, grant)
            allowed = ", ".join(f"{g.permission} on {g.resource_type}s" for g in GRANTS[role])
            done.append(f"MLflow user {role}: {allowed}")
    return done


def _create_or_reset(mlflow: httpx.Client, username: str, password: str) -> None:
    body = {"username": username, "password": password}
    created = mlflow.post(f"{_USERS}/create", json=body)
    if _refused_as(created, _EXISTS):
        _check(mlflow.patch(f"{_USERS}/update-password", json=body), f"reset {username}")
    else:
        _check(created, f"create {username}")


def _grant(mlflow: httpx.Client, username: str, grant: Grant) -> None:
    target = {
        "username": username,
        "resource_type": grant.resource_type,
        "resource_id": grant.resource_id,
    }
    body = {**target, "permission": grant.permission}
    granted = mlflow.post(f"{_GRANTS}/grant", json=body)
    if _refused_as(granted, _EXISTS):  # a grant of an earlier run, maybe another level
        _check(mlflow.post(f"{_GRANTS}/revoke", json=target), f"revoke {target}")
        granted = mlflow.post(f"{_GRANTS}/grant", json=body)
    _check(granted, f"grant {body}")


def _refused_as(response: httpx.Response, code: str) -> bool:
    if response.is_success:
        return False
    try:
        return bool(response.json().get("error_code") == code)
    except ValueError:
        return False


def _check(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise MlflowUsersError(
            f"MLflow refused to {what}: {response.status_code} {response.text[:300]}"
        )


def main() -> int:
    logs.configure("console")
    try:
        request = ProvisionRequest.model_validate_json(sys.stdin.read())
    except ValidationError as exc:  # named by place only: the input holds passwords
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        log.error("the request on stdin is not valid: %s", wrong)
        return 2
    try:
        for line in provision(request):
            log.info("%s", line)
    except (MlflowUsersError, httpx.HTTPError) as exc:
        log.error("MLflow's users were not set up: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
