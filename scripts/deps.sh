#!/usr/bin/env bash
# Installs the external tools the tests use (Debian packages) when missing.
# Under CI=true a tool that is still missing fails the run; elsewhere the
# tests that need it say SKIP with the reason.
set -u
need=(openssl:openssl xmlsec1:xmlsec1 node:nodejs npm:npm)
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing ${missing[*]} and cannot install them (need root and apt-get)"
  fi
fi
# The JOSE cross-check uses the 'jose' npm package, installed locally.
if command -v npm >/dev/null 2>&1 && [ -f test/interop/jose/package.json ] && [ ! -d test/interop/jose/node_modules/jose ]; then
  (cd test/interop/jose && npm ci --silent --no-audit --no-fund >/dev/null 2>&1) || echo "deps: npm ci in test/interop/jose failed"
fi
status=0
for pair in "${need[@]}"; do
  cmd=${pair%%:*}
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "deps: $cmd is still missing"
    status=1
  fi
done
if [ "${CI:-}" = true ]; then exit $status; fi
exit 0
