#!/usr/bin/env bash
# Mutation testing of keyward's security-relevant pure code (cargo-mutants):
# every mutant (an operator flipped, a function body replaced, a match arm
# deleted, ...) must make a unit test fail. docs/ROBUSTNESS.md has the
# results, and lists every surviving mutant with why it cannot change
# behaviour (an "equivalent" mutant).
#
#   bash scripts/mutants.sh                 # the whole list below
#   bash scripts/mutants.sh --diff main     # only code changed since main
#   bash scripts/mutants.sh --file src/policy.rs   # one file of the list
#   bash scripts/mutants.sh --doc           # also write the table into docs/ROBUSTNESS.md
#   bash scripts/mutants.sh --iterate       # re-test only what the last run did not catch
#   bash scripts/mutants.sh --summary       # only redo the table from the last results
#   bash scripts/mutants.sh -- --jobs 2     # anything else for cargo-mutants
#                                           # (more than one job: no shared target dir)
#
# It is a separate command, not part of scripts/test.sh or CI: the whole
# list (~500 mutants, one incremental build of the library's unit tests
# each) takes about an hour on two cores. `--diff REF` tests only the
# mutants in lines changed since REF, which is minutes for a usual change.
#
# Unit tests only (`cargo test --lib`): these modules are pure, their unit
# tests are where their rules are specified, and building only the library's
# test harness keeps one mutant at a few seconds. (The integration tests
# cover the same code end to end; a mutant that only they catch shows up as
# a survivor here and gets a unit test.)
#
# Exit status: 0 when every mutant was caught, timed out, unviable, or is a
# survivor listed as equivalent in docs/ROBUSTNESS.md; 1 otherwise (the
# unexplained survivors are printed). Results: target/mutants/mutants.out/
# (outcomes.json, caught.txt, missed.txt, timeout.txt, unviable.txt) and
# target/mutants/summary.md (the per-file table for docs/ROBUSTNESS.md).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
export PATH="$HOME/.cargo/bin:$PATH"

die() { printf 'mutants.sh: error: %s\n' "$*" >&2; exit 1; }

# The security-relevant pure code: key-line parsing, policy, safe
# paths, user names, signed headers, the state rules (rollback floors, their
# signer binding, settling a half-done change, the index floor), the cache
# entry's encoding with its length and checksum, the mirror health rule, the
# near-miss keys under min_version, sshd's argument grammars, audit escaping,
# the PAM decision/argument/auth-info code and doctor's PAM stack analysis,
# the revocation spec parser and the revocation list's format and search.
# Paths that do not exist (yet, or any more) are skipped, so the list
# survives files moving. Not here, being I/O: the state files and their locks
# (statestore.rs), the cache files (cache.rs), the publish output directory
# (publish/outdir.rs), the KRL build that runs ssh-keygen (revocation/krl.rs).
files=(
    src/keyline.rs
    src/policy.rs
    src/safepath.rs src/os/safepath.rs
    src/username.rs
    src/signed.rs
    src/state.rs src/state/floor.rs src/state/settle.rs src/state/indexed.rs
    src/entry.rs
    src/health.rs
    src/config/skew.rs
    src/sshd.rs
    src/audit.rs
    src/pam/decide.rs
    src/pam/args.rs
    src/pam/authinfo.rs
    src/doctor/pam.rs
    src/revocation/spec.rs src/revocation/list.rs src/revocation/lookup.rs
)
# Not the rules themselves, and I/O: the syslog socket; the health records'
# files, locks and random jitter; running sshd and reading sshd_config with
# its Includes; reading PAM files and finding modules on disk; the stored
# revocation list read with pread.
exclude_re=(
    'Sink::'
    '^src/health\.rs:.*(Health::|random_unit)'
    '^src/sshd\.rs:.*( probe| sshd_path| read_sshd_config| read_into| include_files)'
    '^src/doctor/pam\.rs:.*( checks| read_pam_dir| security_dirs| find_module)'
    '^src/revocation/lookup\.rs:.*(ListFile::| read_at)'
)

