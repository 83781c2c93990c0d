#!/bin/sh
# What `make test` needs from the machine besides Python packages (which it installs itself).
# PostgreSQL, Redis and S3 servers for the tests are found or started by the tests themselves
# (tests/services); these are the tools some tests run directly:
#   - Python 3.11+ with venv (the .venv),
#   - Debian's PostgreSQL 15 server and pgBackRest (tests/system/test_pitr.py),
#   - Node.js 20+ with npm (the docs' Node snippets; sdk/js is built and tested by
#     tests/integration/test_js_sdk.py),
#   - Debian's chromium (tests/system/test_demo_browser.py drives it with Playwright).
# Without arguments: name each missing piece and the command that installs it, exit 1.
# With --install: install what is missing with apt-get (as root, or through sudo).
set -eu
PYTHON=${PYTHON:-python3}
missing_pkgs=""
missing_what=""

need() { # need PACKAGE "WHAT IS MISSING"
    missing_pkgs="$missing_pkgs $1"
    missing_what="$missing_what
  - $2 (Debian package $1)"
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    need python3 "$PYTHON is not on PATH"
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    need python3 "$PYTHON is $("$PYTHON" -V 2>&1), 3.11 or newer is needed"
elif ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    need python3-venv "$PYTHON cannot create a virtual environment (no ensurepip)"
fi
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    need postgresql-15 "PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin"
fi
command -v pgbackrest >/dev/null 2>&1 || need pgbackrest "pgbackrest on PATH"
command -v node >/dev/null 2>&1 || need nodejs "node on PATH"
command -v npm >/dev/null 2>&1 || need npm "npm on PATH"
[ -x /usr/bin/chromium ] || need chromium "Debian's chromium at /usr/bin/chromium"
if [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null 2>&1; then
    need util-linux "runuser on PATH (tests run servers as an ordinary user)"
fi

[ -z "$missing_pkgs" ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo "
command="${sudo}apt-get update && ${sudo}apt-get install -y$missing_pkgs"
if [ "${1:-}" = "--install" ]; then
    echo "installing:$missing_pkgs" >&2
    # Debian's postgresql-15 starts a cluster on 5432 when it can; the tests use it if so.
    ${sudo}apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo}apt-get install -y -qq$missing_pkgs
    exit 0
fi
echo "make test: missing on this machine:$missing_what" >&2
echo "Install them with:" >&2
echo "  $command" >&2
echo "(or: make test-prereqs, which runs that command)" >&2
exit 1
