#!/usr/bin/env bash
# Install wstest (Autobahn|Testsuite) into .wstest-venv at the top of the checkout.
# wstest is Python 2.7 only (autobahntestsuite 25.10.1 pins Twisted 19.10 and Autobahn 0.10.9),
# so it needs a python2.7 (PYTHON2=...; this machine has pyenv's) and virtualenv < 20.22, the
# last virtualenv that creates Python 2 environments, in a small Python 3 venv of its own.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON2="${PYTHON2:-$(command -v python2.7 || echo /root/.pyenv/versions/2.7.18/bin/python2.7)}"
"$PYTHON2" --version
test -x "$ROOT/.wstest-tools/bin/virtualenv" || {
    python3 -m venv "$ROOT/.wstest-tools"
    "$ROOT/.wstest-tools/bin/pip" install -q "virtualenv<20.22"
}
test -x "$ROOT/.wstest-venv/bin/python" ||
    "$ROOT/.wstest-tools/bin/virtualenv" -q -p "$PYTHON2" "$ROOT/.wstest-venv"
"$ROOT/.wstest-venv/bin/pip" install -q autobahntestsuite==25.10.1
"$ROOT/.wstest-venv/bin/wstest" --autobahnversion
