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
        node = h.node_get_child(node, part)
        if node is None:
            break
    if node is None:
        out.append(None)
        continue
    v = h.node_get_value(node, value)
    if v is None:
        out.append(None)
        continue
    typ, data = h.value_value(v)
    out.append({"type": typ, "hex": data.hex()})
json.dump(out, sys.stdout)
