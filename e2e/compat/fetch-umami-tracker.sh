#!/usr/bin/env bash
# Puts Umami's tracker script, unmodified, from the npm package umami at the
# version and integrity pinned here into node_modules/umami-tracker/. The
# package also holds Umami's whole server, whose dependencies would take
# hundreds of megabytes to install: it is packed, checked and only the
# tracker (src/tracker/index.js, which Umami's build minifies into
# script.js) and the licence are kept.
set -euo pipefail
cd "$(dirname "$0")"
version=2.10.0
integrity='sha512-+lmrnV0751R6U2rkIgVAlE1nWI7yZawlMlJDguW9tlFacCKhnGeCyc7tCMIhNNYIiGIQy4DEX5IzJhm4b3+dPA=='
out=node_modules/umami-tracker
[ -f "$out/index.js" ] && grep -qx "$version" "$out/VERSION" 2>/dev/null && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack "umami@$version" --pack-destination "$tmp" --loglevel=error >/dev/null
tgz="$tmp/umami-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  echo "umami@$version: integrity $got; want $integrity" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/src/tracker/index.js package/LICENSE
mkdir -p "$out"
cp "$tmp/package/src/tracker/index.js" "$tmp/package/LICENSE" "$out/"
echo "$version" >"$out/VERSION"
