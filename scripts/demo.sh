#!/usr/bin/env bash
# keyward demo (README): on a fresh Debian 12 machine, as root.
#
#   bash scripts/demo.sh         # in a root shell
#   sudo bash scripts/demo.sh    # as a user who has sudo
#
# Installs what it needs with apt (build and run: see `packages` below),
# builds keyward and pam_keyward.so, then wires a throwaway set-up together
# on 127.0.0.1 only:
#   a key directory served by a private nginx,
#   a private rsyslog (so you can read every decision),
#   a private sshd whose AuthorizedKeysCommand is keyward (`keys %u %f %U`) and
#   whose PAM stack has pam_keyward.so, running in a private mount namespace
#   where the demo's stack is bind-mounted over /etc/pam.d/sshd and /dev/log
#   leads to the demo's rsyslog (the rest of the machine sees neither),
#   two throwaway users (one in a throwaway break-glass group),
# and shows: key logins (the second from keyward's cache), a stranger's key
# refused, a password login refused by pam_keyward, a break-glass password
# login let through and audited, and the session line naming the key. It
# ends with a summary (the exact sshd_config and pam.d lines, time per step)
# and removes everything it created, also on Ctrl-C or error.
#
# The machine's own sshd, PAM and syslog configuration are not touched.
#
# Options:
#   --print-packages   the Debian packages the demo installs, one per line
#   --print-commands   the programs it runs (checked after installing)
# Environment:
#   KEYWARD_DEMO_KEYWARD, KEYWARD_DEMO_PAM_MODULE
#       a prebuilt keyward binary and libpam_keyward.so: both set, the demo
#       uses them instead of building (the integration test does this).
set -euo pipefail

# Build: cc (rustc links through it; ring compiles C), libc6-dev, -lpam,
# and CA certificates for cargo to fetch crates. Run: the rest.
packages=(gcc libc6-dev libpam0g-dev ca-certificates
          openssh-server openssh-client nginx rsyslog sshpass iproute2)
commands=(cc sshd ssh ssh-keygen sshpass nginx rsyslogd ss unshare mount
          nsenter useradd userdel groupadd groupdel chpasswd getent install)

case "${1:-}" in
--print-packages) printf '%s\n' "${packages[@]}"; exit 0 ;;
--print-commands) printf '%s\n' "${commands[@]}"; exit 0 ;;
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
"") ;;
*) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

# A root shell from `su` (without -) has no sbin in PATH.
for d in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH

