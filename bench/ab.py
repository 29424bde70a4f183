#!/usr/bin/env python3
"""A/B of the login path between commits (or builds), as sshd runs it.

    sudo python3 bench/ab.py BEFORE AFTER [MORE…] [--uid] [--peers] [--runs N]

Each argument is a commit, optionally with build-time environment variables:
`HEAD:KEYWARD_SYMBOL_ORDER=0` is HEAD built without the symbol-order file
(several as `REV:A=1,B=2`). Builds every variant's release binary (each
commit in its own git worktree under /var/lib/keyward-bench-ab, never in this
checkout; one shared target directory, so dependencies build once), then
measures `keyward keys USER FP` on a fresh cache entry for each, as the
`keyward` user with a live private rsyslog socket (bench.py's set-up):
callgrind instructions from exec to exit (deterministic), page faults and
peak RSS (medians of /usr/bin/time), hyperfine in rotated rounds, and
interleaved wall/CPU medians. `--uid` adds sshd's `%U` argument (only for
commits that take it). `--peers` also runs `cat` of the cache entry and
hubakc's cache hit in the same rounds (bench.py's baseline and peer), so
each variant's ratio to `cat` comes from the same run.
Use it to show what a change does to the login path, or that it does not.
"""

import argparse
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py: the same daemons, users and helpers)

AB = Path("/var/lib/keyward-bench-ab")


def parse_variant(arg):
    """`REV[:NAME=VALUE,…]` → (rev, {NAME: VALUE})."""
    rev, _, rest = arg.partition(":")
    env = {}
    for pair in filter(None, rest.split(",")):
        name, eq, value = pair.partition("=")
        if not eq or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise SystemExit(f"{arg}: expected REV or REV:NAME=VALUE[,NAME=VALUE]")
        env[name] = value
    return rev, env


def build(rev, env):
    """The release binary of `rev` built with `env`, installed root-owned
    under AB/bin/<label>/. Returns (label, path)."""
    short = bench.out(["git", "rev-parse", "--short", rev], cwd=bench.REPO).strip()
    label = short + "".join(f" {k}={v}" for k, v in sorted(env.items()))
    tree = AB / f"src-{short}"
    if not tree.exists():
        bench.sh(["git", "worktree", "add", "--detach", "-f", str(tree), short], cwd=bench.REPO)
    target = AB / "target"
    bench.sh(["cargo", "build", "--release", "--quiet", "--bin", "keyward", "--target-dir", str(target)],
             cwd=tree, env=dict(os.environ, **env))
    dest = AB / "bin" / re.sub(r"[^A-Za-z0-9_.=-]", "_", label.replace(" ", "+"))
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    shutil.copy(target / "release" / "keyward", dest / "keyward")
    os.chmod(dest / "keyward", 0o755)
    return label, dest / "keyward"


def rusage(cmd, runs=15):
    """Medians of peak RSS (KiB) and minor and major page faults of `cmd`
    run as the keyward user (/usr/bin/time: the child's own rusage)."""
    rss, minor, major = [], [], []
    for _ in range(runs):
        r = subprocess.run(bench.AS_KEYWARD + ["/usr/bin/time", "-f", "%M %R %F"] + cmd,
                           capture_output=True, text=True, cwd="/")
        m, mi, ma = (int(x) for x in r.stderr.strip().splitlines()[-1].split())
        rss.append(m)
        minor.append(mi)
        major.append(ma)
    return statistics.median(rss), statistics.median(minor), statistics.median(major)


def syscalls(cmd):
    """System calls of one run of `cmd` as the keyward user (strace -c), or None."""
    if not shutil.which("strace"):
        return None
    outf = bench.ROOT / "results" / "strace.txt"
    subprocess.run(bench.AS_KEYWARD + ["strace", "-f", "-c", "-o", str(outf)] + cmd,
                   capture_output=True, text=True, cwd="/")
    for line in outf.read_text().splitlines():
        if line.rstrip().endswith("total"):
            # % time, seconds, usecs/call, calls, [errors,] "total"
            return int(line.split()[3])
    return None