diff_ref=
doc=
summary_only=
iterate=()
only=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --diff) diff_ref=${2:?--diff needs a git revision}; shift 2 ;;
        --file) only+=("${2:?--file needs a path}"); shift 2 ;;
        --doc) doc=1; shift ;;
        --summary) summary_only=1; shift ;;
        --iterate) iterate=(--iterate); shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

out=target/mutants
res="$out/mutants.out"
[ "${#only[@]}" -gt 0 ] && files=("${only[@]}")
started=$SECONDS
if [ -z "$summary_only" ]; then
    command -v cargo >/dev/null || die "cargo not found"
    if ! cargo mutants --version >/dev/null 2>&1; then
        echo "==> installing cargo-mutants (cargo install --locked cargo-mutants)"
        cargo install --locked cargo-mutants || die "could not install cargo-mutants"
    fi

    args=()
    for f in "${files[@]}"; do
        [ -f "$f" ] && args+=(--file "$f")
    done
    [ "${#args[@]}" -gt 0 ] || die "none of the files exist: ${files[*]}"
    for e in "${exclude_re[@]}"; do
        args+=(--exclude-re "$e")
    done

    mkdir -p "$out"
    if [ -n "$diff_ref" ]; then
        git diff "$diff_ref" -- 'src/*.rs' >"$out/changes.diff" || die "git diff $diff_ref failed"
        if [ ! -s "$out/changes.diff" ]; then
            echo "mutants.sh: no change to src/ since $diff_ref: nothing to test"
            exit 0
        fi
        args+=(--in-diff "$out/changes.diff")
    fi

    # Debug info costs build time and nothing here needs it. One target
    # directory kept between runs: cargo-mutants builds in a scratch copy of the
    # tree, and only keyward itself needs rebuilding there, not its dependencies.
    # Only for one job at a time: parallel jobs build in separate copies whose
    # artifacts have the same name in a shared directory, so one job's cargo
    # can take the other's mutant for fresh and test the wrong code (seen:
    # "Fresh keyward" right after a mutation, a caught mutant reported
    # missed). With --jobs N > 1 each copy builds in its own target directory.
    export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
    jobs=1
    for ((i = 0; i < ${#extra[@]}; i++)); do
        case "${extra[i]}" in
            -j | --jobs) jobs=${extra[i + 1]:-1} ;;
            --jobs=*) jobs=${extra[i]#--jobs=} ;;
            -j*) jobs=${extra[i]#-j} ;;
            --) break ;;
        esac
    done
    if [ "$jobs" = 1 ]; then
        export CARGO_TARGET_DIR="${KEYWARD_MUTANTS_TARGET_DIR:-$PWD/target/mutants-build}"
    else
        unset CARGO_TARGET_DIR
    fi
    echo "==> cargo mutants ${args[*]} ${extra[*]:-}"
    # --iterate re-tests what was not caught; what did not build last time
    # is carried over so the table stays whole.
    carried=
    if [ "${#iterate[@]}" -gt 0 ] && [ -d "$res" ]; then
        carried=$(cat "$res/unviable.txt" "$res/carried_unviable.txt" 2>/dev/null | sort -u)
    fi
    cargo mutants --no-shuffle -C --lib --timeout 60 --build-timeout 900 \
        --output "$out" "${iterate[@]}" "${args[@]}" "${extra[@]}"
    rc=$?
    [ -n "$carried" ] && printf '%s\n' "$carried" >"$res/carried_unviable.txt"
    # cargo-mutants: 0 all caught, 2 some missed, 3 some timed out, 4 baseline failed.
    case $rc in
        0 | 2 | 3) ;;
        *) die "cargo mutants failed (exit $rc): see $out/mutants.out/debug.log" ;;
    esac
