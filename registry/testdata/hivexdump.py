# Dumps every key and value of a hive as JSON lines using the hivex Python
# module, as an independent oracle for kvmify's registry package.
import hivex, json, sys

h = hivex.Hivex(sys.argv[1])
out = sys.stdout
def walk(node, path):
    out.write(json.dumps({"k": path}) + "\n")
    for v in h.node_values(node):
        t, data = h.value_value(v)
        out.write(json.dumps({"k": path, "v": h.value_key(v), "t": t, "d": data.hex()}) + "\n")
    for c in h.node_children(node):
        name = h.node_name(c)
        walk(c, name if path == "" else path + "\\" + name)
sys.setrecursionlimit(10000)
walk(h.root(), "")
