#!/usr/bin/env python3
"""Fails when two top-level modules of src/ import each other, directly or through others.

A top-level module is a file `src/X.rs` or a folder `src/X/`. Every `crate::X` path in a file
of module A (in `use` lists too, `use crate::{x, y::z}`) is an edge A -> X. Any strongly
connected component of more than one module is a cycle and is printed with the lines that make
it. `lib.rs` and `main.rs` only declare and call, so they are not nodes.

    python3 .ci/layers.py            # check
    python3 .ci/layers.py --graph    # also print every module's imports
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def modules():
    out = {}
    for name in sorted(os.listdir(SRC)):
        path = os.path.join(SRC, name)
        if name in ("lib.rs", "main.rs"):
            continue
        if name.endswith(".rs"):
            out[name[:-3]] = [path]
        elif os.path.isdir(path):
            files = []
            for root, _, fs in os.walk(path):
                files += [os.path.join(root, f) for f in fs if f.endswith(".rs")]
            out[name] = sorted(files)
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def brace_heads(body):
    """Top-level names in a `{a, b::c, d::{e}}` use list."""
    depth, cur, out = 0, "", []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        if depth == 0:
            cur += ch
    out.append(cur)
    return [re.match(r"\s*(\w+)", x).group(1) for x in out if re.match(r"\s*(\w+)", x)]


def edges(mods):
    found = {}
    for mod, files in mods.items():
        for f in files:
            text = strip_comments(open(f, encoding="utf-8").read())
            for m in re.finditer(r"crate::\{", text):
                start = m.end()
                depth, i = 1, start
                while depth and i < len(text):
                    depth += {"{": 1, "}": -1}.get(text[i], 0)
                    i += 1
                for head in brace_heads(text[start : i - 1]):
                    if head in mods and head != mod:
                        found.setdefault((mod, head), f)
            for m in re.finditer(r"crate::(\w+)", text):
                head = m.group(1)
                if head in mods and head != mod:
                    found.setdefault((mod, head), f)
    return found


def sccs(nodes, adj):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    mods = modules()
    found = edges(mods)
    adj = {}
    for a, b in found:
        adj.setdefault(a, set()).add(b)
    if "--graph" in sys.argv:
        for m in mods:
            print(f"{m} -> {', '.join(sorted(adj.get(m, ()))) or '-'}")
    bad = [c for c in sccs(list(mods), adj) if len(c) > 1]
    for comp in bad:
        print("import cycle between top-level modules: " + " ".join(comp))
        for a in comp:
            for b in sorted(adj.get(a, ())):
                if b in comp:
                    print(f"  {a} -> {b}  ({os.path.relpath(found[(a, b)], SRC + '/..')})")
    if bad:
        print("a module lower in the flow must not import one above it: move the shared type down")
        sys.exit(1)
    print(f"no import cycle between {len(mods)} top-level modules")


main()