# ---------------------------------------------------------------- output ----
if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' N=$'\e[0m'; else B='' G='' R='' D='' N=''; fi
TOTAL_STEPS=14
step_no=0
step_names=()
step_ms=()
t_step=
now_ms() { date +%s%3N; }
secs() { printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100)); } # ms → "1.2s"
end_step() {
    [ -n "$t_step" ] || return 0
    local d=$(($(now_ms) - t_step))
    step_ms+=("$d")
    printf '    %s(%s)%s\n' "$D" "$(secs "$d")" "$N"
    t_step=
}
step() {
    end_step
    step_no=$((step_no + 1))
    step_names+=("$*")
    printf '\n%s==> [%d/%d] %s%s\n' "$B" "$step_no" "$TOTAL_STEPS" "$*" "$N"
    t_step=$(now_ms)
}
info() { printf '    %s\n' "$*"; }
ok() { printf '    %s✔ %s%s\n' "$G" "$*" "$N"; }
# One line: what went wrong and what to do.
die() { printf '\n%sdemo.sh: error: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
indent() { sed 's/^/      /'; }

[ "$(id -u)" = 0 ] ||
    die "run as root: 'sudo bash scripts/demo.sh' (or 'bash scripts/demo.sh' in a root shell)"
cd "$(dirname "$0")/.."
repo=$(pwd)

# ---------------------------------------------------------------- cleanup ---
t_start=$(now_ms)
work=
demo_user=
glass_user=
glass_group=
made_keyward_user=
made_policy=
ns_id=
pids=()
cleaned_ok=1

# The account tools lock /etc/passwd; another program (a test run) may hold
# it for a moment: retry exit 10 ("cannot lock").
acct() {
    local rc=0
    for _ in $(seq 1 50); do
        "$@" && return 0
        rc=$?
        [ "$rc" = 10 ] || return "$rc"
        sleep 0.2
    done
    return "$rc"
}

# Processes in the demo sshd's mount namespace.
ns_pids() {
    [ -n "$ns_id" ] || return 0
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns_id" ] && echo "${p#/proc/}"
    done
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    end_step
    local t0 left=() p
    t0=$(now_ms)
    printf '\n%s==> cleaning up%s\n' "$B" "$N"
    if [ -n "$work" ] && [ -f "$work/sshd/sshd.pid" ]; then
        kill "$(cat "$work/sshd/sshd.pid")" 2>/dev/null && info "stopped the demo sshd"
    fi
    if [ -n "$ns_id" ]; then
        # The namespace (and its mounts) ends with its last process.
        for _ in $(seq 1 50); do
            [ -z "$(ns_pids)" ] && break
            # shellcheck disable=SC2046 # a list of pids
            kill $(ns_pids) 2>/dev/null
            sleep 0.1
        done
        if [ -z "$(ns_pids)" ]; then
            info "the private mount namespace is gone, and with it its /etc/pam.d/sshd and /dev mounts"
        else
            left+=("processes in the demo's mount namespace: $(ns_pids | tr '\n' ' ')")
        fi
    fi
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ "${#pids[@]}" -gt 0 ] && info "stopped the demo nginx and rsyslog"
    for u in "$demo_user" "$glass_user"; do
        if [ -n "$u" ] && getent passwd "$u" >/dev/null; then
            acct userdel -r -f "$u" 2>/dev/null
            info "removed user $u"
        fi
    done
    if [ -n "$glass_group" ] && getent group "$glass_group" >/dev/null; then
        acct groupdel "$glass_group"
        info "removed group $glass_group"
    fi
    if [ -n "$made_keyward_user" ]; then
        acct userdel keyward 2>/dev/null
        getent group keyward >/dev/null && acct groupdel keyward 2>/dev/null
        info "removed the keyward system user (created by this demo)"
    fi
    [ -n "$work" ] && rm -rf "$work" && info "removed $work"
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d

    # Check, do not assume.
    for u in "$demo_user" "$glass_user"; do
        [ -n "$u" ] && getent passwd "$u" >/dev/null && left+=("user $u")
    done
    [ -n "$glass_group" ] && getent group "$glass_group" >/dev/null && left+=("group $glass_group")
    [ -n "$made_keyward_user" ] && getent passwd keyward >/dev/null && left+=("user keyward")
    [ -n "$work" ] && [ -e "$work" ] && left+=("$work")
    if [ -n "$work" ]; then
        for p in /proc/[0-9]*; do
            tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$work/" && left+=("process ${p#/proc/}")
        done
    fi
    if [ "${#left[@]}" -eq 0 ]; then
        printf '    %sclean-up complete: no demo process, user, group, mount or file is left (%s)%s\n' \
            "$G" "$(secs $(($(now_ms) - t0)))" "$N"
    else
        cleaned_ok=
        printf '    %sclean-up INCOMPLETE, left: %s%s\n' "$R" "${left[*]}" "$N"
    fi
    if [ "$rc" = 0 ] && [ -n "$cleaned_ok" ]; then
        printf '\n%sdemo finished in %s: everything it created is gone.%s\n' \
            "$G" "$(secs $(($(now_ms) - t_start)))" "$N"
    elif [ "$rc" = 0 ]; then
        rc=1
    else
        printf '\n%sdemo failed (exit %s)%s.%s\n' "$R" "$rc" \
            "$([ -n "$cleaned_ok" ] && echo '; everything it created is gone')" "$N"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1, above the kernel's ephemeral range (where
# client connections and other programs' bind(0) never land) when there is
# room, else below it.
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
if [ "$eph_hi" -lt 64000 ]; then port_lo=$((eph_hi + 1)) port_n=$((65535 - eph_hi)); else port_lo=20000 port_n=$((eph_lo - 20000)); fi
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((port_lo + RANDOM % port_n))
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
    die "no free TCP port on 127.0.0.1 between $port_lo and $((port_lo + port_n - 1)): free one (ss -tln shows who uses them) and run again"
}

wait_port() { # port
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ steps ---
step "Installing what the demo needs (apt)"
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    info "apt-get install ${missing[*]}"
    # Do not let the packages start the machine's own daemons.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_log=$(mktemp /tmp/keyward-demo-apt.XXXXXX)
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get -o DPkg::Lock::Timeout=120 update -qq &&
        apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$apt_log" 2>&1; then
        # The first complaint is the cause (a failed fetch is only a W: line
        # of apt-get update; install then "cannot locate" every package).
        die "apt-get could not install ${missing[*]} ($(grep -E '^(E|Err|W):' "$apt_log" | head -1 | cut -c1-200)): fix apt (network, apt sources, dpkg --configure -a), then run again; full log: $apt_log"
    fi
    rm -f "$apt_log"
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d && made_policy=
fi
for c in "${commands[@]}"; do
    command -v "$c" >/dev/null || die "$c is still missing after installing ${packages[*]}: please report this"
done
ok "present: ${packages[*]}"
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 755 /run/sshd

if [ -n "${KEYWARD_DEMO_KEYWARD:-}" ] && [ -n "${KEYWARD_DEMO_PAM_MODULE:-}" ]; then
    step "Using the prebuilt keyward and pam_keyward.so"
    built=$KEYWARD_DEMO_KEYWARD
    built_pam=$KEYWARD_DEMO_PAM_MODULE
else
    step "Building keyward and pam_keyward.so (cargo build --release)"
    info "${D}the first build takes a few minutes (crates download, LTO); later runs take seconds${N}"
    cargo_as=()
    cargo_path="$HOME/.cargo/bin:$PATH"
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        if [ -x "$user_home/.cargo/bin/cargo" ] && [ "$(stat -c %U "$repo")" = "$SUDO_USER" ]; then
            # Build as the user who owns the checkout, with their toolchain.
            cargo_as=(sudo -u "$SUDO_USER" -H)
            cargo_path="$user_home/.cargo/bin:$PATH"
        fi
    fi
    cargo_run() { "${cargo_as[@]}" env PATH="$cargo_path" cargo "$@"; }
    cargo_run --version >/dev/null 2>&1 ||
        die "cargo not found: install Rust >= 1.85 (https://rustup.rs: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), then run again"
    cargo_run build --release --quiet ||
        die "cargo build --release failed (errors above): fix them, or report them with 'cargo --version'"
    target_dir=$(cargo_run metadata --format-version 1 --no-deps |
        grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
    built="$target_dir/release/keyward"
    built_pam="$target_dir/release/libpam_keyward.so"
fi
[ -x "$built" ] || die "$built is missing: build it with 'cargo build --release'"
[ -f "$built_pam" ] || die "$built_pam is missing: build it with 'cargo build --release'"
ok "$built ($("$built" --version))"
ok "$built_pam"

step "Installing both where sshd and PAM accept them (root-owned, 0755 up to /)"
install -d -m 0755 /var/lib
work=$(mktemp -d /var/lib/keyward-demo.XXXXXX)
chmod 755 "$work"
for d in / /var /var/lib; do
    [ "$(stat -c %u "$d")" = 0 ] && [ $((0$(stat -c %a "$d") & 022)) = 0 ] ||
        die "$d is not root-owned or is group/world-writable (sshd refuses an AuthorizedKeysCommand below it): chmod go-w $d"
done
mkdir -p "$work"/{bin,client,www/users,nginx,rsyslog,sshd,pam.d,ns/dev,cache}
chmod 755 "$work"/{bin,client,www,www/users,nginx,rsyslog,sshd,pam.d,ns,ns/dev}
install -m 0755 -o root -g root "$built" "$work/bin/keyward"
install -m 0644 -o root -g root "$built_pam" "$work/bin/pam_keyward.so"
ok "$work/bin/keyward"
ok "$work/bin/pam_keyward.so"
info "${D}sshd refuses an AuthorizedKeysCommand in a group/world-writable tree such as /tmp or target/${N}"

step "Creating throwaway users, a break-glass group and ed25519 keys"
if ! getent passwd keyward >/dev/null; then
    acct useradd --system --no-create-home --shell /usr/sbin/nologin --user-group keyward ||
        die "useradd keyward failed: create the system user yourself (useradd --system --user-group keyward), then run again"
    made_keyward_user=1
    ok "created system user keyward (AuthorizedKeysCommandUser; removed at the end)"
else
    ok "system user keyward already exists (kept)"
fi
while :; do
    n=$((RANDOM % 9000 + 1000))
    getent passwd "kwdemo$n" >/dev/null || getent passwd "kwoncall$n" >/dev/null ||
        getent group "kwglass$n" >/dev/null || break
done
# Set the names only once they are ours: cleanup removes what they name.
acct groupadd "kwglass$n" || die "groupadd kwglass$n failed (above): fix /etc/group, then run again"
glass_group="kwglass$n"
acct useradd -m -s /bin/bash "kwdemo$n" || die "useradd kwdemo$n failed (above): fix /etc/passwd, then run again"
demo_user="kwdemo$n"
acct useradd -m -s /bin/bash -G "$glass_group" "kwoncall$n" ||
    die "useradd kwoncall$n failed (above): fix /etc/passwd, then run again"
glass_user="kwoncall$n"
password() { head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }
demo_pw=$(password)
glass_pw=$(password)
for i in $(seq 1 50); do
    printf '%s:%s\n%s:%s\n' "$demo_user" "$demo_pw" "$glass_user" "$glass_pw" | chpasswd 2>/dev/null && break
    [ "$i" = 50 ] && die "chpasswd failed: is /etc/shadow locked by another program? Run again"
    sleep 0.2 # /etc/shadow locked by another program for a moment
done
ok "created user $demo_user (password $demo_pw) — an ordinary user"
ok "created user $glass_user (password $glass_pw) in group $glass_group — the break-glass account"
mkdir -p "$work/state"
chown keyward:keyward "$work/cache" "$work/state"
chmod 750 "$work/cache" "$work/state"
ssh-keygen -q -t ed25519 -N '' -C "$demo_user@demo" -f "$work/client/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "stranger@demo" -f "$work/client/stranger"
fp=$(ssh-keygen -lf "$work/client/id_ed25519.pub" | awk '{print $2}')
stranger_fp=$(ssh-keygen -lf "$work/client/stranger.pub" | awk '{print $2}')
ok "key $fp ($demo_user's)"
ok "key $stranger_fp (a stranger's, not in the directory)"

step "Publishing $demo_user's key in a key directory served by a private nginx"
cp "$work/client/id_ed25519.pub" "$work/www/users/$demo_user.keys"
chmod 644 "$work/www/users/$demo_user.keys"
for attempt in 1 2 3; do
    http_port=$(free_port)
    cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
    default_type text/plain;
    log_format demo '\$status \$request_method \$request_uri';
    access_log $work/nginx/access.log demo;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    etag on;
    server {
        listen 127.0.0.1:$http_port;
        root $work/www;
    }
}
EOF
    nginx -c "$work/nginx/nginx.conf" -p "$work/nginx/" -e "$work/nginx/error.log" </dev/null >/dev/null 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_port "$http_port" && break
    # Lost the port to someone else between the check and nginx's bind?
    kill "$nginx_pid" 2>/dev/null
    [ "$attempt" = 3 ] && die "nginx did not start ($(tail -1 "$work/nginx/error.log")): free a port or fix nginx, then run again"
done
ok "http://127.0.0.1:$http_port/users/$demo_user.keys"

step "Starting a private rsyslog for every decision"
cat >"$work/rsyslog/rsyslog.conf" <<EOF
global(workDirectory="$work/rsyslog")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$work/rsyslog/log.sock" CreatePath="on" RateLimit.Interval="0")
template(name="demo" type="string" string="%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$work/rsyslog/messages" template="demo")
EOF
touch "$work/rsyslog/messages"
rsyslogd -n -f "$work/rsyslog/rsyslog.conf" -i "$work/rsyslog/rsyslogd.pid" </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/rsyslog/log.sock" ] && break; sleep 0.1; done
[ -S "$work/rsyslog/log.sock" ] || die "rsyslogd did not create its socket: check 'rsyslogd -N1 -f $work/rsyslog/rsyslog.conf'"
ok "socket $work/rsyslog/log.sock → $work/rsyslog/messages"
info "keyward logs there directly ([log] socket); pam_keyward logs to /dev/log, which leads there"
info "only inside the demo sshd's mount namespace (next step)"

cat >"$work/bin/keyward.toml" <<EOF
# keyward demo configuration
[directory]
urls = ["http://127.0.0.1:$http_port/users/{user}.keys"]
timeout = "2s"

[cache]
dir = "$work/cache"
ttl = "5m"

[state]
dir = "$work/state"

[policy]
deny_users = ["root"]

[log]
facility = "authpriv"
socket = "$work/rsyslog/log.sock"
EOF
chmod 644 "$work/bin/keyward.toml"

step "Starting a private sshd on 127.0.0.1, wired to keyward and pam_keyward.so"
pam_before=$(sha256sum /etc/pam.d/sshd | cut -d' ' -f1)
devlog_state() { if [ -L /dev/log ] || [ -e /dev/log ]; then stat -c 'present (inode %i)' /dev/log; else echo absent; fi; }
devlog_before=$(devlog_state)
cat >"$work/pam.d/sshd" <<EOF
# keyward demo: bind-mounted over /etc/pam.d/sshd in the demo sshd's mount namespace only
auth     requisite  $work/bin/pam_keyward.so  allow_group=$glass_group
@include common-auth
@include common-account
session  required   $work/bin/pam_keyward.so  require_publickey allow_group=$glass_group
@include common-session
EOF
chmod 644 "$work/pam.d/sshd"
# Runs inside `unshare -m`: private copies of /etc/pam.d/sshd and /dev.
# /dev becomes a tmpfs holding links to every entry of the real /dev (its
# directories, such as pts, bind-mounted) except log, which leads to the
# demo's rsyslog: the PAM module's syslog(3) lines reach the demo, and the
# machine's /dev/log is never created, replaced or read.
cat >"$work/ns/enter.sh" <<EOF
set -e
mount --bind '$work/pam.d/sshd' /etc/pam.d/sshd
mount --rbind /dev '$work/ns/dev'
mount -t tmpfs -o mode=0755,size=1m keyward-demo-dev /dev
for e in '$work/ns/dev'/* '$work/ns/dev'/.[!.]*; do
    n=\${e##*/}
    if [ "\$n" = log ]; then continue
    elif [ -L "\$e" ]; then ln -s "\$(readlink "\$e")" "/dev/\$n"
    elif [ -d "\$e" ]; then mkdir "/dev/\$n" && mount --rbind "\$e" "/dev/\$n"
    elif [ -e "\$e" ]; then ln -s "\$e" "/dev/\$n"
    fi
done
ln -s '$work/rsyslog/log.sock' /dev/log
exec /usr/sbin/sshd -f '$work/sshd/sshd_config' -E '$work/sshd/sshd.log'
EOF
for attempt in 1 2 3; do
    ssh_port=$(free_port)
    cat >"$work/sshd/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
PidFile $work/sshd/sshd.pid
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile none
AuthorizedKeysCommand $work/bin/keyward --config $work/bin/keyward.toml keys %u %f %U
AuthorizedKeysCommandUser keyward
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
LogLevel VERBOSE
EOF
    /usr/sbin/sshd -t -f "$work/sshd/sshd_config" || die "sshd -t rejected the demo config (above): please report this"
    : >"$work/sshd/sshd.log"
    unshare -m --propagation private sh "$work/ns/enter.sh" 2>"$work/ns/enter.err" ||
        die "could not start sshd in a private mount namespace ($(tail -1 "$work/ns/enter.err")): the demo needs root with CAP_SYS_ADMIN (a VM or a privileged container)"
    wait_port "$ssh_port" && break
    grep -q 'Address already in use' "$work/sshd/sshd.log" && [ "$attempt" != 3 ] && continue
    die "sshd did not start ($(tail -1 "$work/sshd/sshd.log")): free a port or fix sshd, then run again"
done
sshd_pid=$(cat "$work/sshd/sshd.pid")
ns_id=$(readlink "/proc/$sshd_pid/ns/mnt")
ok "sshd on 127.0.0.1:$ssh_port (pid $sshd_pid, mount namespace $ns_id)"
info "sshd_config ($work/sshd/sshd_config):"
grep -E '^(AuthorizedKeys|UsePAM|PasswordAuthentication)' "$work/sshd/sshd_config" | indent
info "${D}(AuthorizedKeysFile none: ~/.ssh/authorized_keys is not read, every key comes through keyward)${N}"
info "/etc/pam.d/sshd as this sshd sees it (the machine's own is unchanged):"
nsenter -t "$sshd_pid" -m grep -v '^#' /etc/pam.d/sshd | indent
info "/dev/log as this sshd sees it: $(nsenter -t "$sshd_pid" -m readlink /dev/log); on the machine: $devlog_before"

ssh_opts=(-F /dev/null -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ConnectTimeout=10)
ssh_key() { # key command...
    local key=$1
    shift
    ssh "${ssh_opts[@]}" -i "$key" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o PreferredAuthentications=publickey "$demo_user@127.0.0.1" "$@" </dev/null
}
ssh_password() { # user password command...
    local user=$1 pw=$2
    shift 2
    sshpass -p "$pw" ssh "${ssh_opts[@]}" -o PubkeyAuthentication=no \
        -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 "$user@127.0.0.1" "$@" </dev/null
}
msgs() { # ERE: matching syslog lines so far
    grep -E "$1" "$work/rsyslog/messages" || true
}
wait_msgs() { # ERE count: wait until that many lines match (5 s at most)
    for _ in $(seq 1 50); do
        [ "$(msgs "$1" | wc -l)" -ge "$2" ] && break
        sleep 0.1
    done
    sleep 0.2
}
kw_re=' keyward\['
pam_re=' pam_keyward\(sshd:'
sshd_lines() { # ERE: sshd's own log lines, without the date and pid
    grep -E "$1" "$work/sshd/sshd.log" | sed 's/^.*sshd\[[0-9]*\]: //' || true
}

step "Logging in with $demo_user's key (keyward fetches it from the directory)"
info "\$ ssh -p $ssh_port -i id_ed25519 $demo_user@127.0.0.1 'echo hello from \$(whoami)'"
# shellcheck disable=SC2016 # $(whoami) is for the remote shell
out=$(ssh_key "$work/client/id_ed25519" 'echo "hello from $(whoami)"') ||
    die "the key login failed; sshd log: $(tail -3 "$work/sshd/sshd.log" | tr '\n' ' ')"
printf '      %s%s%s\n' "$G" "$out" "$N"
ok "key login as $demo_user"
wait_msgs "$kw_re" 2
wait_msgs "${pam_re}session\\): decision=session user=$demo_user " 1
info "keyward's decisions (sshd asks once to check the key, once to verify the signature):"
msgs "$kw_re" | indent
n_kw=$(msgs "$kw_re" | wc -l)
info "pam_keyward's session line names the key that opened the session:"
session_line=$(msgs "${pam_re}session\\): decision=session user=$demo_user ")
printf '%s\n' "$session_line" | indent
case "$session_line" in
*"fp=$fp "* | *"fp=$fp") ok "session fingerprint $fp = $demo_user's id_ed25519.pub" ;;
*) die "no pam_keyward session line with fp=$fp; sshd log: $(tail -3 "$work/sshd/sshd.log" | tr '\n' ' ')" ;;
esac

