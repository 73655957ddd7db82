package bootfix

import "strings"

// cachedHive memoises a Hive's answers for the length of one computation:
// ComputeChanges predicts each control set several times (before, while
// repairing links, after), and package registry finds a key by listing
// every subkey on its path, so the same lookups would otherwise be repeated
// (the large CriticalDeviceDatabase and Services keys above all).
type cachedHive struct {
	h      Hive
	subs   map[string]cachedNames
	vals   map[string]cachedNames
	values map[string]cachedValue
}

type cachedNames struct {
	names []string
	ok    bool
}

type cachedValue struct {
	v  Value
	ok bool
}

func newCachedHive(h Hive) *cachedHive {
	return &cachedHive{h: h, subs: map[string]cachedNames{}, vals: map[string]cachedNames{}, values: map[string]cachedValue{}}
}

func (c *cachedHive) Subkeys(path string) ([]string, bool, error) {
	k := strings.ToLower(path)
	if e, hit := c.subs[k]; hit {
		return e.names, e.ok, nil
	}
	names, ok, err := c.h.Subkeys(path)
	if err != nil {
		return nil, false, err
	}
	c.subs[k] = cachedNames{names, ok}
	return names, ok, nil
}

func (c *cachedHive) Values(path string) ([]string, bool, error) {
	k := strings.ToLower(path)
	if e, hit := c.vals[k]; hit {
		return e.names, e.ok, nil
	}
	names, ok, err := c.h.Values(path)
	if err != nil {
		return nil, false, err
	}
	c.vals[k] = cachedNames{names, ok}
	return names, ok, nil
}

func (c *cachedHive) Value(path, name string) (Value, bool, error) {
	k := strings.ToLower(path) + "\x00" + strings.ToLower(name)
	if e, hit := c.values[k]; hit {
		return e.v, e.ok, nil
	}
	v, ok, err := c.h.Value(path, name)
	if err != nil {
		return Value{}, false, err
	}
	c.values[k] = cachedValue{v, ok}
	return v, ok, nil
}
