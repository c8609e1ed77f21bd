#!/usr/bin/env bash
# Download benchmark of issue 3, on loopback, with nginx (Debian `nginx-light`) as the server.
# Not a test: it prints timings and ratios, to be read by a person.
#
#   bench/download.sh              # 2 GiB file in /tmp/lifeos-spark-bench (never in the repo)
#   BENCH_SIZE_MIB=512 bench/download.sh
#   BENCH_SWEEP=1 bench/download.sh   # also time --connections 1..16 (uncapped and 1 MB/s)
#
# Measures, in one run:
#   uncapped   `models pull` (download + sha256 + fsync + rename) vs `curl -o` (no verification)
#   40 MB/s    nginx `limit_rate 40m` (per request; a CDN-like cap): pull vs `aria2c -x8 -s8`
#   1 MB/s     `limit_rate 1m` on a 64 MiB file: nginx limits per request and grants each
#              request one second at full speed, so at 40m a 4 MiB piece is never slowed down;
#              at 1m the cap binds (a piece takes ~3 s), which is what a per-connection CDN
#              cap does to every request
#   re-run     pull with every file present, for a manifest shaped like the default one
#              (17 files, 13.9 GB, as sparse files: a re-run must only stat, never hash)
#   peak RSS   of pull, from /usr/bin/time
set -euo pipefail
cd "$(dirname "$0")/.."

work=${BENCH_DIR:-/tmp/lifeos-spark-bench}
size_mib=${BENCH_SIZE_MIB:-2048}
bin=$PWD/target/release/lifeos-spark
port=${BENCH_PORT:-18431}
capped_port=$((port + 1))
tight_port=$((port + 2))
tight_mib=${BENCH_TIGHT_MIB:-64}

for tool in nginx curl aria2c /usr/bin/time openssl; do
  command -v "$tool" >/dev/null || { echo "bench: \`$tool\` is missing (apt-get install nginx-light curl aria2 time openssl)" >&2; exit 1; }
done
[ -x "$bin" ] || cargo build --release
mkdir -p "$work/www" "$work/nginx" "$work/out"

file=$work/www/model.bin
if [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" != $((size_mib << 20)) ]; then
  echo "bench: writing a ${size_mib} MiB random file to $file" >&2
  head -c $((size_mib << 20)) /dev/urandom >"$file"
  rm -f "$file.sha256"
fi
[ -f "$file.sha256" ] || openssl dgst -sha256 -r "$file" | cut -d' ' -f1 >"$file.sha256"
sha=$(cat "$file.sha256")
size=$(stat -c %s "$file")
small=$work/www/small.bin
[ "$(stat -c %s "$small" 2>/dev/null || echo 0)" = $((tight_mib << 20)) ] || head -c $((tight_mib << 20)) "$file" >"$small"

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$port; root $work/www; }
  server { listen 127.0.0.1:$capped_port; root $work/www; limit_rate 40m; }
  server { listen 127.0.0.1:$tight_port; root $work/www; limit_rate 1m; }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
trap 'nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -s stop; rm -rf "$work/out"' EXIT

manifest() { # manifest PORT [FILE] -> path of a one-file manifest served on PORT
  local name=${2:-model.bin} bytes=$size hash=$sha
  if [ "$name" = small.bin ]; then
    bytes=$(stat -c %s "$small")
    hash=$(openssl dgst -sha256 -r "$small" | cut -d' ' -f1)
  fi
  cat >"$work/m-$1-$name.yaml" <<EOF
name: bench
models:
  - id: model
    url: http://127.0.0.1:$1/$name
    dest: models/$name
    size: $bytes
    sha256: $hash
EOF
  echo "$work/m-$1-$name.yaml"
}