step "Logging in again (answered from keyward's cache: no request to the directory)"
# shellcheck disable=SC2016
out=$(ssh_key "$work/client/id_ed25519" 'echo "hello again from $(whoami)"') || die "the second key login failed"
printf '      %s%s%s\n' "$G" "$out" "$N"
wait_msgs "$kw_re" $((n_kw + 1))
msgs "$kw_re" | tail -n +$((n_kw + 1)) | indent
n_kw=$(msgs "$kw_re" | wc -l)
requests=$(grep -c . "$work/nginx/access.log" || true)
info "requests the directory saw in total (nginx access log):"
indent <"$work/nginx/access.log"
ok "two logins, $requests request to the key directory"

step "A key that is not in the directory is refused"
if ssh_key "$work/client/stranger" true 2>/dev/null; then
    die "the stranger's key was accepted"
fi
ok "login with the stranger's key refused"
wait_msgs "$kw_re" $((n_kw + 1))
msgs "$kw_re" | tail -n +$((n_kw + 1)) | indent
info "sshd's own view:"
sshd_lines "Failed publickey|Connection closed by authenticating" | indent

step "A password login is refused by pam_keyward (with the right password)"
info "\$ sshpass -p '$demo_pw' ssh -o PreferredAuthentications=password -p $ssh_port $demo_user@127.0.0.1 true"
if ssh_password "$demo_user" "$demo_pw" true 2>/dev/null; then
    die "the password login was accepted: pam_keyward did not refuse it"
