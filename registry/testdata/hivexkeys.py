# Reads key paths (JSON strings, one per line) on stdin and prints, for each,
# one JSON line with what the hivex Python module finds there: whether the key
# exists, its subkey names and its values (name, type, hex data). Path
# components are matched exactly, so names outside ASCII need no case folding.
import hivex, json, sys

h = hivex.Hivex(sys.argv[1])
for line in sys.stdin:
    path = json.loads(line)
    node = h.root()
    for name in [c for c in path.split("\\") if c]:
        found = None
        for c in h.node_children(node):
            if h.node_name(c) == name:
                found = c
                break
        node = found
        if node is None:
            break
    if node is None:
        print(json.dumps({"k": path, "exists": False}))
        continue
    values = []
    for v in h.node_values(node):
        t, data = h.value_value(v)
        values.append({"n": h.value_key(v), "t": t, "d": data.hex()})
    subkeys = [h.node_name(c) for c in h.node_children(node)]
    print(json.dumps({"k": path, "exists": True, "values": values, "subkeys": subkeys}))