# timed NAME CMD...: wall seconds and peak RSS (KiB) into $work/NAME.time
timed() {
  local name=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" >/dev/null
  echo "$(cut -d' ' -f1 "$work/$name.time")"
}
rss_mib() { echo $(( $(cut -d' ' -f2 "$work/$1.time") / 1024 )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
pull() { # pull NAME PORT FILE [ARGS...]
  local name=$1 p=$2 f=$3; shift 3
  rm -rf "$work/out/$name"
  timed "$name" "$bin" -q --no-progress models pull --manifest "$(manifest "$p" "$f")" --root "$work/out/$name" "$@"
}

echo "file: $size bytes; $(nproc) cores; $(uname -r)"

rm -f "$work/out/curl.bin"
t_curl=$(timed curl curl -s -o "$work/out/curl.bin" "http://127.0.0.1:$port/model.bin")
rm -f "$work/out/curl.bin"
t_pull=$(pull pull "$port" model.bin)
echo "uncapped:  curl -o ${t_curl} s   pull ${t_pull} s   ratio $(ratio "$t_pull" "$t_curl") (target <= 1.05)   pull RSS $(rss_mib pull) MiB"
rm -rf "$work/out/pull"

rm -f "$work/out/aria.bin"
t_aria=$(timed aria2c aria2c -q -x8 -s8 -k1M --file-allocation=none --allow-overwrite=true -d "$work/out" -o aria.bin "http://127.0.0.1:$capped_port/model.bin")
rm -f "$work/out/aria.bin"
t_capped=$(pull capped "$capped_port" model.bin)
echo "40 MB/s:   aria2c -x8 ${t_aria} s   pull ${t_capped} s   ratio $(ratio "$t_capped" "$t_aria") (target <= 1.0)   pull RSS $(rss_mib capped) MiB"

rm -f "$work/out/small.bin"
t_aria_tight=$(timed aria_tight aria2c -q -x8 -s8 -k1M --file-allocation=none --allow-overwrite=true -d "$work/out" -o small.bin "http://127.0.0.1:$tight_port/small.bin")
rm -f "$work/out/small.bin"
t_tight=$(pull tight "$tight_port" small.bin)
echo "1 MB/s:    aria2c -x8 ${t_aria_tight} s   pull ${t_tight} s   ratio $(ratio "$t_tight" "$t_aria_tight") (${tight_mib} MiB file)"
rm -rf "$work/out/tight"

t_again=$(timed again "$bin" -q --no-progress models pull --manifest "$work/m-$capped_port-model.bin.yaml" --root "$work/out/capped")
echo "re-run, 1 file present: ${t_again} s"
rm -rf "$work/out/capped"

# A manifest shaped like the default one, files present as sparse files (zeros) and stamped
# once by `models verify`; then time a pull that finds them all.
shaped=$work/shaped.yaml
if [ ! -f "$shaped" ]; then
  echo "bench: preparing the default-manifest-shaped set (hashing zeros once)" >&2
  {
    echo "name: shaped"; echo "models:"
    "$bin" models list --json --root /nonexistent | python3 -c '
import json, sys
for f in json.load(sys.stdin)["files"]:
    print(f["id"], f["size"], f["dest"].removeprefix("/nonexistent/"))' | while read -r id bytes dest; do
      zero_sha=$(head -c "$bytes" /dev/zero | openssl dgst -sha256 -r | cut -d" " -f1)
      printf '  - id: %s\n    url: http://127.0.0.1:%s/%s\n    dest: %s\n    size: %s\n    sha256: %s\n' \
        "$id" "$port" "$id" "$dest" "$bytes" "$zero_sha"
    done
  } >"$shaped.tmp"
  mv "$shaped.tmp" "$shaped"
fi
"$bin" models list --json --manifest "$shaped" --root "$work/shaped" | python3 -c '
import json, os, sys
for f in json.load(sys.stdin)["files"]:
    os.makedirs(os.path.dirname(f["dest"]), exist_ok=True)
    if not os.path.exists(f["dest"]):
        with open(f["dest"], "wb") as out:
            out.truncate(f["size"])'
"$bin" -q models verify --manifest "$shaped" --root "$work/shaped" >/dev/null
t_present=$(timed present "$bin" -q --no-progress models pull --manifest "$shaped" --root "$work/shaped")
echo "re-run, default-manifest shape (17 files, 13.9 GB) all present: ${t_present} s (target < 1 s)   RSS $(rss_mib present) MiB"

peak=$(( $(cut -d' ' -f2 "$work/pull.time") > $(cut -d' ' -f2 "$work/capped.time") ? $(cut -d' ' -f2 "$work/pull.time") : $(cut -d' ' -f2 "$work/capped.time") ))
echo "peak RSS of pull: $((peak / 1024)) MiB (target <= 64 MiB)"

if [ -n "${BENCH_SWEEP:-}" ]; then
  for c in 1 2 4 8 12 16; do
    u=$(pull "sweep$c" "$port" model.bin --connections "$c"); rm -rf "$work/out/sweep$c"
    t=$(pull "sweept$c" "$tight_port" small.bin --connections "$c"); rm -rf "$work/out/sweept$c"
    echo "--connections $c: uncapped ${u} s (RSS $(rss_mib "sweep$c") MiB)   1 MB/s ${t} s"
  done
fi
