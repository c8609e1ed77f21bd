#!/usr/bin/env bash
# SSH benchmark of issue 12, on loopback, against a private OpenSSH sshd (as root, like the
# tests) and nginx (Debian `nginx-light`). Not a test: it prints timings and ratios for a person.
#
#   bench/ssh.sh                      # 1 GiB file, 3 rounds, in /tmp/lifeos-spark-bench-ssh
#   BENCH_SIZE_MIB=256 BENCH_ROUNDS=1 bench/ssh.sh
#   LIFEOS_BIN=/path/to/lifeos-spark bench/ssh.sh   # a prebuilt binary (no cargo needed)
#   nice -n -5 bench/ssh.sh           # on a shared machine, ahead of the others' jobs
#
# Needs: sshd, ssh, scp, ssh-keygen (openssh-server, openssh-client), curl, openssl, and nginx
# (nginx-light) or else python3 (`http.server`, no Range support: one connection per file).
# The dry run asks Docker through $BENCH_DOCKER_HOST; without a daemon there it fails at
# doctor's Docker check, and its time still counts (it is reported, marked "failed").
#
# Each round times, side by side:
#   pull       `lifeos-spark --host box models pull` of the file into a folder on the target
#              (download + sha256 + fsync + rename, bytes over exec channels into `dd`)
#   pull-c1    the same with `--connections 1` (one segment, one `dd` at a time)
#   curl|ssh   `curl URL | ssh box 'cat > f'`: what a person would type (no verification, no fsync)
#   scp        `scp` of a local copy of the file
#   dry-run    `lifeos-spark --host box setup --dry-run` (fake nvidia-smi of a GB10 on the
#              target; DOCKER_HOST there is $BENCH_DOCKER_HOST, by default the test suite's
#              private daemon when it runs: the dry run only reads from it)
# and prints pull's throughput as a fraction of curl|ssh's (target >= 0.8), then the median
# and the spread (min..max) over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Absolute: sshd re-executes itself from `/` and must find its config there.
work=$(realpath -m "${BENCH_DIR:-/tmp/lifeos-spark-bench-ssh}")
size_mib=${BENCH_SIZE_MIB:-1024}
rounds=${BENCH_ROUNDS:-3}
bin=${LIFEOS_BIN:-${BENCH_BIN:-$PWD/target/release/lifeos-spark}}
http_port=${BENCH_PORT:-18531}
ssh_port=$((http_port + 1))

for tool in curl ssh scp ssh-keygen /usr/sbin/sshd openssl; do
  command -v "$tool" >/dev/null || { echo "bench: \`$tool\` is missing (apt-get install curl openssh-client openssh-server openssl)" >&2; exit 1; }
done
if command -v nginx >/dev/null; then
  http_server=nginx
elif command -v python3 >/dev/null; then
  http_server=python3
else
  echo "bench: neither nginx (apt-get install nginx-light) nor python3 is installed" >&2; exit 1
fi
if [ ! -x "$bin" ]; then
  [ -z "${LIFEOS_BIN:-}" ] || { echo "bench: LIFEOS_BIN=$LIFEOS_BIN is not an executable" >&2; exit 1; }
  cargo build --release
fi
mkdir -p "$work/www" "$work/nginx" "$work/sshd" "$work/client/.ssh" "$work/remote/home" "$work/local"

file=$work/www/model.bin
if [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" != $((size_mib << 20)) ]; then
  echo "bench: writing a ${size_mib} MiB random file to $file" >&2
  head -c $((size_mib << 20)) /dev/urandom >"$file"
  rm -f "$file.sha256"
fi
[ -f "$file.sha256" ] || openssl dgst -sha256 -r "$file" | cut -d' ' -f1 >"$file.sha256"
size=$(stat -c %s "$file")

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$http_port; root $work/www; }
}
EOF

