package ewf

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// maxRunBytes bounds one read of consecutive stored chunks.
const maxRunBytes = 8 << 20

// parallelMin is the fewest chunks of one run worth inflating on several
// goroutines.
const parallelMin = 4

// fill reads media bytes [off, off+len(p)), all within Size. A request
// inside one chunk goes through the cache, one reader per chunk. A larger
// one takes what the cache holds (if useCache) and reads each run of
// missing chunks that lie back to back in a segment file with one pread,
// checking and inflating them on all CPUs: a sequential reader such as dd
// or nbdcopy then costs one system call per run, not per chunk.
func (im *Image) fill(p []byte, off int64, useCache bool) error {
	if len(p) == 0 {
		return nil
	}
	first, last := off/im.chunk, (off+int64(len(p))-1)/im.chunk
	put := func(ci int64, data []byte) {
		lo := max(off, ci*im.chunk)
		hi := min(off+int64(len(p)), ci*im.chunk+int64(len(data)))
		copy(p[lo-off:hi-off], data[lo-ci*im.chunk:])
	}
	if first == last && useCache {
		loc, err := im.locate(first)
		if err != nil {
			return err
		}
		if !loc.compressed {
			// Plain chunks are not cached: once checked, the bytes asked
			// for are one small pread from the page cache.
			return im.readPlainPart(first, loc, p, off)
		}
		data, err := im.cache.get(first, im.readChunk)
		if err != nil {
			return err
		}
		put(first, data)
		return nil
	}
	var run []int64
	var locs []chunkLoc
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := im.readRun(run, locs, func(ci int64, data []byte, compressed, shared bool) {
			put(ci, data)
			// A chunk read whole is not kept: a sequential reader will not
			// ask again. An inflated chunk read in part is, as its rest is
			// likely next; a plain one need not be (see readPlainPart).
			if useCache && compressed && (ci*im.chunk < off || ci*im.chunk+int64(len(data)) > off+int64(len(p))) {
				im.cache.add(ci, data, shared)
			}
		})
		run, locs = run[:0], locs[:0]
		return err
	}
	var runBytes int64
	for ci := first; ci <= last; ci++ {
		if useCache {
			if data, ok := im.cache.lookup(ci); ok {
				put(ci, data)
				if err := flush(); err != nil {
					return err
				}
				continue
			}
		}
		loc, err := im.locate(ci)
		if err != nil {
			return err
		}
		if n := len(locs); n > 0 {
			prev := locs[n-1]
			if prev.seg != loc.seg || prev.start+prev.stored != loc.start || runBytes+loc.stored > maxRunBytes {
				if err := flush(); err != nil {
					return err
				}
				runBytes = 0
			}
		}
		run, locs = append(run, ci), append(locs, loc)
		runBytes += loc.stored
	}
	return flush()
}

// readRun reads chunks stored back to back with one pread and hands each
// decoded chunk to done, in any order; a plain chunk's data is valid only
// until done returns, a shared one must not be modified.
func (im *Image) readRun(run []int64, locs []chunkLoc, done func(ci int64, data []byte, compressed, shared bool)) error {
	seg, start := locs[0].seg, locs[0].start
	end := locs[len(locs)-1].start + locs[len(locs)-1].stored
	bp := im.runBufs.Get().(*[]byte)
	defer im.runBufs.Put(bp)
	if int64(cap(*bp)) < end-start {
		*bp = make([]byte, end-start)
	}
	buf := (*bp)[:end-start]
	if err := im.pread(seg, buf, start, run[0], run[len(run)-1]); err != nil {
		return err
	}
	decode := func(i int) error {
		l := locs[i]
		data, shared, err := im.decode(run[i], l, buf[l.start-start:l.start-start+l.stored])
		if err != nil {
			return err
		}
		done(run[i], data, l.compressed, shared)
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(run))
	if len(run) < parallelMin || workers < 2 {
		for i := range run {
			if err := decode(i); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	var mu sync.Mutex // serialises done and guards firstErr
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(run) {
					return
				}
				l := locs[i]
				data, shared, err := im.decode(run[i], l, buf[l.start-start:l.start-start+l.stored])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					done(run[i], data, l.compressed, shared)
				}
				stop := firstErr != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
