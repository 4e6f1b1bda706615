package redisstore

// SetListBudget changes how many index members one list.lua call of s
// examines, so tests can make RunList take several calls.
func SetListBudget(s *Store, n int) { s.listBudget = n }
