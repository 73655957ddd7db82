package bootfix

// timeZoneKey holds RealTimeIsUniversal, relative to a control set.
const timeZoneKey = `Control\TimeZoneInformation`

// RTCIsUTC reports whether the install keeps the hardware clock in UTC
// (TimeZoneInformation\RealTimeIsUniversal is a non-zero DWORD or QWORD in
// the current control set). Windows keeps local time otherwise, so a VM's
// clock must start in local time for it.
func RTCIsUTC(h Hive) (bool, error) {
	cs, err := BootControlSet(h, false)
	if err != nil {
		return false, err
	}
	v, ok, err := h.Value(join(cs.Name, timeZoneKey), "RealTimeIsUniversal")
	if err != nil || !ok {
		return false, err
	}
	for _, b := range v.Data {
		if b != 0 {
			return true, nil
		}
	}
	return false, nil
}
