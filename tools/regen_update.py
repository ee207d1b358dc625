#!/usr/bin/env python3
"""tools/regen_update.py REPO: rewrites the generated part of the update script
sql/deploy_progress--1.0--1.1.sql, everything after its header line
"-- Functions and views as sql/src defines them in 1.1", from the built 1.1 script
(run "make" first): every function or view whose definition differs from 1.0's, or
is new, in the order of the living source, with its comment, COMMENT and GRANTs.
Functions and views the hand-written part above the header defines are left to it.
The hand-written part (table changes, data migrations, DROPs of changed signatures)
is never touched.  test/t/012_upgrade.pl then proves upgrade == fresh install."""
import re, sys
repo = sys.argv[1]
MARK = '-- Functions and views as sql/src defines them in 1.1'
BOUND = re.compile(r'^(CREATE |DO |INSERT |ALTER |-{10,})')
def blocks(path):
    lines = open(path).read().split('\n')
    starts = [i for i, l in enumerate(lines) if BOUND.match(l)]
    out = []
    for n, s in enumerate(starts):
        if lines[s].startswith('---'):
            continue
        b = s
        while b > 0 and lines[b-1].startswith('--') and not lines[b-1].startswith('-----'):
            b -= 1
        e = starts[n+1] if n + 1 < len(starts) else len(lines)
        # the next block's comment belongs to it
        while e > s + 1 and lines[e-1].startswith('--'):
            e -= 1
        out.append((b, s, e))
    res = []
    for b, s, e in out:
        head = lines[s]
        m = re.match(r'^CREATE (?:OR REPLACE )?(FUNCTION|VIEW) @extschema@\.(\w+)', head)
        if not m:
            res.append((None, None, None)); continue
        body = re.sub(r'^CREATE OR REPLACE ', 'CREATE ', '\n'.join(lines[s:e]).rstrip() + '\n')
        full = '\n'.join(lines[b:e]).rstrip() + '\n'
        if m.group(1) == 'FUNCTION':
            rest = '\n'.join(lines[s:e])
            i = rest.index('('); depth = 0
            for j in range(i, len(rest)):
                if rest[j] == '(': depth += 1
                elif rest[j] == ')':
                    depth -= 1
                    if depth == 0: break
            key = ('F', m.group(2), re.sub(r'\s+', ' ', rest[i:j+1]))
        else:
            key = ('V', m.group(2))
        res.append((key, body, full))
    return [r for r in res if r[0]]
old = {k: b for k, b, f in blocks(f'{repo}/sql/deploy_progress--1.0.sql')}
new = blocks(f'{repo}/sql/deploy_progress--1.1.sql')
delta_path = f'{repo}/sql/deploy_progress--1.0--1.1.sql'
d = open(delta_path).read()
i = d.index(MARK)
i = d.index('\n', d.index('\n', i) + 1) + 1   # keep the marker line and the separator after it
parts = [d[:i]]
manual = re.findall(r'^CREATE OR REPLACE (?:FUNCTION|VIEW) @extschema@\.(\w+)', d[:i], re.M)
changed = []
for k, b, f in new:
    if old.get(k) != b and k[1] not in manual:
        parts.append('\n' + f)
        changed.append(k[1])
open(delta_path, 'w').write(''.join(parts))
print(len(changed), 'changed:', ' '.join(changed), file=sys.stderr)
