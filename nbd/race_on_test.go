//go:build race

package nbd

// raceEnabled: the race detector multiplies memory use, so RSS bounds
// cannot be checked.
const raceEnabled = true