# The target: sshd with its own host key; sessions get HOME and a PATH whose nvidia-smi prints
# the GB10 capture (the same fake the tests use).
[ -f "$work/sshd/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/host_key"
[ -f "$work/client/.ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$work/client/.ssh/id_ed25519"
cp "$work/client/.ssh/id_ed25519.pub" "$work/sshd/authorized_keys"
# The capture is copied, so the target does not depend on where this checkout is.
fixture=$work/remote/gb10
mkdir -p "$work/remote/bin" "$fixture"
cp tests/fixtures/nvidia-smi/gb10/* "$fixture/"
docker_host=${BENCH_DOCKER_HOST:-unix:///tmp/lifeos-spark-test/nvidia/docker.sock}
cat >"$work/remote/bin/nvidia-smi" <<EOF
#!/bin/sh
case "\$*" in
  "") cat '$fixture/banner.txt' ;;
  --query-gpu=*) cat '$fixture/query.csv' ;;
  *) exit 2 ;;
esac
exit "\$(cat '$fixture/exit')"
EOF
chmod 755 "$work/remote/bin/nvidia-smi"
cat >"$work/sshd/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/sshd/host_key
AuthorizedKeysFile $work/sshd/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $work/sshd/sshd.pid
Subsystem sftp internal-sftp
SetEnv HOME=$work/remote/home DOCKER_HOST=$docker_host PATH=$work/remote/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
cat >"$work/client/.ssh/config" <<EOF
Host box
  HostName 127.0.0.1
  Port $ssh_port
  User root
  IdentityFile $work/client/.ssh/id_ed25519
  UserKnownHostsFile $work/client/.ssh/known_hosts
  BatchMode yes
EOF
echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$work/sshd/host_key.pub")" >"$work/client/.ssh/known_hosts"

mkdir -p /run/sshd
http_pid=
if [ "$http_server" = nginx ]; then
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
else
  python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$http_port" >"$work/http.log" 2>&1 &
  http_pid=$!
fi
/usr/sbin/sshd -f "$work/sshd/sshd_config" -E "$work/sshd/sshd.log"
cleanup() {
  if [ -n "$http_pid" ]; then kill "$http_pid" || true; else nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -s stop || true; fi
  [ -f "$work/sshd/sshd.pid" ] && kill "$(cat "$work/sshd/sshd.pid")" || true
  rm -rf "$work/remote/out" "$work/local"
}
trap cleanup EXIT
for port in "$ssh_port" "$http_port"; do
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

cat >"$work/m.yaml" <<EOF
name: bench
models:
  - id: model
    url: http://127.0.0.1:$http_port/model.bin
    dest: models/model.bin
    size: $size
    sha256: $(cat "$file.sha256")
EOF
cp "$file" "$work/local/model.bin"

ssh_cfg=(-F "$work/client/.ssh/config")
tool() { HOME=$work/client NO_COLOR=1 "$bin" "$@"; }
# secs CMD...: wall seconds of CMD (its output discarded; it must succeed unless ALLOW_FAIL=1)
secs() {
  local start end rc=0
  start=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/last.err" || rc=$?
  end=$(date +%s.%N)
  echo "$rc" >"$work/last.rc"
  if [ "$rc" != 0 ] && [ -z "${ALLOW_FAIL:-}" ]; then
    echo "bench: \`$*\` failed:" >&2; cat "$work/last.err" >&2; exit 1
  fi
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
fresh() { rm -rf "$work/remote/out"; mkdir -p "$work/remote/out"; sync; }
check() { # check FILE: the bytes that landed are the file's
  [ "$(openssl dgst -sha256 -r "$1" | cut -d' ' -f1)" = "$(cat "$file.sha256")" ] || { echo "bench: $1 differs from the source" >&2; exit 1; }
}
mibps() { awk -v t="$1" -v s="$size" 'BEGIN { printf "%.0f", s / 1048576 / t }'; }

echo "file: $size bytes; $(nproc) cores; $(uname -sr); $(ssh -V 2>&1); HTTP: $http_server; $("$bin" --version)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %9s %9s %9s %9s %9s %14s %10s\n' round pull pull-c1 curl\|ssh scp dry-run pull/curl\|ssh -c1/curl\|ssh
ratios=() ratios1=() dries=()
for r in $(seq 1 "$rounds"); do
  fresh
  t_pull=$(secs tool --host box -q --no-progress models pull --manifest "$work/m.yaml" --root "$work/remote/out/pull")
  check "$work/remote/out/pull/models/model.bin"
  fresh
  t_pull1=$(secs tool --host box -q --no-progress models pull --connections 1 --manifest "$work/m.yaml" --root "$work/remote/out/pull")
  check "$work/remote/out/pull/models/model.bin"
  fresh
  t_pipe=$(secs sh -c "curl -sf 'http://127.0.0.1:$http_port/model.bin' | ssh ${ssh_cfg[*]} box 'cat > $work/remote/out/pipe.bin'")
  check "$work/remote/out/pipe.bin"
  fresh
  t_scp=$(secs scp -q "${ssh_cfg[@]}" "$work/local/model.bin" "box:$work/remote/out/scp.bin")
  check "$work/remote/out/scp.bin"
  fresh
  t_dry=$(ALLOW_FAIL=1 secs tool --host box -q setup --dry-run --playbook dgx-spark --root "$work/remote/out/setup")
  if [ "$(cat "$work/last.rc")" != 0 ]; then
    t_dry="$t_dry(failed)"
    echo "bench: the dry run failed (its time still counts):" >&2; head -3 "$work/last.err" >&2
  fi
  # Throughput ratio: curl|ssh time over pull time (1.0 = as fast as the pipe).
  ratio=$(awk -v p="$t_pull" -v c="$t_pipe" 'BEGIN { printf "%.2f", c / p }')
  ratio1=$(awk -v p="$t_pull1" -v c="$t_pipe" 'BEGIN { printf "%.2f", c / p }')
  ratios+=("$ratio") ratios1+=("$ratio1") dries+=("${t_dry%(failed)}")
  printf '%-6s %8ss %8ss %8ss %8ss %8ss %14s %10s\n' "$r" "$t_pull" "$t_pull1" "$t_pipe" "$t_scp" "$t_dry" "${ratio}x" "${ratio1}x"
  echo "       MiB/s: pull $(mibps "$t_pull")  pull -c1 $(mibps "$t_pull1")  curl|ssh $(mibps "$t_pipe")  scp $(mibps "$t_scp")"
done
summary() { # summary NAME VALUES...: median and min..max
  local name=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v n="$name" '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s: median %.2f, spread %.2f..%.2f over %d rounds\n", n, m, v[1], v[NR], NR }'
}
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
summary "pull throughput / curl|ssh throughput (target >= 0.8)" "${ratios[@]}"
summary "pull --connections 1 throughput / curl|ssh throughput" "${ratios1[@]}"
summary "setup --dry-run seconds (target < 3)" "${dries[@]}"
