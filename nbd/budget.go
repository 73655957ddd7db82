package nbd

import (
	"math/bits"
	"sync"
)

// byteBudget is a counting semaphore on bytes that bounds the payload memory
// a connection holds; the request reader blocks in acquire, which pushes back
// on the client instead of buffering without limit.
type byteBudget struct {
	mu    sync.Mutex
	cond  sync.Cond
	avail int64
}

func (b *byteBudget) init(n int64) {
	b.avail = n
	b.cond.L = &b.mu
}

func (b *byteBudget) acquire(n int64) {
	b.mu.Lock()
	for b.avail < n {
		b.cond.Wait()
	}
	b.avail -= n
	b.mu.Unlock()
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.avail += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// bufPool hands out payload buffers in power-of-two size classes with room
// for a reply header in front, so steady-state requests allocate nothing.
type bufPool struct {
	classes [maxClass + 1]sync.Pool
}

const (
	minClass = 12 // 4 KiB
	maxClass = 25 // 32 MiB == MaxBlockSize
)

// get returns a buffer of length headroom+n; n must be at most MaxBlockSize.
func (p *bufPool) get(n int) *[]byte {
	k := minClass
	if n > 1<<minClass {
		k = bits.Len(uint(n - 1))
	}
	if v := p.classes[k].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:replyHeadroom+n]
		return b
	}
	b := make([]byte, replyHeadroom+n, replyHeadroom+1<<k)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	k := bits.Len(uint(cap(*b) - replyHeadroom - 1))
	if k < minClass || k > maxClass || cap(*b)-replyHeadroom != 1<<k {
		return
	}
	p.classes[k].Put(b)
}
