#!/usr/bin/env bash
# Mutation testing, bounded, not in CI: how many deliberately broken versions of the code the
# tests catch. Needs `cargo install cargo-mutants --locked` (27.1 measured) and the private test
# Docker daemons / sshd of scripts/test.sh for the integration suites it runs.
#
#   bash scripts/mutants.sh                               # extract.rs and partial.rs
#   bash scripts/mutants.sh src/envfile/dotenv.rs ...     # other files
#   MUTANTS_ALL=1 bash scripts/mutants.sh                 # src/models src/envfile src/workflows src/host
#
# Each file's mutants run against the library's unit tests plus the integration suites of its
# folder only (the whole suite per mutant would take hours on two cores). Results land in
# mutants.out/<file>/; the caught/missed summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${MUTANTS_ALL:-}" = 1 ]; then
  mapfile -t files < <(ls src/models/*.rs src/envfile/*.rs src/workflows/*.rs src/host/*.rs)
elif [ $# -gt 0 ]; then
  files=("$@")
else
  files=(src/workflows/extract.rs src/models/partial.rs)
fi

# The integration suites that exercise a folder.
suites_for() {
  case "$1" in
    src/workflows/*) echo "--test workflows" ;;
    src/models/*) echo "--test models_download --test models_copy --test models_cli" ;;
    src/envfile/*) echo "--test envfile" ;;
    src/host/*) echo "--test doctor_ssh --test models_ssh --test envfile" ;;
    *) echo "" ;;
  esac
}

# A scratch worktree of HEAD with a copy of target/ (mtimes kept, so only this crate is rebuilt
# for each mutant): mutants are applied in place there, never in this checkout.
results=$PWD/mutants.out
scratch=${MUTANTS_SCRATCH:-/tmp/lifeos-spark-mutants}
git worktree remove --force "$scratch" 2>/dev/null || rm -rf "$scratch"
git worktree add -q --detach "$scratch" HEAD
[ -d target ] && cp -a target "$scratch/target"

export CI=true
for f in "${files[@]}"; do
  out="$results/$(echo "$f" | tr / _)"
  rm -rf "$out" && mkdir -p "$out"
  # shellcheck disable=SC2046
  (cd "$scratch" && cargo mutants --in-place --file "$f" --output "$out" --timeout 300 \
    --baseline=skip -- --lib $(suites_for "$f")) || true
done
git worktree remove --force "$scratch"

echo
for f in "${files[@]}"; do
  dir="$results/$(echo "$f" | tr / _)/mutants.out"
  caught=$(wc -l <"$dir/caught.txt" 2>/dev/null || echo 0)
  missed=$(wc -l <"$dir/missed.txt" 2>/dev/null || echo 0)
  timeout=$(wc -l <"$dir/timeout.txt" 2>/dev/null || echo 0)
  unviable=$(wc -l <"$dir/unviable.txt" 2>/dev/null || echo 0)
  echo "$f: caught $caught, missed $missed, timeout $timeout (unviable $unviable)"
  sed 's/^/  missed: /' "$dir/missed.txt" 2>/dev/null || true
done
