// Command benchserve serves one container image (qcow2, VHD, VHDX, VMDK)
// read-only over NBD on a unix socket, through kvmify's nbd package, until
// SIGTERM, with the server limits `kvmify serve` uses by default. It
// compares the container readers with qemu-nbd in
// ../shared/bench/nbd-compare.sh without the pipeline's boot-fix work; on
// exit it writes its peak RSS (VmHWM) to -rss.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/nbd"
	"github.com/kvmify/kvmify/qcow2"
	"github.com/kvmify/kvmify/vhd"
	"github.com/kvmify/kvmify/vhdx"
	"github.com/kvmify/kvmify/vmdk"
)

type image interface {
	disk.Reader
	Close() error
	Format() string
}

func open(path string) (image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	tail := make([]byte, 512)
	fi, _ := f.Stat()
	f.ReadAt(tail, fi.Size()-512)
	f.Close()
	switch {
	case qcow2.Sniff(head):
		return qcow2.Open(path)
	case vhdx.Sniff(head):
		return vhdx.Open(path)
	case vmdk.Sniff(head):
		return vmdk.Open(path)
	case vhd.Sniff(head), vhd.SniffFooter(tail):
		return vhd.Open(path)
	}
	return nil, fmt.Errorf("%s: not a qcow2, VHD, VHDX or VMDK image", path)
}

func main() {
	sock := flag.String("socket", "", "unix socket to listen on")
	rss := flag.String("rss", "", "file to write the peak RSS (VmHWM) to on exit")
	cpuprof := flag.String("cpuprofile", "", "file to write a CPU profile to")
	memprof := flag.String("memprofile", "", "file to write a heap profile to on exit")
	flag.Parse()
	if *sock == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: benchserve -socket PATH [-rss FILE] IMAGE")
		os.Exit(2)
	}
	img, err := open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := net.Listen("unix", *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Zero Limits are the nbd defaults, which are also `kvmify serve`'s
	// flag defaults (cmd/kvmify/nbdflags.go), so the peak RSS measured
	// here is what a user's server may reach.
	srv := &nbd.Server{Exports: map[string]nbd.Export{"": {Name: "", Description: img.Format(), Backend: img, ReadOnly: true}}, Limits: nbd.Limits{}}
	err = srv.Serve(ctx, l)
	img.Close()
	if *cpuprof != "" {
		pprof.StopCPUProfile()
	}
	if *memprof != "" {
		if f, e := os.Create(*memprof); e == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if *rss != "" {
		if b, e := os.ReadFile("/proc/self/status"); e == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "VmHWM:") {
					os.WriteFile(*rss, []byte(line+"\n"), 0o644)
				}
			}
		}
	}
	if err != nil && err != nbd.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
