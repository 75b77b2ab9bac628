"""Writes the layout constants that fast modules keep private copies of.

MicroPython folds a const() only where its own module defines it (`_NAME = const(n)`:
no global, no lookup), so the per-packet modules copy the packet, flow-slot, policy and
counter layouts they use. The copies are written here, from the modules that define
them (SOURCES), as MicroPython's py/makeqstrdata.py writes its tables: in each module
that has the block

    # ---- layout: written by tools/layout.py from the modules it names; do not edit
    # ---- end of layout

the lines between are the module's own copies of every `_NAME` its code uses whose NAME
a source defines. forward/counters.py's indices are written from its NAMES the same
way (C_<NAME>, in order). A copy written by hand, outside a block, is an error.

    python tools/layout.py            rewrite every block that is not current
    python tools/layout.py --check    exit 1 naming what is stale (make test runs it)
"""
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the public names are defined, in the order their copies are written.
SOURCES = ("firmware/nat/consts.py", "firmware/forward/shared.py",
           "firmware/forward/counters.py", "firmware/forward/datapath.py")
COUNTERS = "firmware/forward/counters.py"
TARGET_DIRS = ("firmware", "boards")
BEGIN = "# ---- layout: written by tools/layout.py from the modules it names; do not edit"
END = "# ---- end of layout"
COUNTERS_BEGIN = "# ---- counter indices: written by tools/layout.py from NAMES; do not edit"

_COPY = re.compile(r"^_([A-Z][A-Z0-9_]*) = const\(", re.M)
_USE = re.compile(r"\b_([A-Z][A-Z0-9_]*)\b")


class LayoutError(Exception):
    pass


def counter_names(text):
    """NAMES of forward/counters.py, from its source."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["NAMES"]:
            return [ast.literal_eval(e) for e in node.value.elts]
    raise LayoutError("%s: no NAMES tuple" % COUNTERS)


def counter_block(text):
    return ["C_%s = const(%d)" % (name.upper(), i) for i, name in enumerate(counter_names(text))]


def definitions():
    """{NAME: (source, expression text, value)} for every public const() of SOURCES."""
    defs = {}
    for src in SOURCES:
        text = (ROOT / src).read_text()
        if src == COUNTERS:  # written from NAMES, whatever its block holds now
            for i, name in enumerate(counter_names(text)):
                defs["C_" + name.upper()] = (src, str(i), i)
            continue
        values = {}
        for node in ast.parse(text).body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "const"):
                continue
            name = node.targets[0].id
            if name.startswith("_") or not name.isupper():
                continue
            expr = node.value.args[0]
            value = eval(compile(ast.Expression(expr), src, "eval"), {}, values)
            values[name] = value
            if name in defs and defs[name][2] != value:
                raise LayoutError("%s is %r in %s but %r in %s" % (
                    name, value, src, defs[name][2], defs[name][0]))
            defs.setdefault(name, (src, ast.get_source_segment(text, expr), value))
    return defs


def _split(text, begin, path):
    """(head, block lines, tail) around a marked block, or None without one."""
    lines = text.split("\n")
    if begin not in lines:
        return None
    b = lines.index(begin)
    if END not in lines[b:]:
        raise LayoutError("%s: %r without %r" % (path, begin, END))
    e = lines.index(END, b)
    return lines[:b + 1], lines[b + 1:e], lines[e:]


def block_for(code, defs):
    """The lines of a module's block: a copy of each used name, grouped by source."""
    used = set(_USE.findall(code)) - set(_COPY.findall(code))
    out = []
    for src in SOURCES:
        names = [n for n, d in defs.items() if d[0] == src and n in used]
        if names:
            out.append("# %s" % src.split("/", 1)[1])
            out += ["_%s = const(%s)" % (n, defs[n][1]) for n in names]
    return out


def expected(path, text, defs):
    """The module's text with its blocks current, or None if it has no block."""
    rel = path.relative_to(ROOT).as_posix()
    parts = _split(text, COUNTERS_BEGIN if rel == COUNTERS else BEGIN, rel)
    if parts is None:
        hand = [n for n in _COPY.findall(text) if n in defs]
        if hand:
            raise LayoutError("%s: hand-written copies of %s: use a layout block (%s)"
                              % (rel, ", ".join(hand), __file__))
        return None
    head, _, tail = parts
    code = "\n".join(head + tail)
    hand = [n for n in _COPY.findall(code) if n in defs]
    if hand:
        raise LayoutError("%s: hand-written copies of %s outside its layout block"
                          % (rel, ", ".join(hand)))
    block = counter_block(text) if rel == COUNTERS else block_for(code, defs)
    return "\n".join(head + block + tail)


def modules():
    for d in TARGET_DIRS:
        yield from sorted((ROOT / d).rglob("*.py"))


def stale():
    """[(path, current text)] of every module whose blocks are not what they should be."""
    defs = definitions()
    out = []
    for path in modules():
        text = path.read_text()
        want = expected(path, text, defs)
        if want is not None and want != text:
            out.append((path, want))
    return out


def main(argv):
    try:
        todo = stale()
    except LayoutError as e:
        print("layout: %s" % e)
        return 1
    if "--check" in argv:
        for path, _ in todo:
            print("layout: %s is stale: run tools/layout.py" % path.relative_to(ROOT))
        return 1 if todo else 0
    for path, text in todo:
        path.write_text(text)
        print("layout: wrote %s" % path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