fi
wait_msgs "${pam_re}auth\\): decision=block user=$demo_user " 1
block_line=$(msgs "${pam_re}auth\\): decision=block user=$demo_user ")
[ -n "$block_line" ] || die "no pam_keyward decision=block line for $demo_user; sshd log: $(tail -3 "$work/sshd/sshd.log" | tr '\n' ' ')"
ok "password login refused"
printf '%s\n' "$block_line" | indent
info "why: decision=block, from the auth line of /etc/pam.d/sshd: every password attempt is refused"
info "unless the user is in allow_group=$glass_group ($demo_user is not); the stack stops there"
info "(requisite), so pam_unix never even checks the password. sshd's own view:"
sshd_lines "Failed password for $demo_user" | indent

step "The break-glass account gets in with its password, audited"
info "\$ sshpass -p '$glass_pw' ssh -o PreferredAuthentications=password -p $ssh_port $glass_user@127.0.0.1 'echo hello from \$(whoami)'"
# shellcheck disable=SC2016
out=$(ssh_password "$glass_user" "$glass_pw" 'echo "hello from $(whoami)"') ||
    die "the break-glass login failed; sshd log: $(tail -3 "$work/sshd/sshd.log" | tr '\n' ' ')"
printf '      %s%s%s\n' "$G" "$out" "$N"
ok "break-glass login as $glass_user"
wait_msgs "${pam_re}(auth|session)\\): decision=exempt user=$glass_user " 2
msgs "${pam_re}(auth|session)\\): decision=exempt user=$glass_user " | indent
info "exempt_by= names the rule that let $glass_user in: alert on every decision=exempt line."

