#!/usr/bin/env bash
# The main job end to end, on a fresh machine, with no internet: installs Debian's
# docker-registry if missing, builds dist, starts a registry on 127.0.0.1 with a temporary
# store, fills it with a sample image (config + LAYERS random layers) through the registry's
# upload API, then fetches every layer with one worker process into an OCI layout and checks
# each file's sha256. The registry is stopped by its PID on exit.
#
#   scripts/demo.sh            # 200 layers
#   LAYERS=1000 scripts/demo.sh
#   DIST=target/debug/dist scripts/demo.sh   # that binary, not built here (as the tests run it)
set -euo pipefail
# A DIST with a slash is a path from where the script was called, not from the repository
# it moves into: `DIST=./dist` from elsewhere ran nothing, and failed only once the
# registry was filled. One without is a command on PATH.
case ${DIST:-} in
  */*) DIST=$(realpath -m -- "$DIST") ;;
esac
if [ -n "${DIST:-}" ] && ! command -v "$DIST" >/dev/null; then
  echo "DIST=$DIST: no such program" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-200}
# A count, checked before anything starts: seq took `1e3` for 1000, and the arithmetic
# failed on it only once they were all pushed and fetched.
case $LAYERS in
  *[!0-9]*)
    echo "LAYERS=$LAYERS: not a number of layers" >&2
    exit 1
    ;;
esac
# In decimal, as seq reads it: the shell's arithmetic takes `08` for octal, and refuses it.
LAYERS=$((10#$LAYERS))

scripts/install-missing.sh docker-registry curl jq
if [ -z "${DIST:-}" ]; then
  cargo build --release --quiet
  DIST=$PWD/target/release/dist
fi

work=$(mktemp -d)
pid=""
# The registry dies of our SIGTERM: its status (143) must not become the script's.
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free port: the kernel's pick where python3 is installed; otherwise a random one nothing
# answers on (a fresh Debian often lacks python3, and a fixed port could be another server's).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null && return
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found on 127.0.0.1" >&2
  return 1
}
port=$(free_port)
cat >"$work/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/store}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port, secret: demo}
health: {storagedriver: {enabled: false}}
YML
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  # A registry that exited (port taken after all, bad config) must not leave us talking to
  # whatever else answers there.
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "docker-registry exited at start:" >&2
    cat "$work/registry.log" >&2
    exit 1
  fi
  curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" || {
  echo "docker-registry did not answer on 127.0.0.1:$port within 10 s:" >&2
  cat "$work/registry.log" >&2
  exit 1
}
reg=http://127.0.0.1:$port
repo=demo/app

push_blob() { # push_blob FILE -> prints digest
  local d loc
  d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  loc=$(curl -sf -D - -o /dev/null -X POST "$reg/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in http*) ;; *) loc=$reg$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$1" "$loc"
  echo "$d"
}

echo "filling $reg/$repo with a config and $LAYERS layers..."
mkdir -p "$work/blobs"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/blobs/config"
cfg=$(push_blob "$work/blobs/config")
layers=""
for i in $(seq "$LAYERS"); do
  head -c $((4096 + (i * 7919) % 61440)) /dev/urandom >"$work/blobs/$i"
  d=$(push_blob "$work/blobs/$i")
  layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d\",\"size\":$(stat -c %s "$work/blobs/$i")}"
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
  "$cfg" "$(stat -c %s "$work/blobs/config")" "$layers" >"$work/manifest.json"
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @"$work/manifest.json" "$reg/v2/$repo/manifests/latest"

loc=127.0.0.1:$port/$repo
echo "+ dist fetch $loc latest mediatype:application/vnd.oci.image.manifest.v1+json | jq -c '.config, .layers[]' | dist fetch $loc - -o OUT --report REPORT > /dev/null"
start=$(date +%s%N)
"$DIST" fetch "$loc" latest mediatype:application/vnd.oci.image.manifest.v1+json \
  | jq -c '.config, .layers[]' \
  | "$DIST" fetch "$loc" - -o "$work/out" --report "$work/report.jsonl" >/dev/null
end=$(date +%s%N)
ok=$(jq -r 'select(.status=="ok") | .path' "$work/report.jsonl" | wc -l)
bad=0
while read -r digest path; do
  [ "sha256:$(sha256sum "$path" | cut -d' ' -f1)" = "$digest" ] || { echo "MISMATCH $path"; bad=$((bad + 1)); }
done < <(jq -r '"\(.digest) \(.path)"' "$work/report.jsonl")
echo "fetched $ok objects in $(((end - start) / 1000000)) ms; $bad failed a second check by sha256sum"
# Not a `[ ] && [ ]` list: set -e lets all but its last command fail, and a demo that
# fetched fewer objects than it pushed said it passed.
if [ "$ok" -ne $((LAYERS + 1)) ] || [ "$bad" -ne 0 ]; then
  echo "demo failed: $((LAYERS + 1)) objects pushed, $ok fetched, $bad of them wrong" >&2
  exit 1
fi
echo "demo passed"
