package testutil

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"
)

// QMP is a client of a QEMU monitor socket (QEMU Machine Protocol).
type QMP struct {
	c  net.Conn
	rd *bufio.Reader
}

// DialQMP connects to the QMP unix socket at path, waiting up to timeout for
// QEMU to create it, and negotiates capabilities.
func DialQMP(t testing.TB, path string, timeout time.Duration) *QMP {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var c net.Conn
	var err error
	for {
		c, err = net.Dial("unix", path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("QMP socket %s: %v", path, err)
	}
	q := &QMP{c: c, rd: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	var greeting map[string]any
	if err := q.read(&greeting); err != nil || greeting["QMP"] == nil {
		t.Fatalf("QMP greeting: %v %v", greeting, err)
	}
	q.Run(t, "qmp_capabilities", nil, nil)
	return q
}

func (q *QMP) read(v any) error {
	q.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// Run executes a QMP command and decodes its "return" into ret (may be nil);
// asynchronous events met on the way are skipped.
func (q *QMP) Run(t testing.TB, cmd string, args any, ret any) {
	t.Helper()
	if err := q.Exec(cmd, args, ret); err != nil {
		t.Fatalf("QMP %s: %v", cmd, err)
	}
}

// Exec is Run returning the error instead of failing the test.
func (q *QMP) Exec(cmd string, args any, ret any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return err
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.read(&resp); err != nil {
			return err
		}
		if resp.Event != "" {
			continue
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %s", resp.Error.Class, resp.Error.Desc)
		}
		if ret != nil {
			return json.Unmarshal(resp.Return, ret)
		}
		return nil
	}
}

// PCIDevice is one device of QMP's query-pci answer.
type PCIDevice struct {
	Bus  int `json:"bus"`
	Slot int `json:"slot"`
	Func int `json:"function"`
	ID   struct {
		Vendor int `json:"vendor"`
		Device int `json:"device"`
	} `json:"id"`
	QdevID string `json:"qdev_id"`
	Bridge *struct {
		Devices []PCIDevice `json:"devices"`
	} `json:"pci_bridge"`
}

// PCIIDs lists every PCI device the guest has as "vvvv:dddd", bridges'
// children included.
func (q *QMP) PCIIDs(t testing.TB) []string {
	t.Helper()
	var buses []struct {
		Devices []PCIDevice `json:"devices"`
	}
	q.Run(t, "query-pci", nil, &buses)
	var out []string
	var walk func([]PCIDevice)
	walk = func(ds []PCIDevice) {
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%04x:%04x", d.ID.Vendor, d.ID.Device))
			if d.Bridge != nil {
				walk(d.Bridge.Devices)
			}
		}
	}
	for _, b := range buses {
		walk(b.Devices)
	}
	return out
}

// HMP runs a human monitor command through QMP and returns its output.
func (q *QMP) HMP(t testing.TB, line string) string {
	t.Helper()
	var out string
	q.Run(t, "human-monitor-command", map[string]any{"command-line": line}, &out)
	return out
}
