package loadgen

import (
	"runtime"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// TestMilterPacketsAllocateLittle guards the patch in
// third_party/go-milter (session.go, writePacket): go-milter v0.5.0 made a
// new 4 KiB bufio.Writer for every packet it wrote, client and server
// alike, which was most of a milter's garbage (about 22 replies per
// message) and, through the collections it caused, most of its latency
// tail. One header field round trip, client and server in this process,
// now allocates a few hundred bytes; with the unpatched library it is over
// 8 KiB.
func TestMilterPacketsAllocateLittle(t *testing.T) {
	srv, err := StartNoOp("tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s := testenv.MilterSession(t, srv.Target.Address, 10*time.Second)
	if _, err := s.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	const fields = 2000
	send := func() {
		for range fields {
			if _, err := s.HeaderField("Subject", "allocation check"); err != nil {
				t.Fatal(err)
			}
		}
	}
	send() // warm up: buffers, goroutines, the first GC
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	send()
	runtime.ReadMemStats(&after)
	perField := (after.TotalAlloc - before.TotalAlloc) / fields
	t.Logf("%d bytes allocated per header field round trip (client and server)", perField)
	if perField > 2048 {
		t.Errorf("%d bytes allocated per header field round trip, want at most 2048: is the go-milter writePacket patch gone?", perField)
	}
}
