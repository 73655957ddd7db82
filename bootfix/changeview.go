package bootfix

import "strings"

// changedHive is a Hive as it reads after a list of changes: the prediction
// of a planned fix, without editing any bytes.
type changedHive struct {
	base    Hive
	changes []Change
}

// WithChanges returns a view of h with the changes applied in order (a set
// creates the key and its parents; a delete removes the value).
func WithChanges(h Hive, changes []Change) Hive { return changedHive{base: h, changes: changes} }

func (c changedHive) Subkeys(path string) ([]string, bool, error) {
	names, ok, err := c.base.Subkeys(path)
	if err != nil {
		return nil, false, err
	}
	lp := strings.ToLower(path)
	for _, ch := range c.changes {
		if ch.Op != OpSet {
			continue
		}
		lk := strings.ToLower(ch.Key)
		switch {
		case lk == lp:
			ok = true
		case lp == "" || strings.HasPrefix(lk, lp+`\`):
			ok = true
			rest := ch.Key[len(path):]
			if lp != "" {
				rest = rest[1:]
			}
			child, _, _ := strings.Cut(rest, `\`)
			if !containsFold(names, child) {
				names = append(names, child)
			}
		}
	}
	return names, ok, nil
}

func (c changedHive) Values(path string) ([]string, bool, error) {
	names, ok, err := c.base.Values(path)
	if err != nil {
		return nil, false, err
	}
	if _, kok, err := c.Subkeys(path); err != nil {
		return nil, false, err
	} else if kok {
		ok = true
	}
	for _, ch := range c.changes {
		if !strings.EqualFold(ch.Key, path) {
			continue
		}
		switch ch.Op {
		case OpSet:
			if !containsFold(names, ch.Value) {
				names = append(names, ch.Value)
			}
		case OpDelete:
			for i, n := range names {
				if strings.EqualFold(n, ch.Value) {
					names = append(names[:i:i], names[i+1:]...)
					break
				}
			}
		}
	}
	return names, ok, nil
}

func (c changedHive) Value(path, name string) (Value, bool, error) {
	for i := len(c.changes) - 1; i >= 0; i-- {
		ch := c.changes[i]
		if strings.EqualFold(ch.Key, path) && strings.EqualFold(ch.Value, name) {
			if ch.Op == OpDelete {
				return Value{}, false, nil
			}
			return *ch.New, true, nil
		}
	}
	return c.base.Value(path, name)
}