def table(result):
    """The results as a Markdown table (for docs/BENCHMARKS.md)."""
    names = result["commands"]
    to_cat = result.get("ratio_to_cat", {})
    rows = ["| command | hyperfine | to first | to `cat` | interleaved wall / CPU | "
            "instructions | page faults (major) | syscalls | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        wall, cpu = result["interleaved_wall_cpu_ms"][n]
        ins = result["instructions"].get(n)
        rss, minor, major = result["rusage"][n]
        cat = f"{to_cat[n]:.2f}×" if n in to_cat else ""
        rows.append(f"| `{n}` | {result['hyperfine_ms'][n]:.3f} ms | {result['ratio_to_first'][n]:.3f}× | {cat} | "
                    f"{wall:.3f} / {cpu:.3f} ms | {'n/a' if ins is None else f'{ins:,}'} | "
                    f"{minor:g} ({major:g}) | {result['syscalls'].get(n)} | {rss / 1024:.2f} MiB |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", metavar="REV[:NAME=VALUE,…]")
    ap.add_argument("--uid", action="store_true", help="pass sshd's %%U too (keys USER FP UID)")
    ap.add_argument("--peers", action="store_true", help="also time cat of the entry and hubakc's cache hit")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--interleaved-rounds", type=int, default=1000)
    args = ap.parse_args()
    if len(args.variants) < 2:
        ap.error("give at least two variants")
    if os.geteuid() != 0:
        raise SystemExit("run as root (it starts private nginx/rsyslog and switches users)")
    bench.ensure_packages()
    if args.peers:
        bench.ensure_hubakc()
    AB.mkdir(parents=True, exist_ok=True)
    os.chmod(AB, 0o755)
    built = [build(*parse_variant(v)) for v in args.variants]
    if len({label for label, _ in built}) != len(built):
        raise SystemExit("two variants are the same build")

    if bench.ROOT.exists():
        shutil.rmtree(bench.ROOT)
    bench.mkdir(bench.ROOT)
    bench.mkdir(bench.ROOT / "results", 0o777)
    bench.ensure_user("keyward")
    user = "kwbench"
    created = bench.ensure_user(user, system=False, home=bench.ROOT / "home")
    keys = bench.ROOT / "keys"
    bench.mkdir(keys, 0o700)
    pub = bench.keygen(keys / "id")
    fp = bench.fingerprint(keys / "id.pub")
    www = bench.ROOT / "www"
    bench.mkdir(www / "users")
    (www / "users" / f"{user}.keys").write_text(pub + "\n")
    nginx = bench.Nginx(www)
    syslog = bench.Rsyslog()
    hubakc = bench.HubakcConfig(user, pub + "\n") if args.peers else None
    try:
        cmds = []
        for i, (label, binary) in enumerate(built):
            # One cache per binary: entry formats may differ between commits.
            cache = bench.ROOT / f"cache-{i}"
            bench.mkdir(cache, 0o750, "keyward")
            conf = bench.ROOT / f"keyward-{i}.toml"
            bench.write_config(conf, [nginx.url("/users/{user}.keys")], cache)
            cmd = [str(binary), "--config", str(conf), "keys", user, fp]
            if args.uid:
                cmd.append(str(pwd.getpwnam(user).pw_uid))
            r = subprocess.run(bench.AS_KEYWARD + cmd, capture_output=True, text=True, cwd="/")
            if r.returncode != 0 or pub.split()[1] not in r.stdout:
                raise SystemExit(f"{label}: no key from {' '.join(cmd)}: {r.stderr}")
            cmds.append(cmd)
        names = [label for label, _ in built]
        if args.peers:
            if bench.out(bench.AS_KEYWARD + [str(bench.HUBAKC), user], cwd="/").strip() != pub:
                raise SystemExit("hubakc did not answer from its cache")
            cmds += [["cat", str(bench.ROOT / "cache-0" / user)], [str(bench.HUBAKC), user]]
            names += ["cat", "hubakc"]
        load = bench.load_average()
        medians, rounds = bench.hyperfine_rounds([" ".join(c) for c in cmds], args.runs, bench.FRESH_ROUNDS,
                                                 as_keyward=True, name="ab")
        mixed = bench.interleaved(cmds, args.interleaved_rounds)
        load_after = bench.load_average()
        result = {
            "load_before_after": [load, load_after],
            "uid": args.uid,
            "variants": len(built),
            "commands": names,
            "hyperfine_ms": dict(zip(names, medians)),
            "ratio_to_first": {n: bench.round_ratio(rounds, i, 0) for i, n in enumerate(names)},
            "interleaved_wall_cpu_ms": dict(zip(names, mixed)),
            "instructions": {n: bench.callgrind_instructions(c) for n, c in zip(names, cmds)},
            "rusage": {n: rusage(c) for n, c in zip(names, cmds)},
            "syscalls": {n: syscalls(c) for n, c in zip(names, cmds)},
        }
        if args.peers:
            c = names.index("cat")
            result["ratio_to_cat"] = {n: bench.round_ratio(rounds, i, c) for i, n in enumerate(names)}
            result["interleaved_ratio_to_cat"] = {
                n: [mixed[i][0] / mixed[c][0], mixed[i][1] / mixed[c][1]] for i, n in enumerate(names)}
        print(json.dumps(result, indent=2))
        print(table(result))
    finally:
        if hubakc:
            hubakc.restore()
        nginx.stop()
        syslog.stop()
        if created:
            bench.sh(["userdel", "-r", user], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(bench.ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
