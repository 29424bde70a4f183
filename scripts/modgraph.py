#!/usr/bin/env python3
"""Module graph of src/: which top-level module uses which (crate::X), the
cycles among them, and the longest functions and files. Used to check the
layout rules in ARCHITECTURE.md:

    python3 scripts/modgraph.py            # cycles + sizes
    python3 scripts/modgraph.py --edges    # every edge too
"""
import os, re, sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

def top_module(path):
    rel = os.path.relpath(path, SRC)
    parts = rel.split(os.sep)
    name = parts[0][:-3] if parts[0].endswith(".rs") else parts[0]
    return name

def strip_tests(text):
    # unit tests may use anything, and comments (doc links) are not uses:
    # the layout rules are about the code
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("//"))

def files():
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                yield os.path.join(root, n)

def graph():
    edges = {}
    for f in files():
        m = top_module(f)
        if m in ("lib", "main"):
            continue
        text = strip_tests(open(f).read())
        for dep in re.findall(r"crate::([a-z_][a-z0-9_]*)", text):
            if dep != m:
                edges.setdefault(m, set()).add(dep)
        # `use crate::{a, b::c}` groups
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            for dep in re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group):
                if dep != m:
                    edges.setdefault(m, set()).add(dep)
    return edges

def cycles(edges):
    # Tarjan's strongly connected components
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(edges):
        if v not in index:
            visit(v)
    return out

FN = re.compile(r"^(\s*)(pub(\([a-z]+\))? )?(const )?(unsafe )?(extern \"C\" )?fn ([a-z_0-9]+)")

def functions(path):
    lines = open(path).read().split("\n")
    end_code = len(lines)
    for n, l in enumerate(lines):
        if l.startswith("#[cfg(test)]") and n + 1 < len(lines) and lines[n + 1].startswith("mod tests"):
            end_code = n
            break
    out = []
    n = 0
    while n < end_code:
        m = FN.match(lines[n])
        if m and not lines[n].rstrip().endswith(";"):
            indent = m.group(1)
            start = n
            while n < end_code and not (lines[n].startswith(indent + "}") and lines[n].strip() == "}"):
                n += 1
            out.append((n - start + 1, m.group(7), start + 1))
        n += 1
    return out

def main():
    edges = graph()
    if "--edges" in sys.argv:
        for m in sorted(edges):
            print(f"{m} -> {', '.join(sorted(edges[m]))}")
    cyc = cycles(edges)
    print("cycles:", cyc if cyc else "none")
    fns = []
    sizes = []
    for f in files():
        rel = os.path.relpath(f, SRC)
        text = open(f).read()
        total = text.count("\n")
        i = text.find("#[cfg(test)]\nmod tests")
        code = total if i < 0 else text[:i].count("\n")
        sizes.append((code, total, rel))
        for length, name, line in functions(f):
            fns.append((length, f"{rel}:{line} {name}"))
    print("largest files (code lines / with unit tests):")
    for code, total, rel in sorted(sizes, reverse=True)[:6]:
        print(f"  {code:4d} / {total:4d} {rel}")
    print("longest functions:")
    for length, where in sorted(fns, reverse=True)[:10]:
        print(f"  {length:4d} {where}")
    return 1 if cyc else 0

sys.exit(main())
