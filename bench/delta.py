#!/usr/bin/env python3
"""What deltas cost and save at fleet scale (not a test: nothing fails).

    python3 bench/delta.py [--keyward target/release/keyward] [--users 100000]

A signed directory of N users (one ed25519 key each, signed in-process) is
published twice from scratch: with deltas (the default) and without
(`--delta-keep 0`). Then 1 user, then 100 users change, and both are
published again; then --runs more publishes of 1 changed user each (so
that more older serials keep a delta, each recomposed and signed per run).
Reported: each republish's time with and without deltas; the bytes a host
at the previous serial downloads for the change (the delta and its
signature, against the full index: as stored, gzip -1 as nginx compresses
on the fly, gzip -6 as `keyward.index.gz` for gzip_static), and, with a
private nginx (gzip on, etag on) serving the tree, the bytes on the wire of
the delta's 200, of the full index's 200 and of an unchanged poll's 304.
The users' own files are the same with and without deltas, so not counted.
"""

import argparse
import gzip
import resource
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from publish import key_line, make_src  # noqa: E402


def publish(kw, src, out, key, extra=()):
    """`wall s (cpu s)` of one run: the machine is shared, so both."""
    cmd = [kw, "--config", "/nonexistent/keyward.toml", "publish", src, out,
           "--signer", key, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return f"{dt:.2f} s ({cpu:.2f} s CPU)"


def serial(out):
    with open(os.path.join(out, "keyward.index")) as f:
        first = f.readline()
    return int(next(x for x in first.split() if x.startswith("serial=")).split("=")[1])


def change(src, users, salt):
    for i in users:
        with open(os.path.join(src, f"user{i:06d}.keys"), "w") as f:
            f.write(key_line(i, salt) + "\n")


def sizes(path):
    data = open(path, "rb").read()
    return len(data), len(gzip.compress(data, 1)), len(gzip.compress(data, 6))


def nginx_bytes(root, paths):
    """Bytes on the wire from a private nginx (gzip on): each path's 200
    with Accept-Encoding: gzip, then the same request with its ETag (304)."""
    if not shutil.which("nginx"):
        return None
    d = tempfile.mkdtemp(prefix="kw-delta-nginx-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {d}/pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{ default_type text/plain; access_log off; etag on;
  gzip on; gzip_types *; gzip_min_length 0; gzip_static on;
  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d + "/"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.05)

    def get(path, etag=None):
        req = (f"GET /{path} HTTP/1.1\r\nHost: k\r\nAccept-Encoding: gzip\r\n"
               f"User-Agent: keyward/0\r\nConnection: close\r\n")
        if etag:
            req += f"If-None-Match: {etag}\r\n"
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall((req + "\r\n").encode())
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        c.close()
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        status = int(head.split()[1])
        tag = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                    if line.lower().startswith("etag:")), None)
        return status, len(data), tag

    out = {}
    try:
        for path in paths:
            st, n, tag = get(path)
            st2, n2, _ = get(path, tag)
            out[path] = (st, n, st2, n2)
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyward", default="target/release/keyward")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    kw = os.path.abspath(a.keyward)
    work = tempfile.mkdtemp(prefix="kw-delta-bench-")
    try:
        src = os.path.join(work, "src")
        make_src(src, a.users)
        key = os.path.join(work, "signer")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with_d, without = os.path.join(work, "with"), os.path.join(work, "without")
        t1 = publish(kw, src, with_d, key)
        t0 = publish(kw, src, without, key, ["--delta-keep", "0"])
        print(f"{a.users} users, first publish: {t1} with deltas, {t0} without")
        idx = os.path.join(with_d, "keyward.index")
        raw, g1, g6 = sizes(idx)
        print(f"full index: {raw} bytes, gzip -1 {g1}, gzip -6 {g6} "
              f"(keyward.index.gz {os.path.getsize(idx + '.gz')})")
        sig = os.path.getsize(idx + ".sig")
        for k, salt in [(1, b"-a"), (100, b"-b")]:
            s = serial(with_d)
            change(src, range(0, a.users, a.users // k)[:k], salt)
            # Without first: the source's pages are then warm for both.
            t0 = publish(kw, src, without, key, ["--delta-keep", "0"])
            t1 = publish(kw, src, with_d, key)
            d = os.path.join(with_d, "keyward.index.d", str(s))
            draw, dg1, dg6 = sizes(d)
            dsig = os.path.getsize(d + ".sig")
            print(f"{k} user(s) changed: republish {t1} with deltas, {t0} without; "
                  f"a host at the previous serial downloads the delta {draw} bytes "
                  f"(gzip -1 {dg1}, -6 {dg6}) + its signature {dsig}, "
                  f"against the index {raw} (gzip -6 {g6}) + its signature {sig}")
        last_with = last_without = ""
        for r in range(a.runs):
            change(src, [r + 1], b"-r%d" % r)
            last_without = publish(kw, src, without, key, ["--delta-keep", "0"])
            last_with = publish(kw, src, with_d, key)
        kept = len([n for n in os.listdir(os.path.join(with_d, "keyward.index.d"))
                    if not n.endswith(".sig")]) - 1
        print(f"after {a.runs} more 1-user publishes ({kept} older serials keep a delta): "
              f"the last took {last_with} with deltas, {last_without} without")
        s = serial(with_d)
        wire = nginx_bytes(with_d, [f"keyward.index.d/{s}", "keyward.index",
                                    f"keyward.index.d/{sorted(int(n) for n in os.listdir(os.path.join(with_d, 'keyward.index.d')) if not n.endswith('.sig'))[-2]}"])
        if wire:
            for path, (st, n, st2, n2) in wire.items():
                print(f"nginx (gzip on) {path}: {st} {n} bytes on the wire; "
                      f"again with its ETag: {st2} {n2} bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
