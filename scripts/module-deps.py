#!/usr/bin/env python3
"""Which top-level module of src/ uses which (`crate::name` paths, `use crate::{a, b}` groups
included), and whether any of them form a cycle. Exit status 1 on a cycle.

    scripts/module-deps.py          # the graph, then OK or the cycles
    scripts/module-deps.py --dot    # the graph for graphviz
"""
import pathlib
import re
import sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path):
    rel = path.relative_to(src)
    top = rel.parts[0]
    return top[:-3] if top.endswith(".rs") else top


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def group_heads(body):
    """Top-level names of a `{a, b::c, d::{e}}` group."""
    heads, depth, token = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            heads.append(token)
            token = ""
            continue
        if depth == 0:
            token += ch
    heads.append(token)
    return [h.strip().split("::")[0].strip() for h in heads if h.strip()]


def uses(text):
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    for match in re.finditer(r"\bcrate::\{", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.update(group_heads(text[match.end() : i - 1]))
    return found


modules = {module_of(p) for p in src.rglob("*.rs")} - {"lib"}
edges = {m: set() for m in modules}
for path in src.rglob("*.rs"):
    m = module_of(path)
    if m == "lib":
        continue
    for used in uses(strip_comments(path.read_text())):
        if used in modules and used != m:
            edges[m].add(used)

if "--dot" in sys.argv:
    print("digraph modules {")
    for m in sorted(edges):
        for d in sorted(edges[m]):
            print(f'  "{m}" -> "{d}";')
    print("}")
    sys.exit(0)

for m in sorted(edges):
    print(f"{m:12} -> {', '.join(sorted(edges[m])) or '(nothing)'}")

# Tarjan's strongly connected components: any with more than one module is a cycle.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        scc = []
        while True:
            w = stack.pop()
            on.discard(w)
            scc.append(w)
            if w == v:
                break
        if len(scc) > 1:
            sccs.append(sorted(scc))


for v in sorted(edges):
    if v not in index:
        visit(v)
if sccs:
    for scc in sccs:
        print("cycle among: " + ", ".join(scc))
    sys.exit(1)
print("no import cycle between top-level modules")
