#!/usr/bin/env bash
# The platform on a local Kubernetes cluster (kind), on arm64 or amd64 hosts:
#
#   config/init.sh            create or update everything (safe to run again)
#   config/init.sh --dry-run  print the plan; run nothing, change nothing
#   config/init.sh down       delete the cluster and the generated outputs
#   config/init.sh images     list every image the cluster pulls (needs helm and kubectl)
#
# Needs Docker (running), kind >= KIND_MIN_VERSION, kubectl and helm. Versions are in
# config/versions.env, Helm values in helm-values/, manifests in manifests/ and the
# ArgoCD Applications in argocd/. Writes outputs/urls.txt and outputs/credentials.txt.
#
# Settings (environment): MLOPS_CLUSTER_NAME (mlops), MLOPS_HELM_TIMEOUT (10m),
# MLOPS_GIT_URL and MLOPS_GIT_REVISION (default: this clone's `origin` and branch).
set -o errexit -o nounset -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# shellcheck source=config/versions.env
source "${REPO_ROOT}/config/versions.env"

readonly CLUSTER_NAME="${MLOPS_CLUSTER_NAME:-mlops}"
readonly CONTEXT="kind-${CLUSTER_NAME}"
readonly HELM_TIMEOUT="${MLOPS_HELM_TIMEOUT:-10m}"
readonly OUTPUTS="${REPO_ROOT}/outputs"
readonly VALUES="${REPO_ROOT}/helm-values"
readonly RAY_CLUSTER=mlops-ray

DRY_RUN=false
RENDER=""  # set by `images`: helm_release renders into this file instead of installing
ARCH=""
RAY_ARCH_SUFFIX=""
API_IMAGE=""
DASHBOARD_IMAGE=""
# Generated once, then read back from the cluster's Secrets on every later run.
MINIO_USER=mlops-admin
MINIO_PASSWORD=""
MINIO_MLFLOW_KEY=""
MINIO_TRAINING_KEY=""
MINIO_API_KEY=""
MINIO_DATASETS_KEY=""
REDIS_PASSWORD=""
REDIS_API_PASSWORD=""
REDIS_RAY_PASSWORD=""
API_TOKEN=""
RAY_TOKEN=""
MLFLOW_ADMIN_PASSWORD=""
MLFLOW_API_PASSWORD=""
MLFLOW_TRAINER_PASSWORD=""
MLFLOW_SERVING_PASSWORD=""

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Every command that changes something goes through `run`; --dry-run prints it instead.
run() {
  if [[ "${DRY_RUN}" == true ]]; then
    printf '  would run: %s\n' "$*"
    return 0
  fi
  "$@"
}

# `run` for a command that reads DATA on stdin: secrets go there, never on a command line.
run_fed() {  # run_fed DATA COMMAND...
  local data="$1"
  shift
  if [[ "${DRY_RUN}" == true ]]; then
    printf '  would run: %s (its input on stdin)\n' "$*"
    return 0
  fi
  printf '%s\n' "${data}" | "$@"
}

kc() { kubectl --context "${CONTEXT}" "$@"; }

random_secret() {
  # 32 alphanumeric characters; base64 of 48 random bytes always has enough of them.
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | cut -c1-32
}

