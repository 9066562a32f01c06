#!/usr/bin/env bash
# Installs the real servers the integration tests and benchmarks run against:
# Prometheus (with promtool), the Prometheus Pushgateway, wrk, Chromium (the live page's browser
# test) and Redis (the Celery and RQ broker), from Debian's packages. Idempotent: does nothing when
# they are already on PATH. (rotel, the OTLP collector agent, comes from PyPI with '.[dev]'.)
set -euo pipefail
missing=()
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: need ${missing[*]} (Prometheus 2.x with promtool, prometheus-pushgateway, wrk, chromium, redis-server); install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "system-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "system-deps: installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for binary in prometheus promtool prometheus-pushgateway wrk chromium redis-server; do
  command -v "$binary" >/dev/null 2>&1 || { echo "system-deps: $binary still missing after install" >&2; exit 1; }
done
