#!/usr/bin/env bash
# keyward demo (README): run as root on a fresh Debian 12 machine.
#
#   sudo bash scripts/demo.sh
#
# Builds keyward, then wires a throwaway setup together on 127.0.0.1 only:
#   a key directory served by a private nginx,
#   a private rsyslog (so you can read keyward's decisions),
#   a private sshd whose AuthorizedKeysCommand is keyward (`keys %u %f`),
#   a throwaway user with a freshly generated ed25519 key,
# logs in with that key (twice: the second answer comes from keyward's
# cache without touching the directory), shows that a key which is not in
# the directory is refused, prints the syslog decision lines, and removes
# everything it created on exit (also on Ctrl-C or error).
#
# The machine's own sshd, PAM and syslog configuration are not touched.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

# ---------------------------------------------------------------- output ----
if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' N=$'\e[0m'; else B='' G='' R='' D='' N=''; fi
step_no=0
step() { step_no=$((step_no + 1)); printf '\n%s==> [%d/10] %s%s\n' "$B" "$step_no" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }
ok() { printf '    %s✔ %s%s\n' "$G" "$*" "$N"; }
die() { printf '\n%sdemo.sh: error: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
indent() { sed 's/^/      /'; }

[ "$(id -u)" = 0 ] || die "run as root: sudo bash scripts/demo.sh"

# ---------------------------------------------------------------- cleanup ---
work=
bindir=
demo_user=
made_keyward_user=
made_policy=
pids=()
cleanup() {
    local rc=$?
    set +e
    printf '\n%s==> cleaning up%s\n' "$B" "$N"
    if [ -n "$work" ] && [ -f "$work/sshd/sshd.pid" ]; then
        kill "$(cat "$work/sshd/sshd.pid")" 2>/dev/null && info "stopped the demo sshd"
    fi
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ "${#pids[@]}" -gt 0 ] && info "stopped the demo nginx and rsyslog"
    if [ -n "$demo_user" ] && getent passwd "$demo_user" >/dev/null; then
        userdel -r -f "$demo_user" 2>/dev/null
        info "removed user $demo_user"
    fi
    if [ -n "$made_keyward_user" ]; then
        userdel keyward 2>/dev/null
        getent group keyward >/dev/null && groupdel keyward 2>/dev/null
        info "removed the keyward system user (created by this demo)"
    fi
    [ -n "$work" ] && rm -rf "$work" && info "removed $work"
    [ -n "$bindir" ] && rm -rf "$bindir" && info "removed $bindir"
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    if [ "$rc" = 0 ]; then
        printf '\n%sdemo finished: everything it created is gone.%s\n' "$G" "$N"
    else
        printf '\n%sdemo failed (exit %s); everything it created is gone.%s\n' "$R" "$rc" "$N"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

wait_port() { # port
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ steps ---
step "Installing what the demo needs (openssh-server, nginx, rsyslog)"
missing=()
for p in openssh-server openssh-client nginx rsyslog iproute2; do
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
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d && made_policy=
fi
ok "openssh-server, nginx, rsyslog present"
ssh-keygen -A >/dev/null
mkdir -p /run/sshd

step "Building keyward (cargo build --release)"
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
    die "cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs), then run again"
cargo_run build --release --quiet
target_dir=$(cargo_run metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
built="$target_dir/release/keyward"
[ -x "$built" ] || die "$built was not built"
ok "built $built ($("$built" --version))"

step "Installing the binary where sshd accepts it (root-owned, 0755 up to /)"
install -d -m 0755 /usr/local/lib
bindir=$(mktemp -d /usr/local/lib/keyward-demo.XXXXXX)
chmod 755 "$bindir"
install -m 0755 -o root -g root "$built" "$bindir/keyward"
ok "$bindir/keyward"
info "${D}sshd refuses an AuthorizedKeysCommand in a group/world-writable tree such as /tmp or target/${N}"

step "Creating a throwaway user, the keyward system user and an ed25519 key"
if ! getent passwd keyward >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin --user-group keyward
    made_keyward_user=1
    ok "created system user keyward (AuthorizedKeysCommandUser; removed at the end)"
else
    ok "system user keyward already exists (kept)"
fi
demo_user="kwdemo$((RANDOM % 9000 + 1000))"
while getent passwd "$demo_user" >/dev/null; do demo_user="kwdemo$((RANDOM % 9000 + 1000))"; done
useradd -m -s /bin/bash "$demo_user"
usermod -p '*' "$demo_user" # no password, not locked: key logins only
ok "created user $demo_user"
install -d -m 0755 /var/lib
work=$(mktemp -d /var/lib/keyward-demo.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{client,www/users,nginx,rsyslog,sshd,cache}
chmod 755 "$work"/{client,www,www/users,nginx,rsyslog,sshd}
chown keyward:keyward "$work/cache"
chmod 750 "$work/cache"
ssh-keygen -q -t ed25519 -N '' -C "$demo_user@demo" -f "$work/client/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "stranger@demo" -f "$work/client/stranger"
fp=$(ssh-keygen -lf "$work/client/id_ed25519.pub" | awk '{print $2}')
ok "key $fp"

step "Publishing the key in a key directory served by a private nginx"
cp "$work/client/id_ed25519.pub" "$work/www/users/$demo_user.keys"
chmod 644 "$work/www/users/$demo_user.keys"
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
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx/" -e "$work/nginx/error.log" &
pids+=($!)
wait_port "$http_port" || die "nginx did not start: $(cat "$work/nginx/error.log")"
ok "http://127.0.0.1:$http_port/users/$demo_user.keys"

step "Starting a private rsyslog for keyward's decisions"
cat >"$work/rsyslog/rsyslog.conf" <<EOF
global(workDirectory="$work/rsyslog")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$work/rsyslog/log.sock" CreatePath="on" RateLimit.Interval="0")
template(name="demo" type="string" string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]:%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$work/rsyslog/messages" template="demo")
EOF
touch "$work/rsyslog/messages"
rsyslogd -n -f "$work/rsyslog/rsyslog.conf" -i "$work/rsyslog/rsyslogd.pid" &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/rsyslog/log.sock" ] && break; sleep 0.1; done
[ -S "$work/rsyslog/log.sock" ] || die "rsyslogd did not create its socket"
ok "socket $work/rsyslog/log.sock → $work/rsyslog/messages"

cat >"$bindir/keyward.toml" <<EOF
# keyward demo configuration
[directory]
urls = ["http://127.0.0.1:$http_port/users/{user}.keys"]
timeout = "2s"

[cache]
dir = "$work/cache"
ttl = "5m"

[policy]
deny_users = ["root"]

[log]
facility = "authpriv"
socket = "$work/rsyslog/log.sock"
EOF
chmod 644 "$bindir/keyward.toml"
info "config $bindir/keyward.toml:"
grep -v '^#' "$bindir/keyward.toml" | grep . | indent

step "Starting a private sshd on 127.0.0.1 wired to keyward"
ssh_port=$(free_port)
cat >"$work/sshd/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
PidFile $work/sshd/sshd.pid
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile none
AuthorizedKeysCommand $bindir/keyward --config $bindir/keyward.toml keys %u %f
AuthorizedKeysCommandUser keyward
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
LogLevel VERBOSE
EOF
/usr/sbin/sshd -t -f "$work/sshd/sshd_config" || die "sshd -t rejected the demo config"
/usr/sbin/sshd -f "$work/sshd/sshd_config" -E "$work/sshd/sshd.log"
wait_port "$ssh_port" || die "sshd did not start: $(cat "$work/sshd/sshd.log")"
ok "sshd on 127.0.0.1:$ssh_port"
grep -E '^AuthorizedKeysCommand' "$work/sshd/sshd_config" | indent

ssh_demo() { # key command...
    local key=$1
    shift
    ssh -F /dev/null -p "$ssh_port" -i "$key" \
        -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
        "$demo_user@127.0.0.1" "$@"
}
keyward_lines() { grep ' keyward\[' "$work/rsyslog/messages" || true; }
wait_lines() { # count
    for _ in $(seq 1 50); do
        [ "$(keyward_lines | wc -l)" -ge "$1" ] && break
        sleep 0.1
    done
    sleep 0.2
}

step "Logging in with the key (keyward fetches it from the directory)"
info "\$ ssh -p $ssh_port -i id_ed25519 $demo_user@127.0.0.1 'echo hello from \$(whoami)'"
# shellcheck disable=SC2016 # $(whoami) is for the remote shell
out=$(ssh_demo "$work/client/id_ed25519" 'echo "hello from $(whoami) on $(hostname)"') ||
    die "login failed; sshd log:
$(cat "$work/sshd/sshd.log")"
printf '      %s%s%s\n' "$G" "$out" "$N"
wait_lines 1
n1=$(keyward_lines | wc -l)
info "keyward's syslog decisions (sshd asks once to check the key, once to verify the signature):"
keyward_lines | indent

step "Logging in again (answered from keyward's cache: no request to the directory)"
# shellcheck disable=SC2016
out=$(ssh_demo "$work/client/id_ed25519" 'echo "hello again from $(whoami)"') || die "second login failed"
printf '      %s%s%s\n' "$G" "$out" "$N"
wait_lines $((n1 + 1))
keyward_lines | tail -n +$((n1 + 1)) | indent
n2=$(keyward_lines | wc -l)
info "requests the directory saw in total (nginx access log):"
indent <"$work/nginx/access.log"

step "A key that is not in the directory is refused"
if ssh_demo "$work/client/stranger" true 2>/dev/null; then
    die "the stranger's key was accepted"
fi
ok "login with the stranger's key refused"
wait_lines $((n2 + 1))
keyward_lines | tail -n +$((n2 + 1)) | indent
info "sshd's own view:"
grep -E 'Accepted publickey|Failed publickey|Connection closed by authenticating' "$work/sshd/sshd.log" |
    sed 's/^.*sshd\[[0-9]*\]: //' | indent

printf '\n%sThat is keyward: sshd asks, keyward answers from its cache or the directory, and every decision is one syslog line.%s\n' "$B" "$N"