version_at_least() {  # version_at_least HAVE WANT
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# --- prerequisites ---------------------------------------------------------------

require_tool() {  # require_tool NAME FIX
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. Fix: $2"
}

check_prerequisites() {
  require_tool docker "install Docker Desktop (macOS) or Docker Engine (Linux): https://docs.docker.com/engine/install/"
  require_tool kind "brew install kind, or: go install sigs.k8s.io/kind@v${KIND_MIN_VERSION} (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  require_tool kubectl "brew install kubectl, or see https://kubernetes.io/docs/tasks/tools/"
  require_tool helm "brew install helm, or see https://helm.sh/docs/intro/install/"
  [[ "${DRY_RUN}" == true ]] && return 0
  docker info >/dev/null 2>&1 \
    || die "Docker is not running. Fix: start Docker Desktop (macOS) or run: sudo systemctl start docker (Linux)"
  local kind_version kubectl_version
  kind_version="$(kind version | sed -E 's/^kind v([0-9.]+).*/\1/')"
  version_at_least "${kind_version}" "${KIND_MIN_VERSION}" \
    || die "kind ${kind_version} is too old for the pinned node image. Fix: brew upgrade kind, or: go install sigs.k8s.io/kind@v${KIND_MIN_VERSION}"
  # `kubectl wait --for=create` (waiting for what ArgoCD creates) came with kubectl 1.31.
  kubectl_version="$(kubectl version --client -o json | sed -n -E 's/.*"gitVersion": *"v([0-9.]+).*/\1/p')"
  version_at_least "${kubectl_version}" "${KUBERNETES_MINOR}" \
    || die "kubectl ${kubectl_version} is older than ${KUBERNETES_MINOR}. Fix: brew upgrade kubectl, or see https://kubernetes.io/docs/tasks/tools/"
}

detect_architecture() {
  case "$(uname -m)" in
    arm64 | aarch64) ARCH=arm64; RAY_ARCH_SUFFIX=-aarch64 ;;
    x86_64 | amd64) ARCH=amd64; RAY_ARCH_SUFFIX= ;;
    *) die "unsupported architecture $(uname -m): Ray publishes images for amd64 and arm64 only" ;;
  esac
  # fastapi/Dockerfile picks its base from --platform: this is the tag it will use.
  log "host architecture: ${ARCH}, Ray base image rayproject/ray:${RAY_VERSION}-py311${RAY_ARCH_SUFFIX}"
}

# The image a kustomization deploys: `newName:newTag` of its images: entry. The local
# build uses the same name and tag, so the pods find it in the node without a registry.
kustomization_image() {  # kustomization_image DIR
  awk '/newName:/ {name = $2} /newTag:/ {tag = $2} END {gsub(/"/, "", tag); print name ":" tag}' \
    "${REPO_ROOT}/manifests/$1/kustomization.yaml"
}

# --- the cluster -----------------------------------------------------------------

cluster_exists() {
  [[ "${DRY_RUN}" == true ]] && return 1
  kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"
}

create_cluster() {
  if cluster_exists; then
    log "cluster ${CLUSTER_NAME} exists"
  else
    log "creating cluster ${CLUSTER_NAME}"
    run kind create cluster --name "${CLUSTER_NAME}" --config "${REPO_ROOT}/config/kind-config.yaml" --wait 120s
  fi
}

apply_cluster_manifests() {
  log "namespaces, Kubernetes dashboard and host ports (manifests/cluster)"
  run kc apply --kustomize "${REPO_ROOT}/manifests/cluster"
}

# --- secrets ---------------------------------------------------------------------

read_secret() {  # read_secret NAMESPACE NAME KEY: the value, or nothing
  [[ "${DRY_RUN}" == true ]] && return 0
  local encoded
  encoded="$(kc get secret "$2" --namespace "$1" --ignore-not-found -o "jsonpath={.data.$3}")"
  [[ -n "${encoded}" ]] && printf '%s' "${encoded}" | base64 --decode
  return 0
}

