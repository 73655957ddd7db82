# Applies bootfix changes (JSON on stdin) to a hive file with python3-hivex,
# an implementation independent of kvmify's registry editor, then reads every
# changed value back from a fresh handle and prints it as JSON. With
# --read-only as the second argument it only reads the values back (to check
# a hive someone else patched).
import hivex, json, sys

path = sys.argv[1]
changes = json.load(sys.stdin)

def child(h, node, name, create):
    c = h.node_get_child(node, name)
    if c is None and create:
        c = h.node_add_child(node, name)
    return c

def nav(h, key, create):
    n = h.root()
    for part in [p for p in key.split("\\") if p]:
        n = child(h, n, part, create)
        if n is None:
            return None
    return n

read_only = len(sys.argv) > 2 and sys.argv[2] == "--read-only"
h = hivex.Hivex(path, write=not read_only)
for c in ([] if read_only else changes):
    node = nav(h, c["key"], c["op"] == "set")
    vals = []
    for v in h.node_values(node):
        name = h.value_key(v)
        if name.lower() == c["value"].lower():
            continue
        t, d = h.value_value(v)
        vals.append({"key": name, "t": t, "value": d})
    if c["op"] == "set":
        vals.append({"key": c["value"], "t": c["type"], "value": bytes.fromhex(c["data"])})
    h.node_set_values(node, vals)
if not read_only:
    h.commit(None)

h = hivex.Hivex(path)
out = []
for c in changes:
    node = nav(h, c["key"], False)
    got = None
    if node is not None:
        for v in h.node_values(node):
            if h.value_key(v).lower() == c["value"].lower():
                t, d = h.value_value(v)
                got = {"type": t, "data": d.hex()}
    out.append(got)
json.dump(out, sys.stdout)