step "Revoking $demo_user's key (a stolen laptop): publish, then the timer's next poll"
# The directory of record: a folder of per-user files plus revoked/*.spec
# (ssh-keygen's KRL specification format). publish writes the users' files,
# the index and the revocation list; the key stays in $demo_user's file.
mkdir -p "$work/people/revoked"
cp "$work/client/id_ed25519.pub" "$work/people/$demo_user.keys"
printf '# %s: laptop stolen\nhash: %s\n' "$demo_user" "$fp" >"$work/people/revoked/laptop.spec"
info "\$ cat people/revoked/laptop.spec"
indent <"$work/people/revoked/laptop.spec"
info "\$ keyward publish people/ www/users/"
"$work/bin/keyward" --config "$work/bin/keyward.toml" publish "$work/people" "$work/www/users" 2>&1 |
    grep -E '^(published|revocations:|index) ' | indent
chmod -R a+rX "$work/www"
n_kw=$(msgs "$kw_re" | wc -l)
info "\$ keyward sync --poll   ${D}(what keyward-sync.timer runs every 30 s, as the keyward user)${N}"
setpriv --reuid=keyward --regid=keyward --clear-groups \
    "$work/bin/keyward" --config "$work/bin/keyward.toml" sync --poll >/dev/null 2>&1 ||
    die "keyward sync --poll failed: $(msgs "$kw_re" | tail -1)"
