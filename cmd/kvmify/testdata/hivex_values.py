#!/usr/bin/python3
# Reads registry values with the hivex module (libhivex), the independent
# oracle for kvmify's registry engine.
# Usage: hivex_values.py HIVE  < JSON [[key, value], ...]
# Prints JSON: one entry per request, null when the key or value is missing,
# else {"type": N, "hex": "..."} of the raw value bytes.
import json, sys
import hivex

h = hivex.Hivex(sys.argv[1])
out = []
for key, value in json.load(sys.stdin):
    node = h.root()
    for part in [p for p in key.split("\\") if p]:
        try:
            node = h.node_get_child(node, part)
        except RuntimeError:
            node = None
        if node is None:
            break
    if node is None:
        out.append(None)
        continue
    # node_get_value raises for a missing value; look through the list.
    found = None
    for v in h.node_values(node):
        if h.value_key(v).lower() == value.lower():
            found = v
            break
    if found is None:
        out.append(None)
        continue
    typ, data = h.value_value(found)
    out.append({"type": typ, "hex": data.hex()})
json.dump(out, sys.stdout)
