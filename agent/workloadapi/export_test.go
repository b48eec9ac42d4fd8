package workloadapi

// OpenStreams reports how many streams s is serving.
func OpenStreams(s *Server) int64 { return s.streams.Load() }
