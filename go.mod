module github.com/kvmify/kvmify

go 1.26.8

require github.com/spf13/cobra v1.9.1

require (
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/schollz/progressbar/v3 v3.17.1
	github.com/spf13/pflag v1.0.6
	golang.org/x/sys v0.28.0
	golang.org/x/term v0.26.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
)
