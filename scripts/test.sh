#!/usr/bin/env bash
# keyward's test command (README): run as root on a fresh Debian 12 machine.
#
#   sudo bash scripts/test.sh
#
# 1. installs what the tests need with apt (only the packages that are
#    missing; no daemon is started: a temporary policy-rc.d forbids it);
# 2. prepares sshd host keys (ssh-keygen -A) and /run/sshd;
# 3. removes what an interrupted earlier run left (test users, groups, dirs);
# 4. cargo fmt --check, cargo clippy --all-targets -D warnings,
#    cargo test --all-targets, and a short smoke run of every fuzz target
#    (scripts/fuzz.sh; long runs: bash scripts/fuzz.sh 1800).
#
# The integration tests start private nginx, rsyslog and sshd instances on
# 127.0.0.1 and never touch the machine's own sshd, PAM or syslog config.
# Every step runs even if an earlier one failed; the exit status is non-zero
# if any failed, and the failed steps are listed at the end.
#
# Environment:
#   KEYWARD_TEST_THREADS  parallel test threads (default 4: the integration
#                         tests mostly wait on daemons and timeouts)
#   KEYWARD_TEST_FILTER   only run tests whose name contains this
#   KEYWARD_FUZZ_SECONDS  seconds per fuzz target (default 10; 0 skips fuzzing)
set -uo pipefail

# What the build, the tests, fuzz.sh and package.sh need on a fresh Debian 12
# (minbase: only Priority required). The package-guard step checks that this
# covers every program, library and link-time file they use, and everything
# scripts/demo.sh installs (the tests run the demo).
packages=(gcc g++ libc6-dev libpam0g-dev ca-certificates   # build; g++: libFuzzer
          openssh-server openssh-client nginx rsyslog pamtester libpam-wrapper
          sshpass procps iproute2 systemd lintian rpm hyperfine strace valgrind
          openssl curl python3    # python3: package.sh reads cargo metadata
          slapd ldap-utils        # publish from LDAP (publish_sources)
          debootstrap systemd-container)   # booted Debian 12 containers (packaging_systemd, chain_sssd)
if [ "${1:-}" = --print-packages ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

cd "$(dirname "$0")/.." || exit 1
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the tests create users and start sshd): sudo bash scripts/test.sh"
command -v cargo >/dev/null ||
    die "cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs), then run again"

# --- 1. packages -------------------------------------------------------------
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    # Installing nginx/openssh-server/rsyslog must not start the machine's own
    # daemons: a policy-rc.d that says "no" (only if none exists already).
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_ok=1
    apt-get -o DPkg::Lock::Timeout=120 update -qq || apt_ok=
    [ -n "$apt_ok" ] &&
        apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}" \
            >/dev/null || apt_ok=
    [ -n "$made_policy" ] && rm -f "$policy"
    [ -n "$apt_ok" ] ||
        die "apt-get could not install ${missing[*]} (errors above): fix apt (network, sources, dpkg --configure -a), then run again"
else
    say "packages: all present"
fi

if command -v rustup >/dev/null; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" ||
            rustup component add "$c" >/dev/null 2>&1 || true
    done
fi

# --- 2. sshd prerequisites ------------------------------------------------------
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 755 /run/sshd

