"""No credential-looking literal in a tracked file, beyond the reviewed exceptions in
.secrets.baseline (each marked is_secret: false: names of secrets, test fakes). Lock
files are excluded: their integrity hashes look random by design.

The scan is read-only: findings are compared with the baseline by file, type and
hashed value, so moved lines do not matter. After a reviewed change, refresh it with
    .venv/bin/detect-secrets scan --baseline .secrets.baseline
"""

from __future__ import annotations

import json
import random
import string
import subprocess

from infra import kube

EXCLUDED = ("fastapi/requirements.lock", "fastapi/requirements-dev.lock",
            "tests/infra/checkov.lock", "frontend/package-lock.json")  # fmt: skip


def _findings(*files: str) -> set[tuple[str, str, str]]:
    result = subprocess.run(
        [kube.tool("detect-secrets"), "scan", *files],
        cwd=kube.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return _keys(json.loads(result.stdout))


def _keys(report: dict) -> set[tuple[str, str, str]]:
    return {
        (path, item["type"], item["hashed_secret"])
        for path, items in report["results"].items()
        for item in items
    }


def _baseline() -> dict:
    return json.loads((kube.ROOT / ".secrets.baseline").read_text())


def test_no_tracked_file_holds_a_credential_beyond_the_reviewed_ones() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=kube.ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [f for f in tracked if f not in EXCLUDED and f != ".secrets.baseline"]

    new = _findings(*files) - _keys(_baseline())

    assert len(files) > 100
    assert not new, f"credential-looking literals (review, then refresh the baseline): {new}"


def test_every_baseline_exception_was_reviewed() -> None:
    findings = [item for items in _baseline()["results"].values() for item in items]

    assert findings and all(item.get("is_secret") is False for item in findings)


def test_the_scan_catches_a_planted_key() -> None:
    key = "AKIA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=16))
    planted = kube.ROOT / "tests" / "infra" / f"planted-{key[-6:]}.py"
    planted.write_text(f'aws_access_key_id = "{key}"\n')
    try:
        found = _findings(str(planted.relative_to(kube.ROOT)))
    finally:
        planted.unlink()

    assert {kind for _, kind, _ in found} >= {"AWS Access Key"}
    assert not found & _keys(_baseline())
