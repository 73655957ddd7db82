package ewf

import (
	"container/list"
	"sync"
)

// chunkCache keeps recently used decompressed chunks up to a byte budget,
// evicting the least recently used. A chunk missing from it is read by the
// first caller that asks while later callers for the same chunk wait for
// that one read; callers for other chunks read and inflate in parallel, as
// the lock is never held during a read. Errors are not kept: the next read
// of a bad chunk tries again and fails again. Data shared with the twin
// table costs the budget only sharedCost bytes, as it is held there anyway;
// the entries stay bounded by the number of chunks.
type chunkCache struct {
	mu       sync.Mutex
	budget   int64
	used     int64
	lru      *list.List // of *cacheEntry, most recent first
	entries  map[int64]*list.Element
	inflight map[int64]*pendingRead
}

// sharedCost is what an entry whose data is shared is charged.
const sharedCost = 64

type cacheEntry struct {
	chunk int64
	data  []byte
	cost  int64
}

type pendingRead struct {
	done chan struct{}
	data []byte
	err  error
}

func newChunkCache(budget int64) *chunkCache {
	return &chunkCache{budget: budget, lru: list.New(), entries: map[int64]*list.Element{}, inflight: map[int64]*pendingRead{}}
}

// get returns chunk ci's data from the cache or from read.
func (c *chunkCache) get(ci int64, read func(int64) ([]byte, bool, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[ci]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if p, ok := c.inflight[ci]; ok {
		c.mu.Unlock()
		<-p.done
		return p.data, p.err
	}
	p := &pendingRead{done: make(chan struct{})}
	c.inflight[ci] = p
	c.mu.Unlock()

	var shared bool
	p.data, shared, p.err = read(ci)

	c.mu.Lock()
	delete(c.inflight, ci)
	if p.err == nil {
		c.addLocked(ci, p.data, shared)
	}
	c.mu.Unlock()
	close(p.done)
	return p.data, p.err
}

// lookup returns chunk ci's data if the cache holds it.
func (c *chunkCache) lookup(ci int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[ci]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

// add keeps chunk ci's data, read by a caller outside get.
func (c *chunkCache) add(ci int64, data []byte, shared bool) {
	c.mu.Lock()
	c.addLocked(ci, data, shared)
	c.mu.Unlock()
}

func (c *chunkCache) addLocked(ci int64, data []byte, shared bool) {
	cost := int64(len(data))
	if shared {
		cost = sharedCost
	}
	if _, ok := c.entries[ci]; ok || cost > c.budget {
		return
	}
	c.entries[ci] = c.lru.PushFront(&cacheEntry{chunk: ci, data: data, cost: cost})
	c.used += cost
	for c.used > c.budget {
		old := c.lru.Back()
		ent := old.Value.(*cacheEntry)
		c.lru.Remove(old)
		delete(c.entries, ent.chunk)
		c.used -= ent.cost
	}
}
