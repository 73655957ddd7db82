package xpdrivers

// Test helpers for the external test package (xpdrivers_test), which may
// import package windows: windows calls xpdrivers, so only an external
// test can use it.
var (
	GcabForTest          = gcab
	DriverImageForTest   = drv
	CabextractSumForTest = cabextractSum
	FillerForTest        = filler
)

const XPIndexForTest = xpIndex
