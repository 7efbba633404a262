#!/usr/bin/env bash
# Reporting shared by the shell test suites: one "ok - ..." or "not ok - ..."
# line per check on stdout, diagnostics on stderr, then a summary. Sourced,
# never executed.
# shellcheck disable=SC2034  # TAP_LABEL is set by the suites that source this file

TAP_PASSED=0
TAP_FAILED=0
TAP_LABEL= # when set, shown before each description (e.g. the server under test)

# usage: tap_check "description" command [args...]   (runs the command as a test)
tap_check() {
  local what=$1
  shift
  [[ -z $TAP_LABEL ]] || what="$TAP_LABEL: $what"
  if "$@"; then
    TAP_PASSED=$((TAP_PASSED + 1))
    printf 'ok - %s\n' "$what"
  else
    TAP_FAILED=$((TAP_FAILED + 1))
    printf 'not ok - %s\n' "$what"
  fi
}

# usage: tap_diag "message"   (explains a failed check)
tap_diag() {
  printf '#   %s\n' "$*" >&2
}

# usage: tap_expect_equal WHAT EXPECTED ACTUAL
tap_expect_equal() {
  [[ $2 == "$3" ]] && return 0
  tap_diag "$1: expected '$2', got '$3'"
  return 1
}

# usage: tap_summary SUITE   (prints "SUITE: N passed, M failed"; true when
# something passed and nothing failed)
tap_summary() {
  printf '%s: %d passed, %d failed\n' "$1" "$TAP_PASSED" "$TAP_FAILED"
  ((TAP_FAILED == 0 && TAP_PASSED > 0))
}
