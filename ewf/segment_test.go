package ewf

import "testing"

func TestSegmentName(t *testing.T) {
	for _, tc := range []struct {
		first string
		n     int
		want  string
	}{
		{"x/img.E01", 1, "x/img.E01"},
		{"x/img.E01", 2, "x/img.E02"},
		{"x/img.E01", 99, "x/img.E99"},
		{"x/img.E01", 100, "x/img.EAA"},
		{"x/img.E01", 101, "x/img.EAB"},
		{"x/img.E01", 126, "x/img.EBA"},
		{"x/img.E01", 775, "x/img.EZZ"},
		{"x/img.E01", 776, "x/img.FAA"},
		{"x/img.e01", 100, "x/img.eaa"},
		{"x/img.s01", 3, "x/img.s03"},
		{"x/img.E01", 100 + 22*676, ""}, // past .ZZZ
		{"x/img", 2, ""},
	} {
		if got := segmentName(tc.first, tc.n); got != tc.want {
			t.Errorf("segmentName(%q, %d) = %q, want %q", tc.first, tc.n, got, tc.want)
		}
	}
}
