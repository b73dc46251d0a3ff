#!/usr/bin/env bash
# Install the Debian packages kgateway needs, if any is missing.
#
#   scripts/system-deps.sh [run|test]             install what is missing (root)
#   scripts/system-deps.sh [run|test] --check     only report; exit 1 if something is missing
#   scripts/system-deps.sh [run|test] --dry-run   say what would be installed; change nothing
#
# run (the default; `make run`): what running the gateway and its tutorials needs
#   python3-venv      `make venv` (python3 -m venv); not on a fresh Debian 12
#   rabbitmq-server   the AMQP 0-9-1 broker (scripts/rabbitmq.sh)
#   activemq          the JMS broker, STOMP side (scripts/activemq.sh)
#   libxstream-java   } on ActiveMQ's class path for STOMP replies that carry
#   libjettison-java  } MapMessages/advisories (only "recommended" by Debian)
#   npm               (and nodejs) fetches the vendored browser clients of web/
#                     (scripts/vendor-web.sh); missing when no `npm` is on PATH (an npm
#                     from NodeSource's nodejs package or nvm is fine)
# test (`make test`): run's packages and what only the tests use
#   haproxy           the load balancer in front of several gateways
#   nginx-light       the other load balancer the pool tests put in front of gateways
#   chromium          the browser for tests/browser/ (driven by playwright-core)
#   iptables iproute2 network namespaces and packet drops for topology tests
#   tinyproxy         the authenticating HTTP CONNECT proxy of the tests (scripts/tinyproxy.sh)
#   slapd ldap-utils  the LDAP directory the ldap login module is tested against (scripts/slapd.sh)
#
# Idempotent and fast when everything is there: one dpkg-query, no apt. Otherwise, as
# root, one `apt-get update` then one `apt-get install` of the missing packages, with
# apt's progress shown (a fresh machine takes a few minutes).
set -euo pipefail

RUN_PACKAGES=(python3-venv rabbitmq-server activemq libxstream-java libjettison-java)
TEST_PACKAGES=(haproxy nginx-light chromium iptables iproute2 tinyproxy slapd ldap-utils)

set_name=run mode=install
for arg in "$@"; do
    case "$arg" in
        run) set_name=run ;;
        test) set_name=test ;;
        --check) mode=check ;;
        --dry-run|-n) mode=dry-run ;;
        *) echo "usage: $0 [run|test] [--check|--dry-run]" >&2; exit 2 ;;
    esac
done
PACKAGES=("${RUN_PACKAGES[@]}")
[ "$set_name" = test ] && PACKAGES+=("${TEST_PACKAGES[@]}")

missing=()
while read -r pkg status; do
    [ "$status" = installed ] || missing+=("$pkg")
done < <(
    for p in "${PACKAGES[@]}"; do
        # ${db:Status-Status} is "installed" only for a fully configured package.
        printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo absent)"
    done
)
# npm is a command, not a package name: NodeSource's nodejs package ships it too.
command -v npm >/dev/null || missing+=(npm)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system-deps.sh: $set_name packages all installed" >&2
    exit 0
fi

if [ "$mode" = dry-run ]; then
    echo "system-deps.sh: would install: ${missing[*]}"
    exit 0
fi
if [ "$mode" = check ] || [ "$(id -u)" != 0 ]; then
    echo "system-deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps.sh: install them as root with:" >&2
    echo "    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "system-deps.sh: installing ${missing[*]} (apt's progress follows)" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (e.g. one started by hand) instead of failing.
APT=(apt-get -q -o DPkg::Lock::Timeout=900 -o Dpkg::Use-Pty=0)
# Packages must not start their daemons (nginx would take port 80 on every interface):
# the project's scripts and tests start what they need, on loopback.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
t0=$(date +%s)
echo "system-deps.sh: [1/2] apt-get update" >&2
"${APT[@]}" update
echo "system-deps.sh: [2/2] apt-get install ${missing[*]}" >&2
"${APT[@]}" install -y "${missing[@]}"
echo "system-deps.sh: installed in $(( $(date +%s) - t0 )) s" >&2