# --- 3. what an interrupted earlier run left ---------------------------------------
# Everything the tests make is named after the test process that made it:
# users kwt<n>x<pid>, groups kwg<n>x<pid>, directories
# /var/lib/keyward-tests/<name>-<pid>-<n> (and processes running from them),
# booted containers with KEYWARD_TEST_PID=<pid> in their PID 1's environment
# (tests/integration/support/nspawn.rs, packaging_systemd.rs). Only what belongs to a test
# process that is gone is stale (other runs may be in progress). One list,
# used twice: a run first removes what an interrupted run (reboot, Ctrl-C,
# OOM) left, and finally fails if it left anything itself.
dead_pid() { [ -n "$1" ] && ! kill -0 "$1" 2>/dev/null; }
# Prints "KIND WHAT" per stale item: user, group, container (its PID 1),
# process ("PID CMD"), dir.
stale_test_state() {
    local name e line pid dir
    while IFS=: read -r name _; do
        dead_pid "${name##*x}" && echo "user $name"
    done < <(getent passwd | grep -E '^kwt[0-9]+x[0-9]+:' || true)
    while IFS=: read -r name _; do
        dead_pid "${name##*x}" && echo "group $name"
    done < <(getent group | grep -E '^kwg[0-9]+x[0-9]+:' || true)
    for e in /proc/[0-9]*/environ; do
        line=$({ tr '\0' '\n' <"$e"; } 2>/dev/null | grep -m1 -E '^KEYWARD_TEST_PID=[0-9]+$') || continue
        dead_pid "${line#*=}" && echo "container $(cut -d/ -f3 <<<"$e")"
    done
    while read -r line; do
        pid=$(grep -oE '/var/lib/keyward-tests/[^/ ]+-[0-9]+-[0-9]+' <<<"$line" | head -1 |
            sed -E 's/.*-([0-9]+)-[0-9]+$/\1/')
        dead_pid "$pid" && echo "process $line"
    done < <(pgrep -af '/var/lib/keyward-tests/' || true)
    for dir in /var/lib/keyward-tests/*-[0-9]*-[0-9]*; do
        [ -d "$dir" ] || continue
        dead_pid "$(sed -E 's/.*-([0-9]+)-[0-9]+$/\1/' <<<"$dir")" && echo "dir $dir"
    done
    return 0
}
clean_stale() {
    local kind what
    while read -r kind what; do
        echo "removing what an interrupted run left: $kind $what"
        case $kind in
            user) pkill -KILL -u "$what" 2>/dev/null
                  userdel -r -f "$what" >/dev/null 2>&1 || echo "  userdel $what failed" >&2 ;;
            group) groupdel "$what" >/dev/null 2>&1 || echo "  groupdel $what failed" >&2 ;;
            container|process) kill -KILL "${what%% *}" 2>/dev/null ;;
            dir) rm -rf --one-file-system "$what" ;;
        esac
    done < <(stale_test_state)
    return 0
}
clean_stale

# --- 4. checks ------------------------------------------------------------------
failed=()
step() {
    local name=$1
    shift
    say "$name"
    local t0=$SECONDS
    if "$@"; then
        printf -- '--- %s: ok (%ss)\n' "$name" "$((SECONDS - t0))"
    else
        printf -- '--- %s: FAILED (%ss)\n' "$name" "$((SECONDS - t0))"
        failed+=("$name")
    fi
}

threads="${KEYWARD_TEST_THREADS:-4}"
filter=("${KEYWARD_TEST_FILTER:-}")
[ -n "${filter[0]}" ] || filter=()

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy --all-targets -D warnings" cargo clippy --all-targets --quiet -- -D warnings
# Fails fast, with the package to add, when a new dependency is not
# installed by this script or by demo.sh (tests/integration/packages.rs).
step "package guard (demo.sh and test.sh install what is used)" \
    cargo test --quiet --test integration -- packages:: --test-threads=1
step "cargo test --all-targets" cargo test --all-targets --no-fail-fast -- --test-threads="$threads" "${filter[@]}"
fuzz_secs="${KEYWARD_FUZZ_SECONDS:-10}"
if [ "$fuzz_secs" != 0 ] && [ "${#filter[@]}" = 0 ]; then
    step "fuzz smoke (${fuzz_secs}s per target)" bash scripts/fuzz.sh "$fuzz_secs"
fi

# Nothing the tests started may outlive them: no process, container or user
# of a test process that is gone (stale_test_state above). (Directories are
# not judged here: the next run's clean-up removes them.)
leftovers() {
    local kind what bad=0
    while read -r kind what; do
        case $kind in
            user) echo "test user left behind: $what"; bad=1 ;;
            container) echo "left running: booted test container (PID 1 is $what)"; bad=1 ;;
            process) echo "left running: $what"; bad=1 ;;
        esac
    done < <(stale_test_state)
    return "$bad"
}
step "no leftover daemons or users" leftovers

# Checks a test could not run (a tool missing, …) never pass quietly: under
# CI (CI=true) such a test fails; elsewhere it records itself in
# <target>/tmp/skipped/ (tests/integration/support/skip.rs), and the records
# of this run are counted and listed here.
skipped=()
skip_dir="${CARGO_TARGET_DIR:-target}/tmp/skipped"
run_started=$(($(date +%s) - SECONDS))
if [ -d "$skip_dir" ]; then
    while IFS= read -r -d '' f; do
        skipped+=("$(head -c 500 "$f")")
    done < <(find "$skip_dir" -type f -newermt "@$run_started" -print0 | sort -z)
fi
if [ "${#skipped[@]}" -gt 0 ]; then
    printf '\ntest.sh: %d check(s) SKIPPED (they could not run here; under CI they fail):\n' \
        "${#skipped[@]}"
    printf '  - %s\n' "${skipped[@]}"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\ntest.sh: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}")"
    exit 1
fi
printf '\ntest.sh: all checks passed%s\n' "${skipped:+ (${#skipped[@]} skipped, listed above)}"
