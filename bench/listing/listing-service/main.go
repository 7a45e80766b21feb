// Command listing-service is a synthetic Azure Blob service for the listing
// benchmark (bench/bench_listing.py): it answers List Blobs for containers of
// up to millions of generated blobs, sleeping a set delay before each page, so
// that an importer's listing can be timed against a service whose per-page
// latency is chosen (a real account's is 100 ms to seconds on huge containers).
//
// Standard library only; low CPU: the names are generated once per container
// and kept sorted in memory, a page is rendered straight into the response.
//
// Containers are named after what they hold: "hier-N" (N blobs dNNNNN/fNNNNN,
// 1000 per prefix) or "flat-N" (N blobs named by 32 hex digits of SHA-256(i),
// sorted). Authentication is ignored. Control endpoints (no importer asks for
// them): GET /_bench/stats (JSON request counts), POST /_bench/reset?delay_ms=D
// (zero the counts, set the delay per List Blobs page).
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const maxResults = 5000 // Azure's default and maximum page size

// epoch is the generated blobs' creation time: a fixed date, so pages are
// the same from run to run.
var epoch = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

type container struct {
	names []string // sorted by code point (Go's byte order on UTF-8)
	index map[string]int32
}

type service struct {
	mu         sync.Mutex
	containers map[string]*container
	delay      atomic.Int64 // nanoseconds before each List Blobs answer
	lists      atomic.Int64 // List Blobs requests (pages) answered
	others     atomic.Int64 // every other request
	inFlight   atomic.Int64
	maxFlight  atomic.Int64 // most List Blobs requests served at once
	logging    bool
}

func (s *service) container(name string) *container {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.containers[name]; ok {
		return c
	}
	kind, count, ok := strings.Cut(name, "-")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 0 || n > 10_000_000 || (kind != "hier" && kind != "flat") {
		return nil
	}
	names := make([]string, n)
	for i := range names {
		if kind == "hier" {
			names[i] = fmt.Sprintf("d%05d/f%05d", i/1000, i%1000)
		} else {
			sum := sha256.Sum256([]byte(strconv.Itoa(i)))
			names[i] = hex.EncodeToString(sum[:16])
		}
	}
	c := &container{names: names, index: make(map[string]int32, n)}
	for i, name := range names { // the rank in generation, before sorting
		c.index[name] = int32(i)
	}
	sort.Strings(names)
	s.containers[name] = c
	return c
}

// The properties of blob i are derived from i alone: the same on every page.
func etag(i int) string { return fmt.Sprintf("0x8DC%013X", 0x1234567890+i) }
func size(i int) int    { return 16 + i%4096 }
func modified(i int) string {
	return epoch.Add(time.Duration(i) * time.Second).Format(http.TimeFormat)
}
func md5b64(i int) string {
	sum := sha256.Sum256([]byte("md5:" + strconv.Itoa(i)))
	return base64.StdEncoding.EncodeToString(sum[:16])
}

// Markers are opaque to clients, as Azure's are: "2!" + base64 of the next name.
func marker(name string) string {
	return "2!" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func unmarker(m string) (string, bool) {
	rest, ok := strings.CutPrefix(m, "2!")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	return string(b), err == nil
}

func xmlText(w *bufio.Writer, s string) {
	for _, r := range s {
		switch r {
		case '<':
			w.WriteString("&lt;")
		case '>':
			w.WriteString("&gt;")
		case '&':
			w.WriteString("&amp;")
		case '"':
			w.WriteString("&quot;")
		case '\'':
			w.WriteString("&apos;")
		default:
			w.WriteRune(r)
		}
	}
}

func element(w *bufio.Writer, tag, value string) {
	if value == "" {
		fmt.Fprintf(w, "<%s />", tag)
		return
	}
	fmt.Fprintf(w, "<%s>", tag)
	xmlText(w, value)
	fmt.Fprintf(w, "</%s>", tag)
}

func headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("x-ms-request-id", fmt.Sprintf("%08x-0000-0000-0000-000000000000", time.Now().UnixNano()&0xffffffff))
	h.Set("x-ms-version", "2025-11-05")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0")
}

func fail(w http.ResponseWriter, status int, code, message string) {
	headers(w)
	w.Header().Set("x-ms-error-code", code)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, message)
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.logging {
		log.Printf("%s %s", r.Method, r.URL.RequestURI())
	}
	if strings.HasPrefix(r.URL.Path, "/_bench/") {
		s.control(w, r)
		return
	}
	q := r.URL.Query()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 2 && q.Get("restype") == "container" && q.Get("comp") == "list" && r.Method == http.MethodGet {
		s.lists.Add(1)
		s.list(w, r, parts[0], parts[1])
		return
	}
	s.others.Add(1)
	if len(parts) == 2 && q.Get("restype") == "container" && q.Get("comp") == "" &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if s.container(parts[1]) == nil {
			fail(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
			return
		}
		headers(w)
		h := w.Header()
		h.Set("Last-Modified", epoch.Format(http.TimeFormat))
		h.Set("ETag", "\"0x8DC0000000000AA\"")
		h.Set("x-ms-lease-status", "unlocked")
		h.Set("x-ms-lease-state", "available")
		h.Set("x-ms-has-immutability-policy", "false")
		h.Set("x-ms-has-legal-hold", "false")
		h.Set("x-ms-default-encryption-scope", "$account-encryption-key")
		h.Set("x-ms-deny-encryption-scope-override", "false")
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	fail(w, http.StatusNotImplemented, "NotImplemented", "The synthetic listing service only lists blobs.")
}

