package ntfs

import "testing"

func TestSmoke(t *testing.T) {
	o := openImage(t, allImages[0])
	root, err := o.vol.OpenRecord(RecordRoot)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := o.vol.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Log(e.Record, e.Name)
	}
	st, err := o.vol.State()
	t.Logf("%+v %v", st, err)
}
