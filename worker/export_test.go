package worker

import "github.com/pyoco/pyoco/engine"

// SetBeforeExecute makes w's slots call f with each run's lease right before
// they execute it (set it before Start).
func SetBeforeExecute(w *Worker, f func(*engine.Lease)) { w.beforeExecute = f }