apply_secret() {  # apply_secret NAMESPACE NAME KEY=VALUE...: create or update, never print
  local namespace="$1" name="$2" item
  shift 2
  if [[ "${DRY_RUN}" == true ]]; then
    printf '  would apply secret %s/%s (%s)\n' "${namespace}" "${name}" "${*%%=*}"
    return 0
  fi
  # The manifest is written here and piped: values never reach a command line (visible
  # in `ps`), and a value may span lines (a config file).
  {
    printf 'apiVersion: v1\nkind: Secret\ntype: Opaque\n'
    printf 'metadata:\n  name: %s\n  namespace: %s\ndata:\n' "${name}" "${namespace}"
    for item in "$@"; do
      printf '  %s: %s\n' "${item%%=*}" "$(printf '%s' "${item#*=}" | base64 | tr -d '\n')"
    done
  } | kc apply -f - >/dev/null
}

kept_secret() {  # kept_secret NAMESPACE NAME KEY: the value in the cluster, else a new one
  local value
  value="$(read_secret "$@")"
  printf '%s' "${value:-$(random_secret)}"
}

# MLflow's basic-auth app reads its admin from this file (the chart's `auth` is off: the
# init container it adds to write this file has no resources to set; helm-values/mlflow.yaml).
mlflow_auth_config() {
  cat <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:////mlflow/data/basic_auth.db
admin_username = admin
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
}

# Redis's ACL file (helm-values/redis.yaml mounts it): the default user with the server's
# password, for people and the chart's probes, then one user per component with only its
# keys and data commands, the rules of fastapi/mlops/clients/redis/users.py (tests/infra
# checks they are the same). A file without the default user would leave it passwordless.
REDIS_DATA_COMMANDS="-@all +@read +@write +@keyspace +@stream +@hash +@set +@sortedset \
+@string +@scripting +@transaction +@connection -@dangerous"
redis_acl_file() {
  local ray_keys="~mlops:job:* ~mlops:jobs ~mlops:jobs:* ~mlops:champion-history:* \
~mlops:alerts ~mlops:drift-sample:* ~mlops:trainer-queue:* ~mlops:predictions:* \
~mlops:prediction-index"
  cat <<EOF
user default on >${REDIS_PASSWORD} ~* &* +@all
user api on >${REDIS_API_PASSWORD} ~mlops:* resetchannels ${REDIS_DATA_COMMANDS}
user ray on >${REDIS_RAY_PASSWORD} ${ray_keys} resetchannels ${REDIS_DATA_COMMANDS}
EOF
}

create_secrets() {
  log "secrets (generated once, kept across runs)"
  MINIO_PASSWORD="$(kept_secret minio minio-root rootPassword)"
  MINIO_MLFLOW_KEY="$(kept_secret minio minio-users mlflow)"
  MINIO_TRAINING_KEY="$(kept_secret minio minio-users training)"
  MINIO_API_KEY="$(kept_secret minio minio-users api)"
  MINIO_DATASETS_KEY="$(kept_secret minio minio-users datasets)"
  REDIS_PASSWORD="$(kept_secret db redis-auth password)"
  REDIS_API_PASSWORD="$(kept_secret db redis-auth api)"
  REDIS_RAY_PASSWORD="$(kept_secret db redis-auth ray)"
  API_TOKEN="$(kept_secret fastapi mlops-secrets MLOPS_API_TOKEN)"
  RAY_TOKEN="$(kept_secret kuberay mlops-secrets RAY_AUTH_TOKEN)"
  # MLflow: its admin (people, and the setting up of the users per role), then one user
  # per role (fastapi/mlops/clients/mlflow_users.py). A cluster set up before the users
  # per role kept the admin's password as the API's: it stays the admin's.
  MLFLOW_ADMIN_PASSWORD="$(read_secret mlflow mlflow-auth admin-password)"
  if [[ -n "${MLFLOW_ADMIN_PASSWORD}" ]]; then
    MLFLOW_API_PASSWORD="$(kept_secret fastapi mlops-secrets MLOPS_MLFLOW_PASSWORD)"
    MLFLOW_TRAINER_PASSWORD="$(kept_secret kuberay mlops-secrets MLFLOW_TRACKING_PASSWORD)"
  else
    MLFLOW_ADMIN_PASSWORD="$(kept_secret fastapi mlops-secrets MLOPS_MLFLOW_PASSWORD)"
    MLFLOW_API_PASSWORD="$(random_secret)"
    MLFLOW_TRAINER_PASSWORD="$(random_secret)"
  fi
  MLFLOW_SERVING_PASSWORD="$(kept_secret kuberay mlops-serving MLFLOW_TRACKING_PASSWORD)"
  SIGNING_KEY="$(kept_secret fastapi mlops-secrets MLOPS_MODEL_SIGNING_KEY)"

  # MinIO: the root login stays with MinIO; each service gets a user of its own, created
  # by the chart (helm-values/minio.yaml) with a policy on its prefix of the bucket.
  apply_secret minio minio-root "rootUser=${MINIO_USER}" "rootPassword=${MINIO_PASSWORD}"
  apply_secret minio minio-users "mlflow=${MINIO_MLFLOW_KEY}" \
    "training=${MINIO_TRAINING_KEY}" "api=${MINIO_API_KEY}" "datasets=${MINIO_DATASETS_KEY}"
  apply_secret mlflow mlflow-s3 "AWS_ACCESS_KEY_ID=mlflow" \
    "AWS_SECRET_ACCESS_KEY=${MINIO_MLFLOW_KEY}"
  apply_secret mlflow mlflow-auth "basic_auth.ini=$(mlflow_auth_config)" \
    "admin-password=${MLFLOW_ADMIN_PASSWORD}"
  # Redis: the server's password (the chart's probes read it here), one per platform
  # user (kept here too), and the ACL file made of them.
  apply_secret db redis-auth "password=${REDIS_PASSWORD}" \
    "api=${REDIS_API_PASSWORD}" "ray=${REDIS_RAY_PASSWORD}"
  apply_secret db redis-users "users.acl=$(redis_acl_file)"
  # The API token is the API's alone: Ray's pods never see it. Ray's token goes to Ray's
  # pods (RAY_AUTH_TOKEN, read by Ray itself) and to the API, which calls Ray with it.
  # MLflow: the API signs in as `api` (MLOPS_MLFLOW_PASSWORD); Ray's head and trainer
  # nodes (mlops-secrets) as `trainer`, and its serving nodes (mlops-serving) as
  # `serving`, through the mlflow library's own variables. The trainer nodes read S3
  # datasets, and the API their headers (as `api`, read-only too: a training on another
  # dataset must have its model's columns). The signing key seals the versions the trainer registers (MLflow's
  # users never see it); the API and the replicas check the seal with it.
  apply_secret fastapi mlops-secrets "MLOPS_REDIS_PASSWORD=${REDIS_API_PASSWORD}" \
    "MLOPS_API_TOKEN=${API_TOKEN}" "MLOPS_RAY_AUTH_TOKEN=${RAY_TOKEN}" \
    "MLOPS_MLFLOW_PASSWORD=${MLFLOW_API_PASSWORD}" "MLOPS_MODEL_SIGNING_KEY=${SIGNING_KEY}" \
    "MLOPS_S3_ACCESS_KEY_ID=api" "MLOPS_S3_SECRET_ACCESS_KEY=${MINIO_API_KEY}"
  apply_secret kuberay mlops-secrets "MLOPS_REDIS_PASSWORD=${REDIS_RAY_PASSWORD}" \
    "MLOPS_S3_ACCESS_KEY_ID=training" "MLOPS_S3_SECRET_ACCESS_KEY=${MINIO_TRAINING_KEY}" \
    "RAY_AUTH_TOKEN=${RAY_TOKEN}" "MLOPS_MODEL_SIGNING_KEY=${SIGNING_KEY}" \
    "MLFLOW_TRACKING_USERNAME=trainer" "MLFLOW_TRACKING_PASSWORD=${MLFLOW_TRAINER_PASSWORD}"
  apply_secret kuberay mlops-serving "MLOPS_REDIS_PASSWORD=${REDIS_RAY_PASSWORD}" \
    "RAY_AUTH_TOKEN=${RAY_TOKEN}" "MLOPS_MODEL_SIGNING_KEY=${SIGNING_KEY}" \
    "MLFLOW_TRACKING_USERNAME=serving" "MLFLOW_TRACKING_PASSWORD=${MLFLOW_SERVING_PASSWORD}"
}

# --- images ----------------------------------------------------------------------

build_and_load_images() {
  API_IMAGE="$(kustomization_image api)"
  DASHBOARD_IMAGE="$(kustomization_image dashboard)"
  log "building ${API_IMAGE} and ${DASHBOARD_IMAGE} for linux/${ARCH}"
  run docker build --platform "linux/${ARCH}" \
    --build-arg "RAY_VERSION=${RAY_VERSION}" \
    --file "${REPO_ROOT}/fastapi/Dockerfile" --tag "${API_IMAGE}" "${REPO_ROOT}"
  run docker build --platform "linux/${ARCH}" --tag "${DASHBOARD_IMAGE}" "${REPO_ROOT}/frontend"
  run kind load docker-image "${API_IMAGE}" "${DASHBOARD_IMAGE}" --name "${CLUSTER_NAME}"
}

# --- Helm releases ---------------------------------------------------------------

add_helm_repositories() {
  log "Helm repositories"
  run helm repo add argo "${ARGOCD_CHART_REPO}" --force-update
  run helm repo add kuberay "${KUBERAY_CHART_REPO}" --force-update
  run helm repo add minio "${MINIO_CHART_REPO}" --force-update
  run helm repo add community-charts "${MLFLOW_CHART_REPO}" --force-update
  run helm repo update argo kuberay minio community-charts
}

helm_release() {  # helm_release RELEASE CHART VERSION NAMESPACE VALUES [ARGS...]
  local release="$1" chart="$2" version="$3" namespace="$4" values="$5"
  shift 5
  if [[ -n "${RENDER}" ]]; then
    helm template "${release}" "${chart}" --version "${version}" --namespace "${namespace}" \
      --values "${VALUES}/${values}" "$@" >>"${RENDER}"
    return 0
  fi
  log "helm release ${release} (${chart} ${version}) in ${namespace}"
  run helm upgrade --install "${release}" "${chart}" --version "${version}" \
    --kube-context "${CONTEXT}" --namespace "${namespace}" \
    --values "${VALUES}/${values}" --wait --timeout "${HELM_TIMEOUT}" "$@"
}

install_releases() {
  # MinIO first: MLflow's artifacts and the dataset live in its `mlops` bucket.
  helm_release minio minio/minio "${MINIO_CHART_VERSION}" minio minio.yaml
  helm_release mlflow community-charts/mlflow "${MLFLOW_CHART_VERSION}" mlflow mlflow.yaml
  helm_release redis "${REDIS_CHART}" "${REDIS_CHART_VERSION}" db redis.yaml
  helm_release kuberay-operator kuberay/kuberay-operator "${KUBERAY_OPERATOR_CHART_VERSION}" kuberay kuberay-operator.yaml
  helm_release ray kuberay/ray-cluster "${RAY_CLUSTER_CHART_VERSION}" kuberay ray-cluster.yaml \
    --set "image.repository=${API_IMAGE%:*}" --set "image.tag=${API_IMAGE##*:}" \
    --set "head.rayVersion=${RAY_VERSION}"
  # Helm does not wait for custom resources: wait for KubeRay to report the head ready.
  [[ -n "${RENDER}" ]] && return 0
  run kc wait raycluster/"${RAY_CLUSTER}" --namespace kuberay \
    --for=condition=HeadPodReady --timeout="${HELM_TIMEOUT}"
}

configmap_value() {  # configmap_value KEY: the API's setting in manifests/api/configmap.yaml
  sed -n "s/^ *$1: *//p" "${REPO_ROOT}/manifests/api/configmap.yaml"
}

ray_head_pod() {  # where init.sh runs the platform's own code in the cluster
  if [[ "${DRY_RUN}" == true ]]; then
    printf 'pod/%s-head\n' "${RAY_CLUSTER}"
    return 0
  fi
  kc get pod --namespace kuberay -o name \
    --selector "ray.io/cluster=${RAY_CLUSTER},ray.io/node-type=head"
}

# MLflow's users per role, set up from the Ray head (it reaches MLflow by the name the
# platform uses) with the admin's login and the passwords on stdin, never a command line.
create_mlflow_users() {
  local head_pod format request
  head_pod="$(ray_head_pod)"
  format='{"tracking_uri": "%s", "admin_password": "%s", "passwords": '
  format+='{"trainer": "%s", "api": "%s", "serving": "%s"}}'
  log "MLflow users: trainer, api, serving"
  # shellcheck disable=SC2059  # the format is ours; the values are alphanumeric
  request="$(printf "${format}" "$(configmap_value MLOPS_MLFLOW_TRACKING_URI)" \
    "${MLFLOW_ADMIN_PASSWORD}" "${MLFLOW_TRAINER_PASSWORD}" "${MLFLOW_API_PASSWORD}" \
    "${MLFLOW_SERVING_PASSWORD}")"
  run_fed "${request}" kc exec --stdin --namespace kuberay "${head_pod}" -- \
    python -m mlops.clients.mlflow_users
}

# The dataset goes in before ArgoCD starts the API, so the first training finds it.
upload_dataset() {
  local dataset_uri s3_endpoint head_pod
  dataset_uri="$(configmap_value MLOPS_DATASET_URI)"
  s3_endpoint="$(configmap_value MLOPS_S3_ENDPOINT_URL)"
  log "iris dataset to ${dataset_uri}"
  head_pod="$(ray_head_pod)"
  # Ray's pods may only read datasets: the seed writes as the `datasets` user, whose key
  # goes through stdin, never a command line.
  run_fed "$(printf 'datasets\n%s' "${MINIO_DATASETS_KEY}")" \
    kc exec --stdin --namespace kuberay "${head_pod}" -- env "MLOPS_DATASET_URI=${dataset_uri}" \
    "MLOPS_S3_ENDPOINT_URL=${s3_endpoint}" python -m mlops.ml.seed --s3-credentials-from-stdin
}

# --- ArgoCD ----------------------------------------------------------------------

git_source() {  # prints "URL REVISION" of this clone, as ArgoCD must fetch it
  local url="${MLOPS_GIT_URL:-}" revision="${MLOPS_GIT_REVISION:-}"
  if [[ -z "${url}" ]]; then
    url="$(git -C "${REPO_ROOT}" remote get-url origin 2>/dev/null || true)"
    # git@host:owner/repo.git -> https://host/owner/repo.git: ArgoCD has no SSH key.
    if [[ "${url}" =~ ^git@([^:]+):(.+)$ ]]; then
      url="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
  fi
  if [[ -z "${revision}" ]]; then
    # The branch; on a detached HEAD, the commit.
    revision="$(git -C "${REPO_ROOT}" symbolic-ref --short HEAD 2>/dev/null \
      || git -C "${REPO_ROOT}" rev-parse HEAD 2>/dev/null || true)"
  fi
  [[ -n "${url}" ]] || url="$(sed -n 's/^ *repoURL: *//p' "${REPO_ROOT}/argocd/mlops-api.yaml")"
  [[ -n "${revision}" ]] || revision=main
  printf '%s %s\n' "${url}" "${revision}"
}

install_argocd() {
  helm_release argocd argo/argo-cd "${ARGOCD_CHART_VERSION}" argocd argo-cd.yaml
}

apply_applications() {
  local url revision default_url file
  read -r url revision < <(git_source)
  [[ "${url}" == http* ]] \
    || log "warning: ArgoCD cannot fetch ${url}; push this repository and set MLOPS_GIT_URL"
  log "ArgoCD project and Applications from ${url} at ${revision}"
  default_url="$(sed -n 's/^ *repoURL: *//p' "${REPO_ROOT}/argocd/mlops-api.yaml")"
  run kc wait crd/appprojects.argoproj.io crd/applications.argoproj.io \
    --for=condition=Established --timeout=60s
  # The project first: an Application of a project that does not exist yet is refused.
  for file in "${REPO_ROOT}"/argocd/project.yaml "${REPO_ROOT}"/argocd/mlops-*.yaml; do
    if [[ "${DRY_RUN}" == true ]]; then
      printf '  would apply %s\n' "${file#"${REPO_ROOT}/"}"
      continue
    fi
    sed -e "s|${default_url}|${url}|" -e "s|^\( *targetRevision:\).*|\1 ${revision}|" \
      "${file}" | kc apply -f -
  done
}

wait_for_applications() {
  local target namespace deployment
  for target in fastapi/mlops-api frontend/mlops-dashboard; do
    namespace="${target%/*}" deployment="${target#*/}"
    log "waiting for ArgoCD to roll out ${deployment} in ${namespace}"
    run kc wait deployment/"${deployment}" --namespace "${namespace}" \
      --for=create --timeout="${HELM_TIMEOUT}"
    run kc wait deployment/"${deployment}" --namespace "${namespace}" \
      --for=condition=Available --timeout="${HELM_TIMEOUT}"
  done
}

# --- outputs ---------------------------------------------------------------------

write_outputs() {
  if [[ "${DRY_RUN}" == true ]]; then
    printf '  would write outputs/urls.txt and outputs/credentials.txt (mode 600)\n'
    return 0
  fi
  mkdir -p "${OUTPUTS}"
  cat >"${OUTPUTS}/urls.txt" <<EOF
API (Swagger at /docs)   http://localhost:8888
Dashboard                http://localhost:5001
MLflow                   http://localhost:5555
Ray dashboard            http://localhost:8265
ArgoCD                   http://localhost:8080
MinIO console            http://localhost:9001
MinIO S3 API             http://localhost:9000
Redis                    redis://localhost:6379
Kubernetes dashboard     http://localhost:8001
EOF
  local argocd_password dashboard_token
  argocd_password="$(read_secret argocd argocd-initial-admin-secret password)"
  dashboard_token="$(read_secret kubernetes-dashboard dashboard-admin-token token)"
  (
    umask 077
    cat >"${OUTPUTS}/credentials.txt" <<EOF
# Generated by config/init.sh for cluster ${CONTEXT}. Keep private; not in git.
api.token=${API_TOKEN}
ray.token=${RAY_TOKEN}
mlflow.user=admin
mlflow.password=${MLFLOW_ADMIN_PASSWORD}
argocd.user=admin
argocd.password=${argocd_password}
minio.user=${MINIO_USER}
minio.password=${MINIO_PASSWORD}
minio.datasets.user=datasets
minio.datasets.password=${MINIO_DATASETS_KEY}
redis.password=${REDIS_PASSWORD}
kubernetes-dashboard.token=${dashboard_token}
EOF
  )
  chmod 600 "${OUTPUTS}/credentials.txt"
  log "ready: URLs in outputs/urls.txt, credentials in outputs/credentials.txt"
  log "writes to the API need its token: Authorization: Bearer <api.token in credentials.txt>"
  cat "${OUTPUTS}/urls.txt" >&2
}

# --- commands --------------------------------------------------------------------

up() {
  check_prerequisites
  detect_architecture
  create_cluster
  apply_cluster_manifests
  create_secrets
  build_and_load_images
  add_helm_repositories
  install_releases
  create_mlflow_users
  upload_dataset
  install_argocd
  apply_applications
  wait_for_applications
  write_outputs
}

down() {
  require_tool kind "nothing to delete without kind"
  if cluster_exists; then
    log "deleting cluster ${CLUSTER_NAME}"
    run kind delete cluster --name "${CLUSTER_NAME}"
  else
    log "no cluster ${CLUSTER_NAME}"
  fi
  run rm -f "${OUTPUTS}/urls.txt" "${OUTPUTS}/credentials.txt"
}

# Every image the releases and manifests/ run, one per line, rendered as `up` installs
# them (same charts, versions, values and flags), our own two images (built by `up`)
# left out. CI resolves each for amd64 and arm64 (.github/workflows/e2e.yml).
images() {
  require_tool helm "install helm: https://helm.sh/docs/intro/install/"
  require_tool kubectl "install kubectl: https://kubernetes.io/docs/tasks/tools/"
  detect_architecture
  API_IMAGE="$(kustomization_image api)"
  DASHBOARD_IMAGE="$(kustomization_image dashboard)"
  RENDER="$(mktemp)"
  # shellcheck disable=SC2064  # expand now: RENDER is this call's file
  trap "rm -f '${RENDER}'" EXIT
  add_helm_repositories
  install_releases
  install_argocd
  local folder
  for folder in cluster api dashboard; do
    kubectl kustomize "${REPO_ROOT}/manifests/${folder}" >>"${RENDER}"
  done
  sed -n -E 's/^[[:space:]-]*image:[[:space:]]*"?([^"[:space:]]+)"?.*$/\1/p' "${RENDER}" |
    grep -v -x -F -e "${API_IMAGE}" -e "${DASHBOARD_IMAGE}" | sort -u
}

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

main() {
  local command=up arg
  for arg in "$@"; do
    case "${arg}" in
      --dry-run) DRY_RUN=true ;;
      up | down | images) command="${arg}" ;;
      -h | --help | help) usage; return 0 ;;
      *) usage >&2; die "unknown argument: ${arg}" ;;
    esac
  done
  [[ "${DRY_RUN}" == true ]] && log "dry run: nothing will be created, changed or deleted"
  "${command}"
}

main "$@"
