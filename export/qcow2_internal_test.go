package export

import "testing"

// TestRefcountLayout checks the refcount layout around the sizes where one
// more block or table cluster is needed: every cluster, the refcount
// clusters included, is covered, and by no more clusters than needed.
func TestRefcountLayout(t *testing.T) {
	const perTable = clusterSize / 8
	var sizes []int64
	for _, edge := range []int64{1, refcountsPerBlock, 2 * refcountsPerBlock, perTable * refcountsPerBlock} {
		for d := int64(-3); d <= 3; d++ {
			if edge+d > 0 {
				sizes = append(sizes, edge+d)
			}
		}
	}
	for _, used := range sizes {
		blocks, tables := refcountLayout(used)
		total := used + blocks + tables
		if blocks*refcountsPerBlock < total || tables*perTable < blocks {
			t.Errorf("used %d: %d blocks and %d table clusters do not cover %d clusters", used, blocks, tables, total)
		}
		if (blocks-1)*refcountsPerBlock >= total || (tables-1)*perTable >= blocks {
			t.Errorf("used %d: %d blocks and %d table clusters are more than %d clusters need", used, blocks, tables, total)
		}
	}
}
