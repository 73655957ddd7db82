// Package bootfix decides whether a Windows SYSTEM hive lets Windows find a
// boot-start storage driver for one of QEMU's disk controllers, and which
// registry changes would make it do so.
//
// It works on a read-only view of the hive (Hive) plus facts about the
// install that live outside the hive (version, which driver files exist), so
// it needs no disk and never writes: the changes it computes are applied by
// the caller with the registry editor.
//
// The model follows how Windows binds a boot device. The PCI bus driver
// reports the controller's hardware IDs (most specific first) and compatible
// IDs. Windows XP/2003 and Vista/7 look each ID up in
// ControlSetNNN\Control\CriticalDeviceDatabase (with `\` written as `#`) and
// take its Service; Windows 8 and later look it up in the DriverDatabase
// (DeviceIds → inf → active package → descriptor → configuration → Service).
// The service must be boot-start (Start 0, and on 8+ no StartOverride that
// says otherwise) and its driver file must exist. The child devices (IDE
// channels, the disk itself) go through the same lookup.
package bootfix
