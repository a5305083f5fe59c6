"""Resolve every image the cluster pulls for amd64 and arm64, and print its digest.

    ./config/init.sh images | python3 tests/cluster/resolve_images.py

Run by .github/workflows/e2e.yml (it needs Docker's buildx and registry access). Each
image must have a manifest for linux/amd64 and linux/arm64; the printed `name@digest`
is what to copy into a values file or manifest to pin it. Exit 1 if any image does not
resolve or lacks an architecture. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

ARCHITECTURES = ("amd64", "arm64")


def platforms(raw: dict) -> set[str]:
    """Linux architectures an index (or a single-platform manifest's config) names."""
    if "manifests" in raw:
        return {
            m["platform"]["architecture"]
            for m in raw["manifests"]
            if m.get("platform", {}).get("os") == "linux"
        }
    return set()  # a single manifest: one architecture, not both


def resolve(image: str) -> tuple[str, set[str]]:
    inspected = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", "--raw", image],
        capture_output=True,
        check=True,
        timeout=120,
    )
    digest = "sha256:" + hashlib.sha256(inspected.stdout).hexdigest()
    return digest, platforms(json.loads(inspected.stdout))


def main() -> int:
    images = sorted({line.strip() for line in sys.stdin if line.strip()})
    failed = 0
    for image in images:
        try:
            digest, found = resolve(image)
        except subprocess.CalledProcessError as error:
            failed += 1
            sys.stdout.write(f"FAILED {image}: {error.stderr.decode().strip()}\n")
            continue
        missing = [arch for arch in ARCHITECTURES if arch not in found]
        name = image.split("@")[0]
        if missing:
            failed += 1
            sys.stdout.write(f"FAILED {name}@{digest}: no linux/{', linux/'.join(missing)}\n")
        else:
            sys.stdout.write(f"ok     {name}@{digest}\n")
    sys.stdout.write(f"{len(images)} images, {failed} failed\n")
    return 1 if failed or not images else 0


if __name__ == "__main__":
    sys.exit(main())
