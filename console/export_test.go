package console

// BulkForwards counts the forwards this process carried on bulk
// connections.
func BulkForwards() int64 { return bulkForwards.Load() }
