#!/usr/bin/env python3
"""Functions longer than the limit in the directories where long functions hurt most (the run
engine, load, generation, report_html): each should read as a few named steps. Exit status 1 when
any is over the limit.

    scripts/function-lengths.py            # limit 90 lines (the aim is ~80)
    scripts/function-lengths.py --list 60  # every function over 60 lines, longest first
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "src"
DIRS = ["runs", "load", "generate", "report_html", "records"]
FN = re.compile(r'\s*(pub(\([a-z]+\))? )?(unsafe )?(extern "C-unwind" )?(const )?fn (\w+)')


def lengths():
    for d in DIRS:
        for path in sorted((root / d).rglob("*.rs")):
            lines = path.read_text().split("\n")
            for i, line in enumerate(lines):
                m = FN.match(line)
                if not m or line.rstrip().endswith(";"):
                    continue
                indent = len(line) - len(line.lstrip())
                j = i
                while j < len(lines) and not lines[j].rstrip().endswith("{"):
                    j += 1
                k = j + 1
                while k < len(lines) and not (
                    lines[k].startswith(" " * indent + "}") and len(lines[k]) - len(lines[k].lstrip()) == indent
                ):
                    k += 1
                yield k - i + 1, f"{path.relative_to(root.parent)}:{i + 1}", m.group(6)


limit = 90
listing = "--list" in sys.argv
if listing:
    limit = int(sys.argv[sys.argv.index("--list") + 1])
over = sorted((l for l in lengths() if l[0] > limit), reverse=True)
for n, where, name in over:
    print(f"{n:4d} lines  {where}  {name}")
if listing:
    sys.exit(0)
if over:
    print(f"{len(over)} function(s) over {limit} lines: cut them into named steps", file=sys.stderr)
    sys.exit(1)
print(f"no function over {limit} lines in {', '.join(DIRS)}")
