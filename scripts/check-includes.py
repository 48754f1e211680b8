#!/usr/bin/env python3
"""Checks the module layering of a C tree (native/core by default).

Reads ROOT/LAYERS (see that file), builds the graph of #include "..." edges
between the files under ROOT/src and ROOT/include, and fails (exit 1) when:
  - an include closes a cycle (a file reaches itself),
  - a file includes a module on its own layer or above (other than its own
    module),
  - a file is not placed in LAYERS, or an include names no file of the tree.
With --objects, also reads the symbols of the compiled objects (nm) and
fails when a module calls (or uses the data of) a module on its own layer or
above: the include graph alone cannot see a function declared by hand, and
one shared header would hide every call circle behind it.
Prints one line per problem naming the files, and what to do.

  scripts/check-includes.py [ROOT] [--objects OBJ...]
"""
import glob
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def load_layers(root):
    path = os.path.join(root, 'LAYERS')
    try:
        text = open(path, encoding='utf-8').read()
    except OSError as err:
        raise SystemExit(f'check-includes: cannot read {path}: {err.strerror}')
    where = {}  # relative file -> (layer, module)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            raise SystemExit(f'check-includes: {path}:{n}: expected "LAYER MODULE FILES...", got "{line}"')
        layer, module = int(fields[0]), fields[1]
        for pattern in fields[2:]:
            matches = sorted(glob.glob(os.path.join(root, pattern))) or [os.path.join(root, pattern)]
            for m in matches:
                rel = os.path.relpath(m, root)
                if rel in where and where[rel][1] != module:
                    raise SystemExit(f'check-includes: {path}:{n}: {rel} is already in module {where[rel][1]}')
                where[rel] = (layer, module)
    return where


def tree_files(root):
    files = []
    for sub in ('src', 'include'):
        for dirpath, _, names in os.walk(os.path.join(root, sub)):
            for name in names:
                if name.endswith(('.c', '.h')):
                    files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(files)


def resolve(root, including, name):
    """The tree file an include names: next to the includer, else in src/ or include/."""
    for base in (os.path.dirname(including), 'src', 'include'):
        rel = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, rel)):
            return rel
    return None


def check(root):
    where = load_layers(root)
    files = tree_files(root)
    problems = []
    edges = {}
    for f in files:
        if f not in where:
            problems.append(f'{f}: not placed in LAYERS (add it to the line of its module)')
        text = open(os.path.join(root, f), encoding='utf-8', errors='replace').read()
        edges[f] = []
        for name in INCLUDE.findall(text):
            target = resolve(root, f, name)
            if target is None:
                problems.append(f'{f}: includes "{name}", which is no file of the tree')
                continue
            edges[f].append(target)
            if f in where and target in where:
                (fl, fm), (tl, tm) = where[f], where[target]
                if fm != tm and tl >= fl:
                    kind = 'its own layer' if tl == fl else 'a higher layer'
                    problems.append(f'{f} (module {fm}, layer {fl}) includes {target} (module {tm}, '
                                    f'layer {tl}): {kind}; move what it needs down, or the file up')
    # Cycles: depth-first search, reporting each cycle once by its path.
    state = {}
    stack = []

    def visit(f):
        state[f] = 1
        stack.append(f)
        for t in edges.get(f, []):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                problems.append('include cycle: ' + ' -> '.join(cycle))
            elif t not in state:
                visit(t)
        stack.pop()
        state[f] = 2

    for f in files:
        if f not in state:
            visit(f)
    return files, edges, where, problems


def source_of(obj):
    """The source file name an object was compiled from: x.c.o or x.o -> x.c."""
    base = os.path.basename(obj)
    if base.endswith('.c.o'):
        return base[:-2]
    if base.endswith('.o'):
        return base[:-2] + '.c'
    return base


def check_objects(where, objects):
    """Problems with the symbol references between the modules' objects."""
    by_name = {os.path.basename(f): lw for f, lw in where.items() if f.endswith('.c')}
    defined = {}  # symbol -> source
    undefined = {}  # source -> symbols
    problems = []
    for obj in objects:
        src = source_of(obj)
        if src not in by_name:
            problems.append(f'{obj}: compiled from {src}, which LAYERS does not place')
            continue
        try:
            out = subprocess.run(['nm', '-P', obj], check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            raise SystemExit(f'check-includes: nm {obj} failed: {err}')
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 2:
                continue
            sym, kind = fields[0], fields[1]
            if kind == 'U':
                undefined.setdefault(src, set()).add(sym)
            elif kind.isupper():
                defined[sym] = src
    for src, syms in sorted(undefined.items()):
        fl, fm = by_name[src]
        for sym in sorted(syms):
            if sym not in defined:
                continue  # libc and friends
            tl, tm = by_name[defined[sym]]
            if tm != fm and tl >= fl:
                kind = 'its own layer' if tl == fl else 'a higher layer'
                problems.append(f'{src} (module {fm}, layer {fl}) uses {sym} of {defined[sym]} '
                                f'(module {tm}, layer {tl}): {kind}')
    return problems


def main(argv):
    args = argv[1:]
    objects = []
    if '--objects' in args:
        at = args.index('--objects')
        objects = [o for o in args[at + 1:] if o]
        args = args[:at]
        if not objects:
            raise SystemExit('check-includes: --objects needs the object files of the library')
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'native', 'core')
    files, edges, where, problems = check(root)
    if objects:
        problems += check_objects(where, objects)
    for p in problems:
        print(f'check-includes: {p}', file=sys.stderr)
    if problems:
        print(f'check-includes: {len(problems)} problem(s) in {root}', file=sys.stderr)
        return 1
    nedges = sum(len(v) for v in edges.values())
    extra = f', {len(objects)} objects calling only down' if objects else ''
    print(f'check-includes: {len(files)} files, {nedges} includes, no cycle, no upward edge{extra}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
