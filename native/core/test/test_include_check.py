#!/usr/bin/env python3
"""test_include_check.py - scripts/check-includes.py must fail on bad trees.

Builds small trees in a temporary directory (an include cycle, an upward
include, an include between two modules of one layer, an unplaced file, an
include of a missing header, a call to a higher module hidden behind a
hand-written declaration) and checks each is refused with exit status 1 and
a line naming the files, and that a good tree passes.  Then checks the real
native/core passes, with the library's objects when given:

  test_include_check.py [OBJ...]     (ctest include_layers passes them)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, '..', '..', '..', 'scripts', 'check-includes.py')
passed = failed = 0

GOOD_LAYERS = """\
0 public include/pub.h
1 leaf   src/leaf.h src/leaf.c
2 mid    src/mid.h src/mid.c
3 top    src/top.c
"""
GOOD = {
    'include/pub.h': '#define PUB 1\n',
    'src/leaf.h': '#include "pub.h"\nint leaf(void);\n',
    'src/leaf.c': '#include "leaf.h"\nint leaf(void) { return PUB; }\n',
    'src/mid.h': '#include "leaf.h"\nint mid(void);\n',
    'src/mid.c': '#include "mid.h"\nint mid(void) { return leaf(); }\n',
    'src/top.c': '#include "mid.h"\nint top(void) { return mid(); }\n',
}


def make_tree(files, layers):
    root = tempfile.mkdtemp(prefix='sp-include-check.')
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    with open(os.path.join(root, 'LAYERS'), 'w') as f:
        f.write(layers)
    return root


def run(root, objects=None):
    cmd = [sys.executable, SCRIPT, root]
    if objects:
        cmd += ['--objects'] + objects
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def report(name, ok, detail=''):
    global passed, failed
    if ok:
        passed += 1
        print(f'ok {name}')
    else:
        failed += 1
        print(f'FAIL {name}\n{detail}')


def expect(name, files, layers, want_rc, want_text=None, objects_of=None):
    root = make_tree(files, layers)
    try:
        objects = None
        if objects_of:
            objects = []
            for src in objects_of:
                obj = os.path.join(root, os.path.basename(src) + '.o')
                subprocess.run(['cc', '-c', '-I', os.path.join(root, 'include'), '-o', obj,
                                os.path.join(root, src)], check=True)
                objects.append(obj)
        rc, out = run(root, objects)
        report(name, rc == want_rc and (want_text is None or want_text in out),
               f'  exit {rc} (wanted {want_rc}), wanted text {want_text!r} in:\n{out}')
    finally:
        shutil.rmtree(root)


def with_(**changes):
    files = dict(GOOD)
    files.update(changes)
    return files


expect('a good tree passes', GOOD, GOOD_LAYERS, 0, 'no cycle')
expect('a good tree passes with its objects', GOOD, GOOD_LAYERS, 0, 'calling only down',
       objects_of=['src/leaf.c', 'src/mid.c', 'src/top.c'])
expect('an include cycle fails',
       with_(**{'src/leaf.h': '#include "pub.h"\n#include "leaf2.h"\nint leaf(void);\n',
                'src/leaf2.h': '#include "leaf.h"\n'}),
       GOOD_LAYERS.replace('src/leaf.h src/leaf.c', 'src/leaf.h src/leaf2.h src/leaf.c'), 1,
       'include cycle: src/leaf.h -> src/leaf2.h -> src/leaf.h')
expect('an upward include fails',
       with_(**{'src/leaf.c': '#include "leaf.h"\n#include "mid.h"\nint leaf(void) { return PUB; }\n'}),
       GOOD_LAYERS, 1, 'src/leaf.c (module leaf, layer 1) includes src/mid.h (module mid, layer 2): a higher layer')
expect('an include between two modules of one layer fails',
       with_(**{'src/other.h': '#include "leaf.h"\n'}),
       GOOD_LAYERS + '1 other src/other.h\n', 1, 'includes src/leaf.h (module leaf, layer 1): its own layer')
expect('an unplaced file fails', with_(**{'src/stray.c': '\n'}), GOOD_LAYERS, 1,
       'src/stray.c: not placed in LAYERS')
expect('an include of a missing header fails',
       with_(**{'src/top.c': '#include "gone.h"\n'}), GOOD_LAYERS, 1, 'includes "gone.h", which is no file')
expect('a call to a higher module behind a hand-written declaration fails',
       with_(**{'src/leaf.c': '#include "leaf.h"\nint mid(void);\nint leaf(void) { return mid(); }\n'}),
       GOOD_LAYERS, 1, 'leaf.c (module leaf, layer 1) uses mid of mid.c (module mid, layer 2)',
       objects_of=['src/leaf.c', 'src/mid.c', 'src/top.c'])

# CMake hands $<TARGET_OBJECTS:...> over as one ;-separated list.
core_objects = [o for arg in sys.argv[1:] for o in arg.split(';') if o]
rc, out = run(os.path.join(HERE, '..'), core_objects)
what = ' and its objects call only down' if core_objects else ''
report(f'native/core has no include cycle and no upward include{what}', rc == 0, out)



def public_api():
    """Names declared SP_API in the public headers."""
    names = set()
    inc = os.path.join(HERE, '..', 'include')
    for name in os.listdir(inc):
        text = open(os.path.join(inc, name)).read()
        names.update(re.findall(r'^SP_API\b[^(]*?\b(sp_\w+)\(', text, re.M))
    return names


def exports_only_public(objects):
    """Links the objects into a shared object: its dynamic symbols must be
    exactly the public API (hidden visibility keeps every sp__ internal in)."""
    tmp = tempfile.mkdtemp(prefix='sp-exports.')
    try:
        so = os.path.join(tmp, 'libcore.so')
        r = subprocess.run(['cc', '-shared', '-o', so] + objects + ['-lpthread'],
                           capture_output=True, text=True)
        if r.returncode:
            return False, 'linking the objects failed:\n' + r.stderr
        out = subprocess.run(['nm', '-D', '--defined-only', so], capture_output=True,
                             text=True, check=True).stdout
        exported = {f[2] for f in (l.split() for l in out.splitlines())
                    if len(f) == 3 and f[1] in 'TDBR' and f[2].startswith('sp')}
        api = public_api()
        extra, missing = sorted(exported - api), sorted(api - exported)
        return not extra and not missing and len(api) > 20, \
            f'  exported but not public: {extra}\n  public but not exported: {missing}'
    finally:
        shutil.rmtree(tmp)


def headers_stand_alone():
    """Each public header compiles on its own, as C and as C++."""
    inc = os.path.join(HERE, '..', 'include')
    bad = []
    for name in sorted(os.listdir(inc)):
        for lang, cc in (('c', 'cc'), ('c++', 'c++')):
            r = subprocess.run([cc, '-fsyntax-only', '-Wall', '-Wextra', '-Werror', '-x', lang, '-I', inc, '-'],
                               input=f'#include "{name}"\n', capture_output=True, text=True)
            if r.returncode:
                bad.append(f'{name} as {lang}:\n{r.stderr}')
    return not bad, '\n'.join(bad)


ok, detail = headers_stand_alone()
report('each public header compiles on its own in C and C++', ok, detail)

if core_objects:
    ok, detail = exports_only_public(core_objects)
    report('a shared object of the core exports the public API and nothing else', ok, detail)

print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