fi
elapsed=$((SECONDS - started))
touch "$res/caught.txt" "$res/missed.txt" "$res/timeout.txt" "$res/unviable.txt"
# After --iterate, the mutants caught by earlier runs are listed in
# previously_caught.txt (with the ones that did not build, carried apart).
touch "$res/previously_caught.txt" "$res/carried_unviable.txt"
grep -vxF -f "$res/carried_unviable.txt" "$res/previously_caught.txt" >"$res/all_caught.txt" || true
cat "$res/caught.txt" >>"$res/all_caught.txt"
cat "$res/unviable.txt" "$res/carried_unviable.txt" | sort -u | sed '/^$/d' >"$res/all_unviable.txt"

# A survivor is explained when docs/ROBUSTNESS.md lists it (file and
# description, without line:column, which move with every edit).
strip_pos() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }
# (`\|` is a markdown table's escaped `|`.)
equivalent=$(sed -n 's/^| *`\(src\/[^`]*: [^`]*\)` *|.*/\1/p' docs/ROBUSTNESS.md | sed 's/\\|/|/g')
unexplained=()
explained=()
while IFS= read -r m; do
    [ -n "$m" ] || continue
    key=$(strip_pos <<<"$m")
    if grep -qxF -- "$key" <<<"$equivalent"; then
        explained+=("$m")
    else
        unexplained+=("$m")
    fi
done <"$res/missed.txt"

count() { grep -c "^$2:" "$1" 2>/dev/null || true; }
{
    echo "| File | Mutants | Caught | Timed out | Unviable | Survived | Equivalent (listed) |"
    echo "|---|---|---|---|---|---|---|"
    total=(0 0 0 0 0 0)
    for f in "${files[@]}"; do
        [ -f "$f" ] || continue
        c=$(count "$res/all_caught.txt" "$f")
        t=$(count "$res/timeout.txt" "$f")
        u=$(count "$res/all_unviable.txt" "$f")
        s=$(count "$res/missed.txt" "$f")
        e=$(printf '%s\n' "${explained[@]:-}" | grep -c "^$f:" || true)
        n=$((c + t + u + s))
        [ "$n" -gt 0 ] || continue
        echo "| \`$f\` | $n | $c | $t | $u | $s | $e |"
        total=($((total[0] + n)) $((total[1] + c)) $((total[2] + t)) $((total[3] + u)) \
            $((total[4] + s)) $((total[5] + e)))
    done
    echo "| **total** | ${total[0]} | ${total[1]} | ${total[2]} | ${total[3]} | ${total[4]} | ${total[5]} |"
    viable=$((total[0] - total[3]))
    if [ "$viable" -gt 0 ]; then
        # Kill rate: caught or timed out, among the mutants that built.
        awk -v k=$((total[1] + total[2])) -v v="$viable" -v e="${total[5]}" 'BEGIN {
            printf "\nKill rate: %.1f %% (%d of %d viable mutants caught or timed out); ", 100 * k / v, k, v
            printf "with the %d equivalent survivors set aside: %.1f %%.\n", e, (v - e > 0) ? 100 * k / (v - e) : 100
        }'
    fi
    echo
    echo "Commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (with uncommitted changes to src/)'), $(date -u +%Y-%m-%d), ${elapsed}s."
} >"$out/summary.md"
cat "$out/summary.md"
if [ -n "$doc" ]; then
    # Between <!-- BEGIN mutants --> and <!-- END mutants -->.
    awk -v f="$out/summary.md" '
        /<!-- BEGIN mutants -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
        /<!-- END mutants -->/ { skip = 0 }
        !skip' docs/ROBUSTNESS.md >"$out/ROBUSTNESS.md" && mv "$out/ROBUSTNESS.md" docs/ROBUSTNESS.md
fi

if [ "${#unexplained[@]}" -gt 0 ]; then
    printf '\nmutants.sh: %d surviving mutant(s) neither caught nor listed as equivalent in docs/ROBUSTNESS.md:\n' \
        "${#unexplained[@]}"
    printf '  %s\n' "${unexplained[@]}"
    exit 1
fi
echo "mutants.sh: every mutant caught or explained"