func (s *service) control(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_bench/stats":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int64{
			"list": s.lists.Load(), "other": s.others.Load(), "max_in_flight": s.maxFlight.Load()})
	case "/_bench/reset":
		if d := r.URL.Query().Get("delay_ms"); d != "" {
			ms, err := strconv.ParseFloat(d, 64)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.delay.Store(int64(ms * float64(time.Millisecond)))
		}
		if name := r.URL.Query().Get("prepare"); name != "" && s.container(name) == nil {
			http.Error(w, "bad container name", http.StatusBadRequest)
			return
		}
		s.lists.Store(0)
		s.others.Store(0)
		s.maxFlight.Store(0)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (s *service) list(w http.ResponseWriter, r *http.Request, account, name string) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxFlight.Load()
		if n <= m || s.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	c := s.container(name)
	if d := s.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d)) // the service's latency for this page
	}
	if c == nil {
		fail(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
		return
	}
	q := r.URL.Query()
	prefix, delimiter := q.Get("prefix"), q.Get("delimiter")
	limit := maxResults
	if v := q.Get("maxresults"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 1 {
			fail(w, http.StatusBadRequest, "OutOfRangeQueryParameterValue", "maxresults is out of range.")
			return
		}
		limit = min(m, maxResults)
	}
	includeMetadata := false
	for _, inc := range strings.Split(q.Get("include"), ",") {
		includeMetadata = includeMetadata || inc == "metadata"
	}
	// The first name listed: the largest of prefix, startFrom (inclusive) and the marker's name.
	from := prefix
	if sf := q.Get("startFrom"); sf > from {
		from = sf
	}
	if mk := q.Get("marker"); mk != "" {
		after, ok := unmarker(mk)
		if !ok {
			fail(w, http.StatusBadRequest, "OutOfRangeInput", "The marker is not valid.")
			return
		}
		if after > from {
			from = after
		}
	}
	i := sort.SearchStrings(c.names, from)

	headers(w)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	out := bufio.NewWriterSize(w, 256<<10)
	defer out.Flush()
	fmt.Fprintf(out, "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://%s/%s\" ContainerName=\"", r.Host, account)
	xmlText(out, name)
	out.WriteString("\">")
	if prefix != "" {
		element(out, "Prefix", prefix)
	}
	element(out, "Marker", q.Get("marker"))
	if q.Get("maxresults") != "" {
		fmt.Fprintf(out, "<MaxResults>%d</MaxResults>", limit)
	}
	if delimiter != "" {
		element(out, "Delimiter", delimiter)
	}
	out.WriteString("<Blobs>")
	emitted := 0
	for i < len(c.names) && emitted < limit {
		blob := c.names[i]
		if !strings.HasPrefix(blob, prefix) {
			i = len(c.names)
			break
		}
		if delimiter != "" {
			if k := strings.Index(blob[len(prefix):], delimiter); k >= 0 {
				sub := blob[:len(prefix)+k+len(delimiter)]
				out.WriteString("<BlobPrefix>")
				element(out, "Name", sub)
				out.WriteString("</BlobPrefix>")
				emitted++
				// Skip the names under sub: they are contiguous in order.
				i += sort.Search(len(c.names)-i, func(j int) bool {
					return !strings.HasPrefix(c.names[i+j], sub)
				})
				continue
			}
		}
		s.blob(out, c, i, includeMetadata)
		emitted++
		i++
	}
	out.WriteString("</Blobs>")
	if i < len(c.names) && strings.HasPrefix(c.names[i], prefix) {
		element(out, "NextMarker", marker(c.names[i]))
	} else {
		out.WriteString("<NextMarker />")
	}
	out.WriteString("</EnumerationResults>")
}

func (s *service) blob(out *bufio.Writer, c *container, i int, metadata bool) {
	// The generated properties follow the blob's rank in generation, not in order.
	g := int(c.index[c.names[i]])
	out.WriteString("<Blob>")
	element(out, "Name", c.names[i])
	out.WriteString("<Properties>")
	element(out, "Creation-Time", modified(g))
	element(out, "Last-Modified", modified(g))
	element(out, "Etag", etag(g))
	element(out, "Content-Length", strconv.Itoa(size(g)))
	element(out, "Content-Type", "application/octet-stream")
	element(out, "Content-Encoding", "")
	element(out, "Content-Language", "")
	element(out, "Content-CRC64", "")
	element(out, "Content-MD5", md5b64(g))
	element(out, "Cache-Control", "")
	element(out, "Content-Disposition", "")
	element(out, "BlobType", "BlockBlob")
	element(out, "AccessTier", "Hot")
	element(out, "AccessTierInferred", "true")
	element(out, "LeaseStatus", "unlocked")
	element(out, "LeaseState", "available")
	element(out, "ServerEncrypted", "true")
	out.WriteString("</Properties>")
	if metadata {
		out.WriteString("<Metadata />")
	}
	out.WriteString("</Blob>")
}

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	logging := flag.Bool("log", false, "log every request (method and URL) to stderr")
	delay := flag.Duration("delay", 0, "delay before each List Blobs answer")
	flag.Parse()
	s := &service{containers: map[string]*container{}, logging: *logging}
	s.delay.Store(int64(*delay))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The bench reads the port from the first line of stdout.
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, s))
}
