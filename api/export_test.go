package api

// WaitingReads returns how many requests wait for a shared read that has
// not started yet (tests of the coalescing).
func WaitingReads(s *Server) int {
	if s.reads == nil {
		return 0
	}
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	n := 0
	for _, k := range s.reads.keys {
		if k.pending != nil {
			n += 1 + k.pending.joined
		}
	}
	return n
}
