package relay

import (
	"bufio"
	"errors"
	"framesync/crdt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the hub's Prometheus metrics, in a registry of its own so
// that many hubs can run in one process (tests).
type metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.HistogramVec
	commits          *prometheus.CounterVec
	blobBytesIn      prometheus.Counter
	blobBytesOut     prometheus.Counter
	wsConns          prometheus.Gauge
	wsIn, wsOut      prometheus.Counter
	wsDropped        prometheus.Counter
	presenterRefused prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "framesync_http_request_seconds", Help: "HTTP request durations by route and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		commits:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "framesync_commits_total", Help: "Accepted commits by operation."}, []string{"op"}),
		blobBytesIn:      prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_blob_bytes_in_total", Help: "Blob bytes stored."}),
		blobBytesOut:     prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_blob_bytes_out_total", Help: "Blob and frame bytes served."}),
		wsConns:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "framesync_ws_connections", Help: "Open control channel connections."}),
		wsIn:             prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_ws_messages_in_total", Help: "Control messages received."}),
		wsOut:            prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_ws_messages_out_total", Help: "Control messages sent."}),
		wsDropped:        prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_ws_slow_clients_dropped_total", Help: "Connections dropped because their send queue overflowed."}),
		presenterRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "framesync_presenter_frames_refused_total", Help: "Frame messages ignored because the sender is not the presenter."}),
	}
	m.reg.MustRegister(m.requests, m.commits, m.blobBytesIn, m.blobBytesOut, m.wsConns, m.wsIn, m.wsOut, m.wsDropped, m.presenterRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// Automerge's documents live in the C heap, which the Go
		// collector's metrics do not see.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "framesync_c_heap_bytes", Help: "C heap in use (Automerge documents and results)."}, func() float64 { return float64(crdt.CHeapInUse()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "framesync_c_heap_collections_total", Help: "Garbage collections started because the C heap grew."}, func() float64 { return float64(crdt.CHeapCollections()) }))
	return m
}

// instrument serves next, recording the duration and status of every
// request by its route pattern in mux.
func (m *metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "/api/ws" || pattern == "GET /api/ws" {
			next.ServeHTTP(w, r) // long-lived; counted by framesync_ws_connections
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		if pattern == "/" {
			pattern = "unmatched"
		}
		m.requests.WithLabelValues(pattern, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}
