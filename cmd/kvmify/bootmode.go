package main

import (
	"errors"
	"fmt"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/launch"
	parttable "github.com/kvmify/kvmify/partition"
)

// bootMode reads d's partition table and says which firmware boots it.
func bootMode(d disk.Reader) (launch.BootMode, error) {
	tab, err := parttable.Read(d, d.Size())
	switch {
	case errors.Is(err, parttable.ErrNoTable):
		tab = &parttable.Table{Scheme: parttable.SchemeNone}
	case err != nil:
		return launch.BootMode{}, fmt.Errorf("reading the partition table: %w", err)
	}
	return launch.DetectBootMode(tab), nil
}
