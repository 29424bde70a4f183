#!/usr/bin/env python3
"""Fleet benchmark: how fast a revocation reaches N hosts, and what polling costs.

    sudo python3 bench/fleet.py [--hosts 100] [--users 100000] [--steady 300] [--quick] [--print]

One private nginx serves a directory published by `keyward publish` (release
build, signed in-process with an ed25519 key) from a folder of --users users
plus a `victim`, with a revocation list (SRC/revoked/*.spec). Each simulated
host has its own config, cache dir and state dir (owned by `keyward`) and its
own URL prefix (/hN -> the tree, a symlink, so the access log tells hosts
apart), logs to a live syslog socket (a private rsyslogd) and caches a few
users, the victim among them. Each polls on the packaged schedule
(systemd/keyward-sync.timer: OnCalendar=*:*:0/30 with RandomizedDelaySec=30s
and FixedRandomDelay=true, i.e. every 30 s at a fixed per-host offset in
[0, 30 s), never two runs of one host at once) with `keyward sync --poll` as
`keyward`.

After every host's first poll (the full index), a steady state of --steady
seconds counts requests and bytes while nothing changes. Then at t0 (the
republish that revokes the victim's key has put the new index in place, the
moment hosts can see it: publish writes it after the users' files) every
host, after each of its syncs, runs `keyward keys victim FP UID` as sshd
would (as keyward) until it refuses; its syslog record must say
reason=revoked. Then one user, then 100 users change, and the bytes each
host fetched in its first poll after the new index is in place are summed from nginx's
$bytes_sent: whatever the binary fetches (the full index, or a delta when it
has them), as actually served.

Not a test: nothing is asserted; a host that never refuses is reported.
Runs as root; cleans up nginx, rsyslogd and its directories; never touches
the machine's sshd, PAM or syslog configuration.
"""

import argparse
import base64
import hashlib
import concurrent.futures
import datetime
import heapq
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import AS_KEYWARD, Nginx, Rsyslog, ensure_user, keygen, fingerprint, mkdir, sh  # noqa: E402
from publish import key_line  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/var/lib/keyward-fleet")
BIN = Path("/usr/local/lib/keyward-fleet/keyward")
PERIOD = 30.0  # keyward-sync.timer: OnCalendar=*:*:0/30, RandomizedDelaySec=30s
VICTIM = "victim"
# sshd's %U; the users are not in NSS (keyward's cache and list are what is measured).
VICTIM_UID = "4242"
LOG_FORMAT = "log_format fleet '$msec $status $bytes_sent $request_uri';"
MARK_BEGIN, MARK_END = "<!-- fleet -->", "<!-- /fleet -->"


def key_fp(line):
    """sshd's %f of an authorized_keys line's key."""
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))]


