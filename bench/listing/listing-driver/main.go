// Command listing-driver plays plakar's side of an importer over the
// connector's stdin/stdout, as plakar does for a backup with nothing to read:
// Init, then one Import whose every record is acknowledged as it arrives (no
// Open), then Close. It prints one JSON line: the records and file records
// received, the times from the Import call to the first and the last record,
// and the Init time. The bench runs both our importer and the official Go one
// through it, so the client side costs both the same (little CPU: the records
// are counted and sent back as raw protobuf, never decoded into messages).
//
// Usage: listing-driver -config '{"location": ..., ...}' [-concurrency N] -- ARGV...
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec sends and receives messages as the bytes they are on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// pipeConn is the connector's stdout (read) and stdin (write) as one net.Conn.
type pipeConn struct {
	r io.ReadCloser
	w io.WriteCloser
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "stdio" }

func (c *pipeConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *pipeConn) Close() error {
	c.w.Close()
	return c.r.Close()
}
func (c *pipeConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

func bytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func initRequest(config map[string]string, concurrency int64) []byte {
	var options []byte
	options = protowire.AppendTag(options, 5, protowire.VarintType) // maxconcurrency
	options = protowire.AppendVarint(options, uint64(concurrency))
	msg := bytesField(nil, 1, options)
	msg = bytesField(msg, 2, []byte("azblob"))
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		entry := bytesField(bytesField(nil, 1, []byte(k)), 2, []byte(config[k]))
		msg = bytesField(msg, 3, entry)
	}
	return msg
}

// record is what the driver reads of an ImportResponse's record.
type record struct {
	raw      []byte
	finished bool
	file     bool // hasReader and not an extended attribute: a blob
	failed   bool // the record carries an error
}

// eachField calls fn with every field of the protobuf message b and its raw value.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, value []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		fn(num, typ, b[:n])
		b = b[n:]
	}
	return nil
}

func varint(b []byte) bool { v, _ := protowire.ConsumeVarint(b); return v != 0 }

func parseResponse(b []byte) (record, error) {
	var rec record
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) {
		switch {
		case num == 1 && typ == protowire.BytesType: // ImportResponse.record
			rec.raw, _ = protowire.ConsumeBytes(v)
		case num == 2 && typ == protowire.VarintType: // ImportResponse.finished
			rec.finished = varint(v)
		}
	})
	if err != nil {
		return rec, err
	}
	hasReader, isXattr := false, false
	err = eachField(rec.raw, func(num protowire.Number, typ protowire.Type, v []byte) {
		switch {
		case num == 1 && typ == protowire.VarintType: // Record.hasReader
			hasReader = varint(v)
		case num == 3 && typ == protowire.BytesType: // Record.error
			s, _ := protowire.ConsumeBytes(v)
			rec.failed = len(s) > 0
		case num == 4 && typ == protowire.VarintType: // Record.isXattr
			isXattr = varint(v)
		}
	})
	rec.file = hasReader && !isXattr
	return rec, err
}

type result struct {
	InitSeconds  float64 `json:"init_s"`
	FirstSeconds float64 `json:"first_s"` // from the Import call to the first file record
	LastSeconds  float64 `json:"last_s"`  // ... to the last record
	TotalSeconds float64 `json:"total_s"` // ... to the end of the Import call
	Records      int64   `json:"records"`
	Files        int64   `json:"files"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	InitError    string  `json:"init_error,omitempty"`
}

func main() {
	configJSON := flag.String("config", "{}", "the importer's config, a JSON object of strings")
	concurrency := flag.Int64("concurrency", 2, "Options.maxconcurrency")
	flag.Parse()
	var config map[string]string
	if err := json.Unmarshal([]byte(*configJSON), &config); err != nil {
		fmt.Fprintln(os.Stderr, "bad -config:", err)
		os.Exit(2)
	}
	argv := flag.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: listing-driver -config JSON -- ARGV...")
		os.Exit(2)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	check(err)
	stdout, err := cmd.StdoutPipe()
	check(err)
	check(cmd.Start())
	conn := &pipeConn{r: stdout, w: stdin}
	client, err := grpc.NewClient("passthrough:///stdio",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return conn, nil }),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	check(err)
	ctx := context.Background()
	var res result
	out := func(code int) {
		check(json.NewEncoder(os.Stdout).Encode(res))
		client.Close()
		cmd.Wait()
		os.Exit(code)
	}

	start := time.Now()
	req, resp := initRequest(config, *concurrency), []byte(nil)
	if err := client.Invoke(ctx, "/importer.Importer/Init", &req, &resp); err != nil {
		res.InitError = err.Error()
		out(1)
	}
	res.InitSeconds = time.Since(start).Seconds()

	desc := &grpc.StreamDesc{StreamName: "Import", ServerStreams: true, ClientStreams: true}
	start = time.Now()
	stream, err := client.NewStream(ctx, desc, "/importer.Importer/Import")
	check(err)
	// Acknowledgements go out from their own goroutine, as plakar's do, so that
	// receiving never waits on sending.
	acks := make(chan []byte, 4096)
	sent := make(chan error, 1)
	go func() {
		for raw := range acks {
			result := bytesField(nil, 1, raw) // Result.header
			msg := bytesField(nil, 1, result) // ImportRequest.result
			if err := stream.SendMsg(&msg); err != nil {
				sent <- err
				for range acks {
				}
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for {
		var m []byte
		if err := stream.RecvMsg(&m); err != nil {
			if err != io.EOF {
				res.FirstError = "Import: " + err.Error()
				res.Errors++
			}
			break
		}
		rec, err := parseResponse(m)
		check(err)
		if rec.finished {
			close(acks)
			acks = nil
			continue
		}
		res.Records++
		res.LastSeconds = time.Since(start).Seconds()
		if rec.file {
			if res.Files == 0 {
				res.FirstSeconds = res.LastSeconds
			}
			res.Files++
		}
		if rec.failed {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = string(rec.raw)
			}
		}
		acks <- rec.raw
	}
	if acks != nil {
		close(acks)
	}
	<-sent
	res.TotalSeconds = time.Since(start).Seconds()
	var empty []byte
	if err := client.Invoke(ctx, "/importer.Importer/Close", &empty, &resp); err != nil && res.FirstError == "" {
		res.FirstError = "Close: " + err.Error()
	}
	stdin.Close()
	if res.Errors > 0 {
		out(1)
	}
	out(0)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "listing-driver:", err)
		os.Exit(3)
	}
}
