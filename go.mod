module github.com/kvmify/kvmify

go 1.26.8

require github.com/spf13/cobra v1.9.1

require (
	github.com/hanwen/go-fuse/v2 v2.12.1 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.6 // indirect
	golang.org/x/sys v0.28.0 // indirect
)