wait_msgs "$kw_re" $((n_kw + 1))
msgs "$kw_re" | tail -n +$((n_kw + 1)) | indent
n_kw=$(msgs "$kw_re" | wc -l)
if ssh_key "$work/client/id_ed25519" true 2>/dev/null; then
    die "the revoked key was accepted"
fi
ok "login with $demo_user's revoked key refused (the key is still in $demo_user's file in the directory)"
wait_msgs "${kw_re}.*reason=revoked" 1
msgs "$kw_re" | tail -n +$((n_kw + 1)) | indent
info "revoked_by= names the spec line; alert on reason=revoked lines to see a stolen key being tried."

# ---------------------------------------------------------------- summary ---
step "Summary"
devlog_after=$(devlog_state)
[ "$(sha256sum /etc/pam.d/sshd | cut -d' ' -f1)" = "$pam_before" ] ||
    die "the machine's /etc/pam.d/sshd changed during the demo: please report this"
cat <<EOF
    What you saw:
      ✔ key login: sshd asked keyward (AuthorizedKeysCommand), keyward fetched the key from the directory
      ✔ the same login again: answered from keyward's cache ($requests request to the directory in total)
      ✔ a stranger's key: refused (keyward served no key with its fingerprint)
      ✔ a password login with the right password: refused by pam_keyward (decision=block)
      ✔ the break-glass account $glass_user: let in with its password, logged as decision=exempt
      ✔ the session line: fp=$fp, the key that opened the session
      ✔ $demo_user's key revoked in the directory (revoked/laptop.spec): refused after one poll
      ✔ the machine's /etc/pam.d/sshd: unchanged; its /dev/log: $devlog_before before, $devlog_after now

    Where each part is configured (the exact lines this demo used):
      sshd_config — here $work/sshd/sshd_config;
      on a server e.g. /etc/ssh/sshd_config.d/keyward.conf:
