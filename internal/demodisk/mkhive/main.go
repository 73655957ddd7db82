// Command mkhive writes the demo disk's synthetic XP-style SYSTEM hive.
//
//	go run ./internal/demodisk/mkhive OUT
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/kvmify/kvmify/internal/demodisk"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkhive OUT")
		os.Exit(2)
	}
	// A fixed time makes the demo disk the same on every run.
	b, err := demodisk.SystemHive(time.Date(2008, 4, 14, 12, 0, 0, 0, time.UTC))
	if err == nil {
		err = os.WriteFile(os.Args[1], b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkhive:", err)
		os.Exit(1)
	}
}
