#!/usr/bin/env python3
"""A/B of the login path between two commits, as sshd runs it.

    sudo python3 bench/ab.py BEFORE AFTER [--uid] [--runs N]

Builds both commits' release binaries (each in its own git worktree and
target directory under /var/lib/keyward-bench-ab, never in this checkout),
then measures `keyward keys USER FP` on a fresh cache entry for each, as the
`keyward` user with a live private rsyslog socket (bench.py's set-up):
callgrind instructions from exec to exit (deterministic), hyperfine in
rotated rounds, and interleaved wall/CPU medians. `--uid` adds sshd's `%U`
argument (only for commits that take it). Use it to show that a change that
should not touch the login path does not slow it down.
"""

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py: the same daemons, users and helpers)

AB = Path("/var/lib/keyward-bench-ab")


def build(rev):
    """The release binary of `rev`, installed root-owned under AB/bin/."""
    short = bench.out(["git", "rev-parse", "--short", rev], cwd=bench.REPO).strip()
    tree = AB / f"src-{short}"
    if not tree.exists():
        bench.sh(["git", "worktree", "add", "--detach", "-f", str(tree), short], cwd=bench.REPO)
    bench.sh(["cargo", "build", "--release", "--quiet", "--bin", "keyward",
              "--target-dir", str(AB / f"target-{short}")], cwd=tree)
    dest = AB / "bin" / short
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    shutil.copy(AB / f"target-{short}" / "release" / "keyward", dest / "keyward")
    os.chmod(dest / "keyward", 0o755)
    return short, dest / "keyward"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--uid", action="store_true", help="pass sshd's %%U too (keys USER FP UID)")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it starts private nginx/rsyslog and switches users)")
    bench.ensure_packages()
    AB.mkdir(parents=True, exist_ok=True)
    os.chmod(AB, 0o755)
    built = [build(args.before), build(args.after)]

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
    try:
        cmds = []
        for short, binary in built:
            # One cache per binary: entry formats may differ between commits.
            cache = bench.ROOT / f"cache-{short}"
            bench.mkdir(cache, 0o750, "keyward")
            conf = bench.ROOT / f"keyward-{short}.toml"
            bench.write_config(conf, [nginx.url("/users/{user}.keys")], cache)
            cmd = [str(binary), "--config", str(conf), "keys", user, fp]
            if args.uid:
                cmd.append(str(pwd.getpwnam(user).pw_uid))
            r = subprocess.run(bench.AS_KEYWARD + cmd, capture_output=True, text=True, cwd="/")
            if r.returncode != 0 or pub.split()[1] not in r.stdout:
                raise SystemExit(f"{short}: no key from {' '.join(cmd)}: {r.stderr}")
            cmds.append(cmd)
        load = bench.load_average()
        names = [s for s, _ in built]
        medians, rounds = bench.hyperfine_rounds([" ".join(c) for c in cmds], args.runs, bench.FRESH_ROUNDS,
                                                 as_keyward=True, name="ab")
        mixed = bench.interleaved(cmds, 1000)
        result = {
            "load": load,
            "uid": args.uid,
            "commits": names,
            "hyperfine_ms": dict(zip(names, medians)),
            "after_over_before": bench.round_ratio(rounds, 1, 0),
            "interleaved_wall_cpu_ms": dict(zip(names, mixed)),
            "instructions": {n: bench.callgrind_instructions(c) for n, c in zip(names, cmds)},
            "peak_rss_kib": {n: bench.peak_rss_kib(c) for n, c in zip(names, cmds)},
        }
        print(json.dumps(result, indent=2))
    finally:
        nginx.stop()
        syslog.stop()
        if created:
            bench.sh(["userdel", "-r", user], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(bench.ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
