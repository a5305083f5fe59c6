"""What the original design's user does, against a cluster made by config/init.sh.

Run by .github/workflows/e2e.yml after `./config/init.sh` (it needs Docker and kind, so
it cannot run on a machine without them; `make test` rehearses the same wiring on one
machine instead). Standard library only, so it runs before any virtual environment:

    python3 tests/cluster/e2e.py

It trains through the API with the original payload, runs `serve.py` in the API pod
with kubectl exec, infers with the original payload, receives the training's alert
over SSE through the dashboard's nginx (as a browser's EventSource would: unnamed
`data:` events), and checks that MLflow answers the API in-cluster (/ready reads the
registry through MLflow's Host check and sign-in), and that the serving nodes' MLflow
login cannot move the champion (MLflow's users per role). Exit 0 when all of that holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = "http://127.0.0.1:8888"
DASHBOARD_EVENTS = "http://127.0.0.1:5001/api/webhook"
CONTEXT = "kind-mlops"
TRAIN = {"hyperparameters": {"n_estimators": 100}}
INFER = {"input_data": [0.1, 1.2, 2.3, 2.2]}
MODEL = "mlops_model"  # MLOPS_MODEL_NAME's default
# Run in a serving node, as its `serving` user (the pod's MLFLOW_TRACKING_* variables).
MOVE_THE_CHAMPION = """
import sys
import mlflow
from mlflow.exceptions import MlflowException
client = mlflow.MlflowClient(sys.argv[1])
try:
    client.set_registered_model_alias(sys.argv[2], "champion", sys.argv[3])
except MlflowException as exc:
    print(exc.error_code)
else:
    print("MOVED")
"""


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def credentials() -> dict[str, str]:
    lines = (ROOT / "outputs" / "credentials.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def call(method: str, path: str, body: dict | None = None, token: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(f"{API}{path}", method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(request, data=data, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def until(what: str, check, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(3)
    raise SystemExit(f"FAILED: {what} within {timeout:.0f} s")


class Events(threading.Thread):
    """The dashboard's event stream, read as EventSource.onmessage reads it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.messages: list[dict] = []

    def run(self) -> None:
        with urllib.request.urlopen(DASHBOARD_EVENTS, timeout=900) as stream:
            event_name = None
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("event:"):
                    event_name = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event_name is None:  # onmessage sees these
                    self.messages.append(json.loads(line.split(":", 1)[1]))
                elif not line:
                    event_name = None


def main() -> int:
    token = credentials()["api.token"]
    events = Events()
    events.start()

    status, ready = call("GET", "/ready")
    say(f"/ready {status}: {json.dumps(ready)}")
    if status != 200 or not ready["dependencies"]["mlflow"]["ok"]:
        raise SystemExit("FAILED: MLflow does not answer the API in-cluster")

    status, accepted = call("POST", "/trigger_training", TRAIN, token)
    if status != 202:
        raise SystemExit(f"FAILED: /trigger_training answered {status}: {accepted}")
    job_id = accepted["job_id"]
    job = until(
        f"job {job_id} to succeed",
        lambda: (j := call("GET", f"/jobs/{job_id}")[1]).get("status") == "succeeded" and j,
        timeout=600,
    )
    say(f"trained: {json.dumps(job)}")
    assert isinstance(job, dict)

    subprocess.run(
        ["kubectl", "--context", CONTEXT, "exec", "deploy/mlops-api", "-n", "fastapi", "--",
         "python", "/var/task/fastapi/serve.py"],
        check=True,
        timeout=600,
    )  # fmt: skip
    answer = until(
        "an /inference answer",
        lambda: (r := call("POST", "/inference", INFER))[0] == 200 and r[1],
        timeout=300,
    )
    say(f"inference: {json.dumps(answer)}")

    until(
        "the training's alert over the dashboard's SSE",
        lambda: any((m.get("data") or {}).get("job_id") == job_id for m in events.messages),
        timeout=120,
    )
    say("alert received through nginx")

    tracking_uri = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "manifests" / "api" / "configmap.yaml").read_text().splitlines()
        if line.strip().startswith("MLOPS_MLFLOW_TRACKING_URI:")
    )
    pod = subprocess.run(
        ["kubectl", "--context", CONTEXT, "get", "pod", "-n", "kuberay", "-o", "name",
         "-l", "ray.io/group=serving"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()[0]  # fmt: skip
    moved = subprocess.run(
        ["kubectl", "--context", CONTEXT, "exec", "-n", "kuberay", pod, "--",
         "python", "-c", MOVE_THE_CHAMPION, tracking_uri, MODEL, str(job["model_version"])],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    say(f"a serving node moving the champion: {moved.stdout.strip()} {moved.stderr[-300:]}")
    if moved.stdout.strip() != "PERMISSION_DENIED":
        raise SystemExit("FAILED: the serving nodes' MLflow login was not refused a write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
