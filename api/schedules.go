package api

import (
	"context"
	"net/http"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// ScheduleSource lists the flow schedules a server runs (Config.Schedules):
// `pyoco server` passes its *schedule.Runner.
type ScheduleSource interface {
	// ScheduleList returns every schedule with its stored state, by flow
	// then in file order.
	ScheduleList(ctx context.Context) ([]engine.ScheduleInfo, error)
}

// ScheduleDoc is the JSON shape of one schedule in GET /schedules.
type ScheduleDoc struct {
	Flow string `json:"flow"`
	Name string `json:"name"`
	// Spec is the cron expression, or "every <duration>".
	Spec string `json:"spec"`
	// Timezone is the cron expression's IANA zone ("UTC" by default), null
	// for every: schedules.
	Timezone *string        `json:"timezone"`
	Catchup  engine.Catchup `json:"catchup"`
	// Tag is the tag of the runs it starts (GET /runs?tag=…).
	Tag          string           `json:"tag"`
	NextFireTime apidoc.Timestamp `json:"next_fire_time"`
	LastTickTime apidoc.Timestamp `json:"last_tick_time"`
	LastRunID    *string          `json:"last_run_id"`
	LastRunTime  apidoc.Timestamp `json:"last_run_time"`
}

// NewScheduleDoc builds the document of s.
func NewScheduleDoc(s engine.ScheduleInfo) ScheduleDoc {
	d := ScheduleDoc{Flow: s.Flow, Name: s.Name, Spec: s.Spec, Catchup: s.Catchup, Tag: s.Tag,
		NextFireTime: apidoc.Timestamp(s.NextFireTime), LastTickTime: apidoc.Timestamp(s.LastTickTime),
		LastRunTime: apidoc.Timestamp(s.LastRunTime)}
	if s.Timezone != "" {
		tz := s.Timezone
		d.Timezone = &tz
	}
	if s.LastRunID != "" {
		id := s.LastRunID
		d.LastRunID = &id
	}
	return d
}

// scheduleList answers GET /schedules: the schedules this server runs
// (an empty list without any).
func (s *Server) scheduleList(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	docs := []ScheduleDoc{}
	if s.cfg.Schedules != nil {
		list, err := s.cfg.Schedules.ScheduleList(r.Context())
		if err != nil {
			return err
		}
		for _, si := range list {
			docs = append(docs, NewScheduleDoc(si))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": docs})
	return nil
}
