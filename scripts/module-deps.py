#!/usr/bin/env python3
"""Which module of src/ uses which, at every level, and whether any of them form a cycle. Exit
status 1 on a cycle.

At the top level the nodes are src/'s modules (api, runs, …); inside a directory module (runs/) they
are its children (runs::worker, runs::standby, …), and so on down. A path a file names
(`crate::x::y`, `super::y`, `self::y`, `use super::{a, b}` groups included) is an edge, drawn at the
level where the file's module and the named module part: from the file's branch to the named one.
A directory's `mod.rs` is its module's face (it declares and re-exports the children, and may use
them); it is not a node among them.

    scripts/module-deps.py          # every level's graph, then OK or the cycles
    scripts/module-deps.py --dot    # the graphs for graphviz
"""
import pathlib
import re
import sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_path(path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def group_items(body):
    """The paths of a `{a, b::c, d::{e}}` group, one level deep (`d::{e}` is `d`)."""
    items, depth, token = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(token)
            token = ""
            continue
        if depth == 0:
            token += ch
    items.append(token)
    return [re.sub(r"\s+", "", i).split("::{")[0] for i in items if i.strip()]


PATH = re.compile(r"\b(crate|super|self)((?:\s*::\s*(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(\s*::\s*\{)?")


def referenced(text, here):
    """Absolute module paths (tuples) the text names, resolved from module `here`."""
    found = []
    for m in PATH.finditer(text):
        head, rest = m.group(1), [s for s in re.split(r"\s*::\s*", m.group(2)) if s]
        base = () if head == "crate" else here[:-1] if head == "super" else here
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
        tails = [rest]
        if m.group(3):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            tails = [rest + [s for s in item.split("::") if s] for item in group_items(text[m.end() : i - 1])]
        for tail in tails:
            found.append(base + tuple(s for s in tail if s != "self"))
    return found


files = [p for p in src.rglob("*.rs")]
modules = {module_path(p) for p in files}


def known_prefix(path):
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return ()


edges = {}  # level (tuple) -> {child: set(child)}
for path in files:
    here = module_path(path)
    if not here:
        continue
    for target in referenced(strip_comments(path.read_text()), here):
        target = known_prefix(target)
        common = 0
        while common < min(len(here), len(target)) and here[common] == target[common]:
            common += 1
        if common < len(here) and common < len(target):
            level = here[:common]
            edges.setdefault(level, {}).setdefault(here[common], set()).add(target[common])
for m in modules:
    if m:
        edges.setdefault(m[:-1], {}).setdefault(m[-1], set())


def name(level):
    return "::".join(level) or "src"


if "--dot" in sys.argv:
    print("digraph modules {")
    for level in sorted(edges):
        for m in sorted(edges[level]):
            for d in sorted(edges[level][m]):
                print(f'  "{name(level + (m,))}" -> "{name(level + (d,))}";')
    print("}")
    sys.exit(0)


def cycles(graph):
    """Tarjan's strongly connected components: any with more than one node is a cycle."""
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


found = []
for level in sorted(edges, key=lambda l: (len(l), l)):
    graph = edges[level]
    if len(graph) < 2 and not any(graph.values()):
        continue
    print(f"{name(level)}:")
    for m in sorted(graph):
        print(f"  {m:14} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    found += [(level, c) for c in cycles(graph)]
if found:
    for level, scc in found:
        print(f"cycle in {name(level)}: " + ", ".join(scc))
    sys.exit(1)
print(f"no import cycle at any level ({len(modules) - 1} modules)")
