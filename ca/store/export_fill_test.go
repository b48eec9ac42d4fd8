package store

import "go.etcd.io/bbolt"

// BucketFill is how full the leaf pages of a top-level bucket are (bytes
// in use over bytes allocated) and how many leaf pages it has.
func (b *Bolt) BucketFill(name string) (fill float64, pages int, err error) {
	err = b.db.View(func(tx *bbolt.Tx) error {
		s := tx.Bucket([]byte(name)).Stats()
		if s.LeafAlloc > 0 {
			fill = float64(s.LeafInuse) / float64(s.LeafAlloc)
		}
		pages = s.LeafPageN + s.LeafOverflowN
		return nil
	})
	return fill, pages, err
}
