"""No credential-looking literal in a tracked file, beyond the reviewed exceptions in
.secrets.baseline (each marked is_secret: false: names of secrets, test fakes). Lock
files are excluded: their integrity hashes look random by design.

After a reviewed change: .venv/bin/detect-secrets scan --baseline .secrets.baseline
"""

from __future__ import annotations

import json
import random
import string
import subprocess

from infra import kube

EXCLUDED = ("fastapi/requirements.lock", "fastapi/requirements-dev.lock",
            "tests/infra/checkov.lock", "frontend/package-lock.json")  # fmt: skip


def _hook(*files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kube.tool("detect-secrets-hook"), "--baseline", ".secrets.baseline", *files],
        cwd=kube.ROOT,
        capture_output=True,
        text=True,
    )


def test_no_tracked_file_holds_a_new_credential() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=kube.ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [f for f in tracked if f not in EXCLUDED and f != ".secrets.baseline"]

    result = _hook(*files)

    assert len(files) > 100
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_baseline_exception_was_reviewed() -> None:
    baseline = json.loads((kube.ROOT / ".secrets.baseline").read_text())

    findings = [item for items in baseline["results"].values() for item in items]
    assert findings and all(item.get("is_secret") is False for item in findings)


def test_the_scan_catches_a_planted_key() -> None:
    key = "AKIA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=16))
    planted = kube.ROOT / "tests" / "infra" / f"planted-{key[-6:]}.py"
    planted.write_text(f'aws_access_key_id = "{key}"\n')
    try:
        result = _hook(str(planted.relative_to(kube.ROOT)))
    finally:
        planted.unlink()

    assert result.returncode == 1
    assert "AWS Access Key" in result.stdout
