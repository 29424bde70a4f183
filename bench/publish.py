#!/usr/bin/env python3
"""Benchmark of `keyward publish` at fleet scale (not a test: nothing fails).

    python3 bench/publish.py [--keyward target/release/keyward] [--users 100000]
                             [--keygen-users 2000] [--baseline OTHER_KEYWARD]

1. A full signed publish of N users (one ed25519 key each) from a folder,
   signed in-process with an unencrypted ed25519 key.
2. A republish with 1 % of the users changed (the rest kept as they are).
3. The same full publish of --keygen-users users signed through ssh-keygen
   (`--sign-with ssh-keygen`, one process per file), extrapolated to N;
   with --baseline, also that binary (e.g. a build of main) on the same input.

Targets (issue 24): 1. <= 60 s, 2. <= 5 s on the project's 2-core machine.
Runs anywhere (no root needed); the work directory is removed at the end.
"""

import argparse
import base64
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def key_line(i, salt=b""):
    blob = (len(b"ssh-ed25519").to_bytes(4, "big") + b"ssh-ed25519"
            + (32).to_bytes(4, "big") + os.urandom(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} user{i}{salt.decode()}"


def make_src(path, n):
    os.makedirs(path)
    for i in range(n):
        with open(os.path.join(path, f"user{i:06d}.keys"), "w") as f:
            f.write(key_line(i) + "\n")


CPU = {}


def publish(kw, src, out, key, extra=()):
    """Wall time of one run; its CPU time (user + system) goes to CPU[out]:
    the machine is shared, so both are reported."""
    cmd = [kw, "--config", "/nonexistent/keyward.toml", "publish", src, out,
           "--signer", key, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[out] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt, r.stdout.strip().splitlines()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyward", default="target/release/keyward")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--keygen-users", type=int, default=2_000)
    ap.add_argument("--baseline", help="another keyward binary for the ssh-keygen row")
    a = ap.parse_args()
    kw = os.path.abspath(a.keyward)
    work = tempfile.mkdtemp(prefix="keyward-bench-publish-")
    try:
        key = os.path.join(work, "signing_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        src, out = os.path.join(work, "src"), os.path.join(work, "out")
        t = time.monotonic()
        make_src(src, a.users)
        print(f"input: {a.users} users ({time.monotonic() - t:.1f} s to generate)")

        full, lines = publish(kw, src, out, key)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"1. full signed publish, {a.users} users, in-process: {full:.1f} s "
              f"(CPU {CPU[out]:.1f} s, {a.users / full:,.0f} users/s)  "
              f"target <= 60 s: {'met' if full <= 60 else 'NOT met'}")

        changed = max(1, a.users // 100)
        for i in range(0, a.users, a.users // changed):
            with open(os.path.join(src, f"user{i:06d}.keys"), "w") as f:
                f.write(key_line(i, b"-new") + "\n")
        again, lines = publish(kw, src, out, key)
        print(f"2. republish, {changed} of {a.users} users changed: {again:.1f} s "
              f"(CPU {CPU[out]:.1f} s)  target <= 5 s: {'met' if again <= 5 else 'NOT met'}")

        nothing, _ = publish(kw, src, out, key)
        print(f"   republish, nothing changed: {nothing:.1f} s (CPU {CPU[out]:.1f} s)")
        t = time.monotonic()
        r = subprocess.run([kw, "--config", "/nonexistent/keyward.toml", "publish", "--check", out,
                            "--signer", key + ".pub"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(f"   publish --check of the tree: {time.monotonic() - t:.1f} s, exit {r.returncode}: "
              f"{r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()[-200:]}")

        small_src, small_out = os.path.join(work, "src-small"), os.path.join(work, "out-small")
        make_src(small_src, a.keygen_users)
        rows = [("this build, --sign-with ssh-keygen", kw, ["--sign-with", "ssh-keygen"])]
        if a.baseline:
            rows.append(("baseline (ssh-keygen per file)", os.path.abspath(a.baseline), []))
        for name, binary, extra in rows:
            shutil.rmtree(small_out, ignore_errors=True)
            dt, _ = publish(binary, small_src, small_out, key, extra)
            print(f"3. {name}: {a.keygen_users} users {dt:.1f} s "
                  f"-> {a.users} users ~{dt * a.users / a.keygen_users:.0f} s (extrapolated)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
