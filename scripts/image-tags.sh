#!/usr/bin/env bash
# The tags and version label of the app image pushed for one commit, in the
# format of GitHub Actions' $GITHUB_OUTPUT (the Image workflow appends them):
#   push to main        IMAGE:<commit sha>  IMAGE:latest      version=<commit sha>
#   tag vX.Y.Z[-pre]    IMAGE:<commit sha>  IMAGE:X.Y.Z[-pre]  version=X.Y.Z[-pre]
# Any other ref is refused (exit 2), so nothing is pushed under a made-up tag.
#
# usage: scripts/image-tags.sh IMAGE   (registry/repository, no tag)
# env:   GITHUB_REF (refs/heads/main, refs/tags/v1.2.3)  GITHUB_SHA (40 hex)
#        RELEASE_BRANCH (main): the branch whose pushes move `latest`
# ie:    GITHUB_REF=refs/tags/v1.2.3 GITHUB_SHA=$(git rev-parse HEAD) \
#          scripts/image-tags.sh 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webcluster
set -Eeuo pipefail
ME="image-tags"
# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# SemVer 2.0 without build metadata: Docker tags cannot hold '+'.
SEMVER_TAG='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
# A registry host, then a repository path in lower case (Docker's grammar).
IMAGE_NAME='^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$'

usage() {
  log "error: $1"
  log "usage: GITHUB_REF=refs/heads/main|refs/tags/vX.Y.Z GITHUB_SHA=<40 hex> $0 REGISTRY/REPOSITORY"
  exit 2
}

main() {
  local image=${1:-} ref=${GITHUB_REF:-} sha=${GITHUB_SHA:-} branch=${RELEASE_BRANCH:-main}
  local tags version
  (($# == 1)) || usage "expected one argument, got $#"
  [[ $image =~ $IMAGE_NAME ]] || usage "not a registry/repository name without a tag: '$image'"
  [[ $sha =~ ^[0-9a-f]{40}$ ]] || usage "GITHUB_SHA must be a full commit SHA (40 lower-case hex), got: '$sha'"
  case $ref in
    "refs/heads/$branch")
      tags=("$sha" latest)
      version=$sha
      ;;
    refs/tags/*)
      [[ ${ref#refs/tags/} =~ $SEMVER_TAG ]] ||
        usage "tag '${ref#refs/tags/}' is not a version tag like v1.2.3 or v1.2.3-rc.1"
      version=${ref#refs/tags/v}
      tags=("$sha" "$version")
      ;;
    *) usage "images are pushed for refs/heads/$branch and version tags only, not '$ref'" ;;
  esac
  log "tags for $ref: ${tags[*]}"
  printf 'tags<<EOT\n'
  printf '%s\n' "${tags[@]/#/$image:}"
  printf 'EOT\nversion=%s\n' "$version"
}

main "$@"