class Fleet:
    def __init__(self, args):
        self.args = args
        self.hosts = [f"h{i}" for i in range(args.hosts)]
        rng = random.Random(2326)
        # FixedRandomDelay: a stable offset per machine, uniform in [0, 30 s).
        self.offset = {h: rng.uniform(0, PERIOD) for h in self.hosts}
        self.lock = threading.Lock()
        self.polls = {h: [] for h in self.hosts}  # (start, end, rc, stderr tail)
        self.checks = {h: [] for h in self.hosts}  # (end, refused, pid)
        self.busy = set()
        self.check_after = None  # checks run after each sync once this is set
        self.stop = threading.Event()
        self.load = []  # (time, 1-min load average)

    # --- the directory -----------------------------------------------------
    def make_source(self):
        src = ROOT / "src"
        mkdir(src)
        t = time.monotonic()
        for i in range(self.args.users):
            (src / f"u{i:06d}.keys").write_text(key_line(i) + "\n")
        self.victim_pub = keygen(ROOT / "keys" / "victim")
        self.victim_fp = fingerprint(ROOT / "keys" / "victim.pub")
        (src / f"{VICTIM}.keys").write_text(self.victim_pub + "\n")
        # A revocation list from the start (hosts install it in their first
        # poll); the victim's spec comes at t0.
        mkdir(src / "revoked")
        (src / "revoked" / "lost-laptop.spec").write_text(f"key: {key_line(10**9)}\n")
        print(f"source: {self.args.users:,} users + {VICTIM} ({time.monotonic() - t:.1f} s)", flush=True)
        return src

    def publish(self):
        """Runs publish; returns its wall time, when the new index was first
        there to be served (publish writes it before it is done: users'
        files first, the index last, then the rest), and its last word."""
        idx = ROOT / "www" / "users" / "keyward.index"

        def ident():
            try:
                st = os.stat(idx)
                return st.st_ino, st.st_mtime_ns, st.st_size
            except FileNotFoundError:
                return None

        before = ident()
        t = time.time()
        p = subprocess.Popen([str(BIN), "--config", "/nonexistent", "publish", str(ROOT / "src"),
                              str(ROOT / "www" / "users"), "--signer", str(ROOT / "keys" / "signer")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = None
        err = []
        reader = threading.Thread(target=lambda: err.extend(p.stderr.read().splitlines()), daemon=True)
        reader.start()
        while p.poll() is None:
            if seen is None and ident() != before:
                seen = time.time()
            time.sleep(0.02)
        reader.join()
        if p.returncode != 0:
            raise SystemExit(f"publish failed ({p.returncode}): {err[-5:]}")
        if seen is None and ident() != before:
            seen = time.time()
        sh(["chmod", "-R", "a+rX", str(ROOT / "www")])
        return time.time() - t, seen, err[-1:]

    # --- the hosts ---------------------------------------------------------
    def host_users(self, i):
        n = self.args.users
        return [VICTIM, f"u{(i * 7919) % n:06d}", f"u{(i * 104729 + 13) % n:06d}"]

    def make_hosts(self):
        for i, h in enumerate(self.hosts):
            os.symlink("users", ROOT / "www" / h)
            d = ROOT / "hosts" / h
            mkdir(d)
            mkdir(d / "cache", 0o750, "keyward")
            mkdir(d / "state", 0o750, "keyward")
            conf = d / "keyward.toml"
            conf.write_text(f"""[directory]
urls = ["{self.nginx.url(f'/{h}/{{user}}.keys')}"]
signers = ["{self.signer_pub}"]
[cache]
dir = "{d / 'cache'}"
[state]
dir = "{d / 'state'}"
[log]
socket = "{self.syslog.socket}"
""")
            os.chmod(conf, 0o644)

    def kw(self, h, *argv):
        return AS_KEYWARD + [str(BIN), "--config", str(ROOT / "hosts" / h / "keyward.toml"), *argv]

    def warm(self):
        """Each host's users cached as the login path caches them; the
        victim's key is served."""
        def one(i, h):
            for u in self.host_users(i):
                fp = key_fp((ROOT / "src" / f"{u}.keys").read_text())
                r = sh(self.kw(h, "keys", u, fp, VICTIM_UID), capture_output=True, text=True, cwd="/", check=False)
                if r.returncode != 0 or (u == VICTIM and self.victim_pub.split()[1] not in r.stdout):
                    raise SystemExit(f"{h}: the victim's key is not served before t0: {r.stderr[-300:]}")
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda a: one(*a), enumerate(self.hosts)))

    # --- the schedule ------------------------------------------------------
    def poll(self, h):
        start = time.time()
        p = subprocess.Popen(self.kw(h, "sync", "--poll"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        # wait4: the poll's own CPU time (user + system), which the machine's
        # load does not inflate the way it does wall time.
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        end = time.time()
        with self.lock:
            self.polls[h].append((start, end, p.returncode, (ru.ru_utime + ru.ru_stime) * 1000))
            check = self.check_after is not None
        if check:
            p = subprocess.Popen(self.kw(h, "keys", VICTIM, self.victim_fp, VICTIM_UID), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, cwd="/")
            text = p.communicate()[0]
            with self.lock:
                self.checks[h].append((time.time(), self.victim_pub.split()[1] not in text, p.pid))
        with self.lock:
            self.busy.discard(h)

    def run_schedule(self):
        now = time.time()
        due = []
        for h in self.hosts:
            base = now - now % PERIOD + self.offset[h]
            heapq.heappush(due, (base if base >= now else base + PERIOD, h))
        with concurrent.futures.ThreadPoolExecutor(32) as ex:
            last_load = 0
            while not self.stop.is_set():
                t, h = due[0]
                wait = t - time.time()
                if wait > 0:
                    self.stop.wait(min(wait, 1.0))
                else:
                    heapq.heapreplace(due, (t + PERIOD, h))
                    with self.lock:
                        # a oneshot service still running is not started again
                        skip = h in self.busy
                        self.busy.add(h)
                    if not skip:
                        ex.submit(self.poll, h)
                if time.time() - last_load >= 5:
                    last_load = time.time()
                    self.load.append((last_load, os.getloadavg()[0]))

    def wait_polled(self, since, timeout):
        """Until every host finished a poll that started after `since`."""
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if all(any(s >= since for s, *_ in self.polls[h]) for h in self.hosts):
                    return True
            time.sleep(0.5)
        return False

    # --- nginx's log -------------------------------------------------------
    def requests(self):
        """[(time, host, status, bytes, file)] from the access log."""
        rows = []
        for line in (ROOT / "nginx-access.log").read_text().splitlines():
            ts, status, sent, uri = line.split(" ", 3)
            m = re.match(r"/(h\d+)/(.*)", uri)
            if m:
                rows.append((float(ts), m.group(1), int(status), int(sent), m.group(2)))
        return rows

    def first_poll_after(self, h, since):
        with self.lock:
            return next(((s, e, cpu) for s, e, _, cpu in self.polls[h] if s >= since), None)

    def last_poll_before(self, h, t):
        with self.lock:
            return next(((s, e, cpu) for s, e, _, cpu in reversed(self.polls[h]) if e <= t), None)

    def change_cost(self, since, until=None):
        """Bytes and requests of each host's first poll after `since`, or
        with `until` ({host: time}) of its requests from `since` until then."""
        reqs = self.requests()
        per_host, files = [], {}
        for h in self.hosts:
            win = (since, until[h], None) if until else self.first_poll_after(h, since)
            if not win or win[1] is None:
                continue
            mine = [r for r in reqs if r[1] == h and win[0] <= r[0] <= win[1] + 0.01]
            per_host.append((sum(r[3] for r in mine), len(mine), win[2], win[1] - win[0]))
            for r in mine:
                files[(r[4], r[2])] = files.get((r[4], r[2]), 0) + 1
        return per_host, files


def run(args):
    bench.ROOT = ROOT  # bench's Nginx and Rsyslog keep their files under it
    if ROOT.exists():
        shutil.rmtree(ROOT)
    mkdir(ROOT)
    mkdir(ROOT / "keys", 0o700)
    f = Fleet(args)
    f.signer_pub = keygen(ROOT / "keys" / "signer")
    f.make_source()
    took, _, said = f.publish()
    print(f"publish: {took:.1f} s {said}", flush=True)
    idx = ROOT / "www" / "users" / "keyward.index"
    sizes = dict(index=idx.stat().st_size, index_gz=Path(f"{idx}.gz").stat().st_size if Path(f"{idx}.gz").exists() else None,
                 publish_s=took)
    f.syslog = Rsyslog()
    f.nginx = Nginx(ROOT / "www", http_extra=LOG_FORMAT,
                    server_extra=f"access_log {ROOT}/nginx-access.log fleet; gzip_static on;")
    try:
        f.make_hosts()
        t = time.monotonic()
        f.warm()
        print(f"warm: {len(f.hosts)} hosts x {len(f.host_users(0))} users ({time.monotonic() - t:.1f} s)", flush=True)
        sched = threading.Thread(target=f.run_schedule, daemon=True)
        t_start = time.time()
        sched.start()
        # Every host's first poll fetches the full index: not steady state.
        if not f.wait_polled(t_start, 3 * PERIOD):
            print("warning: some hosts never completed a first poll", flush=True)
        w0 = time.time()
        print(f"steady state for {args.steady} s", flush=True)
        time.sleep(args.steady)
        w1 = time.time()
        with f.lock:
            steady_polls = [p for h in f.hosts for p in f.polls[h] if w0 <= p[0] and p[1] <= w1]
        steady_reqs = [r for r in f.requests() if w0 <= r[0] < w1]
        statuses = {}
        for r in steady_reqs:
            statuses[(r[4], r[2])] = statuses.get((r[4], r[2]), 0) + 1
        unchanged = [r[3] for r in steady_reqs if r[2] == 304]
        steady = dict(seconds=w1 - w0, polls=len(steady_polls), requests=len(steady_reqs),
                      per_host_min=len(steady_reqs) / len(f.hosts) / ((w1 - w0) / 60),
                      per_host_min_max=max(sum(1 for r in steady_reqs if r[1] == h) for h in f.hosts) / ((w1 - w0) / 60),
                      files=statuses, bytes_304=(min(unchanged), max(unchanged)) if unchanged else None,
                      poll_cpu_ms=statistics.median(p[3] for p in steady_polls) if steady_polls else None,
                      poll_wall_ms=statistics.median((e - s) * 1000 for s, e, *_ in steady_polls) if steady_polls else None,
                      failed=sum(1 for p in steady_polls if p[2] != 0))
        print("steady:", steady, flush=True)

        # --- t0: the victim's key is revoked.
        (ROOT / "src" / "revoked" / "victim.spec").write_text(f"key: {f.victim_pub}\n")
        p0 = time.time()
        with f.lock:
            f.check_after = p0
        took, t0, said = f.publish()
        if t0 is None:
            raise SystemExit("the republish did not change the index")
        print(f"revoked: the new index served {t0 - p0:.1f} s into the republish (t0), which took {took:.1f} s", flush=True)
        deadline = t0 + 4 * PERIOD
        while time.time() < deadline:
            with f.lock:
                done = all(any(r for _, r, _ in f.checks[h]) for h in f.hosts)
            if done:
                break
            time.sleep(0.5)
        with f.lock:
            first = {h: next((e for e, r, _ in f.checks[h] if r), None) for h in f.hosts}
            pids = {pid: h for h in f.hosts for e, r, pid in f.checks[h] if r}
        times = [first[h] - t0 for h in f.hosts if first[h] is not None]
        # Where the time went: the schedule (t0 to the start of the poll
        # that brought the list) and that poll itself (wall on this shared
        # machine, where every host's poll runs on the same 2 cores; CPU).
        brought = [f.last_poll_before(h, first[h]) for h in f.hosts if first[h] is not None]
        wait_s = [b[0] - t0 for b in brought if b]
        poll_s = [b[1] - b[0] for b in brought if b]
        poll_cpu = [b[2] for b in brought if b]
        # From the republish's start (a poll during it may see the new
        # index) until the host refused.
        revoke_cost, revoke_files = f.change_cost(p0, first)
        time.sleep(1)  # rsyslogd writes the last records
        reasons = {}
        for line in f.syslog.lines():
            m = re.search(r"keyward\[(\d+)\]: .*user=victim .*", line)
            if m and int(m.group(1)) in pids:
                reason = re.search(r"reason=(\S+)", line)
                reasons[reason.group(1) if reason else "none"] = reasons.get(reason.group(1) if reason else "none", 0) + 1
        revoke = dict(refused=len(times), hosts=len(f.hosts), p50=pct(times, 50) if times else None,
                      p99=pct(times, 99) if times else None, max=max(times) if times else None,
                      min=min(times) if times else None, publish_s=took, index_after_s=t0 - p0, reasons=reasons,
                      wait=dict(p50=pct(wait_s, 50), p99=pct(wait_s, 99), max=max(wait_s)) if wait_s else None,
                      poll=dict(p50=pct(poll_s, 50), p99=pct(poll_s, 99), max=max(poll_s)) if poll_s else None,
                      poll_cpu_ms=statistics.median(poll_cpu) if poll_cpu else None,
                      bytes=statistics.median(b for b, *_ in revoke_cost) if revoke_cost else None,
                      files=revoke_files)
        print("revocation:", revoke, flush=True)

        # --- a change of 1, then of 100 users (none of them cached by a host).
        changes = {}
        cached = {u for i in range(len(f.hosts)) for u in f.host_users(i)}
        for k in (1, 100):
            changed = [next(u for u in (f"u{(j * (args.users // k) + 5 + d) % args.users:06d}" for d in range(10))
                            if u not in cached) for j in range(k)]
            for u in changed:
                i = int(u[1:])
                (ROOT / "src" / f"{u}.keys").write_text(key_line(i, f"-k{k}".encode()) + "\n")
            p0 = time.time()
            took, tc, said = f.publish()
            if tc is None:
                raise SystemExit("the republish did not change the index")
            f.wait_polled(tc, 3 * PERIOD)
            cost, files = f.change_cost(tc)
            bs = [b for b, *_ in cost]
            changes[k] = dict(hosts=len(cost), median=statistics.median(bs), max=max(bs), min=min(bs),
                              cpu_ms=statistics.median(c[2] for c in cost), wall_s=statistics.median(c[3] for c in cost),
                              requests=statistics.median(n for _, n, *_ in cost), files=files, publish_s=took,
                              index_after_s=tc - p0)
            print(f"change of {k}:", changes[k], flush=True)
        t_end = time.time()
    finally:
        f.stop.set()
        f.nginx.stop()
        f.syslog.stop()
    sched.join(timeout=120)
    with f.lock:
        all_polls = [p for h in f.hosts for p in f.polls[h]]
    loads = [v for t, v in f.load if t_start <= t <= t_end]
    return dict(hosts=len(f.hosts), users=args.users, sizes=sizes, steady=steady, revoke=revoke, changes=changes,
                polls=len(all_polls), polls_failed=sum(1 for p in all_polls if p[2] != 0),
                load=dict(min=min(loads), median=statistics.median(loads), max=max(loads)) if loads else None,
                duration_s=t_end - t_start)


def files_text(files):
    return ", ".join(f"`{name}` {status} ×{n}" for (name, status), n in sorted(files.items()))


def markdown(r, args):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    s, v, c, z = r["steady"], r["revoke"], r["changes"], r["sizes"]
    ld = r["load"]
    sec = lambda x: "n/a" if x is None else f"{x:.1f} s" if x >= 1 else f"{x * 1000:.0f} ms"  # noqa: E731
    kb = lambda b: f"{b:,.0f} bytes" if b < 100_000 else f"{b / 1e6:.3f} MB"  # noqa: E731
    lines = [
        MARK_BEGIN,
        "## Fleet: a revocation reaching every host, and what polling costs",
        "",
        f"`sudo python3 bench/fleet.py{' --quick' if args.quick else ''} --hosts {args.hosts} --users {args.users}"
        f" --steady {args.steady}`, run on {datetime.date.today().isoformat()} at commit `{commit}`",
        f"({os.cpu_count()} cores, {cpu}, Linux {platform.release()}; 1-minute load average during the run",
        f"{ld['min']:.1f}-{ld['max']:.1f}, median {ld['median']:.1f}, from other builds on the shared machine and the",
        "hosts' own polls). One private nginx serves a directory published by `keyward publish` (release",
        f"build, signed in-process, ed25519) of {r['users']:,} users plus the victim, with a revocation list;",
        f"{r['hosts']} simulated hosts, each with its own config, cache and state directory (owned by",
        "`keyward`), URL prefix and three cached users (the victim among them), run `keyward sync",
        "--poll` as `keyward` on the packaged timer's schedule: every 30 s at a fixed per-host offset",
        "in [0, 30 s) (`RandomizedDelaySec=30s`, `FixedRandomDelay=true`), logging to a live syslog",
        "socket. Bytes are nginx's `$bytes_sent` (headers included) as served.",
        "",
        "| measured | result |",
        "|---|---|",
        f"| directory: index for {r['users']:,} users | {kb(z['index'])}"
        + (f", {kb(z['index_gz'])} gzip (`gzip_static`)" if z['index_gz'] else "") + f"; full signed publish {z['publish_s']:.1f} s |",
        f"| revoke: t0 = the new index is served ({v['index_after_s']:.1f} s into a republish of {v['publish_s']:.1f} s) → "
        "`keys victim FP UID` refuses, per host | "
        f"{v['refused']} of {v['hosts']} refused; p50 {sec(v['p50'])}, p99 {sec(v['p99'])}, max {sec(v['max'])} (min {sec(v['min'])}) |",
        f"| where it went: t0 to the start of the poll that brought the list / that poll's wall time | "
        f"p50 {sec(v['wait']['p50'])}, p99 {sec(v['wait']['p99'])}, max {sec(v['wait']['max'])} / "
        f"p50 {sec(v['poll']['p50'])}, p99 {sec(v['poll']['p99'])}, max {sec(v['poll']['max'])} (CPU, median: {v['poll_cpu_ms']:.0f} ms) |",
        f"| the refusing records (syslog, by pid) | {', '.join(f'reason={k} ×{n}' for k, n in sorted(v['reasons'].items()))} |",
        f"| requests per host per minute, nothing changed ({s['seconds']:.0f} s, {s['polls']} polls) | "
        f"{s['per_host_min']:.2f} (busiest host {s['per_host_min_max']:.2f}); {files_text(s['files'])} |",
        f"| bytes per unchanged reply | {s['bytes_304'][0]}-{s['bytes_304'][1]} bytes |" if s["bytes_304"] else
        "| bytes per unchanged reply | no 304 seen |",
        f"| one poll, nothing changed: median wall / CPU (keyward's own, wait4) | {s['poll_wall_ms']:.1f} ms / {s['poll_cpu_ms']:.1f} ms |",
        f"| bytes per host, the revocation (from the republish until the host refused, median) | {kb(v['bytes'])}; {files_text(v['files'])} |",
    ]
    for k, x in c.items():
        lines.append(f"| bytes per host, a change of {k} user{'s' if k > 1 else ''} of {r['users']:,} "
                     f"(first poll after the new index is served; median, min-max) | {kb(x['median'])} ({kb(x['min'])}-{kb(x['max'])}), "
                     f"{x['requests']:.0f} requests; {files_text(x['files'])}; that poll: {sec(x['wall_s'])} wall, {x['cpu_ms']:.0f} ms CPU (medians) |")
    lines += [
        f"| polls in the run / failed (exit ≠ 0) | {r['polls']} / {r['polls_failed']} |",
        "",
        "The changed users are cached by no host, so their rows are what the index (or its delta) costs;",
        "a host that caches a changed user also fetches that user's file and signature. All the simulated",
        "hosts share this machine's cores: a change makes every host fetch and check the new index within",
        "the same 30 s, so a poll's wall time here includes waiting for a CPU that real hosts each have",
        "to themselves; its CPU time (wait4) is what one host spends.",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--steady", type=int, default=300, help="seconds of steady state after every host's first poll (300: past the point where a cached user's entry is 4/5 of the default ttl old)")
    ap.add_argument("--quick", action="store_true", help="10 hosts, 2,000 users, 60 s steady (a smoke run)")
    ap.add_argument("--print", action="store_true", help="print the section instead of writing docs/BENCHMARKS.md")
    ap.add_argument("--keyward", help="use this binary instead of building the release one")
    args = ap.parse_args()
    if args.quick:
        args.hosts, args.users, args.steady = min(args.hosts, 10), min(args.users, 2000), min(args.steady, 60)
    # Stopped by a signal, it still cleans up (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        raise SystemExit("run as root (it starts a private nginx and rsyslogd and runs keyward as `keyward`)")
    src = Path(args.keyward) if args.keyward else None
    if not src:
        sh(["cargo", "build", "--release", "--bin", "keyward"], cwd=REPO)
        src = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "keyward"
    mkdir(BIN.parent)
    shutil.copy(src, BIN)
    os.chmod(BIN, 0o755)
    ensure_user("keyward")
    try:
        r = run(args)
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)
        shutil.rmtree(BIN.parent, ignore_errors=True)
    print(r)
    section = markdown(r, args)
    if args.print:
        print(section)
    else:
        bench.write_section(REPO / "docs" / "BENCHMARKS.md", section, MARK_BEGIN, MARK_END)
        print(section)


if __name__ == "__main__":
    main()
