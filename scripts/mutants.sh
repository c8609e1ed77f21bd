#!/usr/bin/env bash
# Mutation testing, bounded and sampled, not in CI: how many deliberately broken versions of the
# code the tests catch. Needs `cargo install cargo-mutants --locked` (27.1 measured) and the
# private test Docker daemons (LIFEOS_TEST_DOCKER_HOST*, see scripts/test.sh); sshd is started by
# the tests themselves.
#
#   bash scripts/mutants.sh                  # the sample: rounds 0..MUTANTS_ROUNDS-1 (default 1)
#   MUTANTS_ROUNDS=3 bash scripts/mutants.sh # a bigger sample (each round adds ~6 per folder)
#   MUTANTS_FOLDERS="envfile host" bash scripts/mutants.sh
#   bash scripts/mutants.sh --summary        # only print the table of what mutants.out/ holds
#
# The whole population (about 1,315 mutants: models 601, envfile 195, workflows 159, host 360)
# takes days on two cores, so every folder is cut into `--sharding round-robin` shards of about
# six mutants (mutant i goes to shard i % N) and round r runs shard r of every folder. The sample
# is therefore fixed by the source (the same commit gives the same mutants), spread over the whole
# folder, and grows by whole rounds; the folders advance together, so a run stopped early still
# covers all four.
#
# Each mutant runs against the library's unit tests plus the integration suites of its folder
# only. The crate is built without debug info (dependencies keep theirs, so nothing else is
# rebuilt), which cuts the link of every test binary. Results land in
# mutants.out/<folder>/round-<r>/; the table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
results=$PWD/mutants.out
folders=(${MUTANTS_FOLDERS:-envfile workflows models host})

# Shards per folder: the folder's mutant count / ~6.
shards_for() {
  case "$1" in
    models) echo 100 ;;
    envfile) echo 32 ;;
    workflows) echo 26 ;;
    host) echo 60 ;;
  esac
}

# The integration suites that exercise a folder.
suites_for() {
  case "$1" in
    workflows) echo "--test workflows" ;;
    models) echo "--test models_download --test models_copy --test models_cli" ;;
    envfile) echo "--test envfile" ;;
    host) echo "--test doctor_ssh --test models_ssh --test ssh_exec --test envfile" ;;
  esac
}

count() { cat "$results/$1"/round-*/mutants.out/"$2".txt 2>/dev/null | wc -l; }

summary() {
  echo "| folder | sampled | caught | missed | unviable | timeout |"
  echo "|---|---|---|---|---|---|"
  for d in "${folders[@]}"; do
    local c m u t
    c=$(count "$d" caught) m=$(count "$d" missed) u=$(count "$d" unviable) t=$(count "$d" timeout)
    echo "| src/$d/ | $((c + m + u + t)) | $c | $m | $u | $t |"
  done
  for d in "${folders[@]}"; do
    cat "$results/$d"/round-*/mutants.out/missed.txt 2>/dev/null | sed 's/^/missed: /' || true
  done
}

if [ "${1:-}" = --summary ]; then
  summary
  exit 0
fi

# A scratch worktree of HEAD with a copy of target/ (mtimes kept, so only this crate is rebuilt
# for each mutant): mutants are applied in place there, never in this checkout.
scratch=${MUTANTS_SCRATCH:-/tmp/lifeos-spark-mutants}
git worktree remove --force "$scratch" 2>/dev/null || rm -rf "$scratch"
git worktree add -q --detach "$scratch" HEAD
[ -d target ] && cp -a target "$scratch/target"

export CI=true
lean=(--cargo-arg=--config=profile.dev.package.lifeos-spark.debug=0
  --cargo-arg=--config=profile.test.package.lifeos-spark.debug=0)
for ((r = 0; r < ${MUTANTS_ROUNDS:-1}; r++)); do
  for d in "${folders[@]}"; do
    out="$results/$d/round-$r"
    rm -rf "$out" && mkdir -p "$out"
    # shellcheck disable=SC2046
    (cd "$scratch" && cargo mutants --in-place --file "src/$d/**/*.rs" \
      --shard "$r/$(shards_for "$d")" --sharding round-robin "${lean[@]}" \
      --output "$out" --timeout 300 --baseline=skip -- --lib $(suites_for "$d")) || true
  done
done
git worktree remove --force "$scratch"
echo
summary