EOF
grep -E '^(AuthorizedKeysCommand|UsePAM|PasswordAuthentication)' "$work/sshd/sshd_config" | sed 's/^/          /'
cat <<EOF
        (PasswordAuthentication yes only so that pam_keyward has passwords to refuse; on a
        server also set it to no outside a Match block for the break-glass group)
      /etc/pam.d/sshd — here $work/pam.d/sshd, bind-mounted over /etc/pam.d/sshd
      in the demo sshd's mount namespace only:
EOF
grep -E 'pam_keyward' "$work/pam.d/sshd" | grep -v '^#' | sed 's/^/          /'
cat <<EOF
        (on a server: just pam_keyward.so, which the package installs; the auth line above
        @include common-auth, the session line before any pam_env line)
      keyward's own settings — here $work/bin/keyward.toml; on a server /etc/keyward/keyward.toml:
EOF
grep -E '^(urls|dir|socket) ' "$work/bin/keyward.toml" | sed 's/^/          /'
end_step
echo
echo "    Time per step:"
for i in "${!step_ms[@]}"; do
    printf '      %2d. %-78s %6s\n' $((i + 1)) "${step_names[$i]}" "$(secs "${step_ms[$i]}")"
done
printf '      total so far: %s (clean-up follows)\n' "$(secs $(($(now_ms) - t_start)))"
