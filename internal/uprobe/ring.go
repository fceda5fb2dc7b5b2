package uprobe

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/event"
)

// Ring is the BPF ring buffer that the probes of every watched process
// write their events to (Maps.Events), and its reader. One goroutine reads.
type Ring struct {
	m    *ebpf.Map
	rd   *ringbuf.Reader
	wake *ringWaiter
	rec  ringbuf.Record
	ev   event.Event
}

// NewRing makes a ring buffer of size bytes (a power of two, at least a
// page) and its reader.
func NewRing(size int) (*Ring, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "events", Type: ebpf.RingBuf, MaxEntries: uint32(size)})
	if err != nil {
		return nil, fmt.Errorf("create ring buffer of %d bytes: %w", size, err)
	}
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("read ring buffer: %w", err)
	}
	wake, err := newRingWaiter(m)
	if err != nil {
		rd.Close()
		m.Close()
		return nil, err
	}
	return &Ring{m: m, rd: rd, wake: wake}, nil
}

// Map is the ring buffer, for Load.
func (r *Ring) Map() *ebpf.Map { return r.m }

// Size is the ring buffer's size in bytes.
func (r *Ring) Size() int { return int(r.m.MaxEntries()) }

// Read decodes the events the ring buffer holds and passes each to handle,
// which must not keep it. With quiet 0 it returns once the ring is empty;
// otherwise once no event has come for quiet. It returns how many events
// it read.
func (r *Ring) Read(quiet time.Duration, handle func(*event.Event)) (int, error) {
	read := 0
	r.rd.SetDeadline(time.Now().Add(quiet))
	for {
		err := r.rd.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return read, nil
		}
		if err != nil {
			return read, fmt.Errorf("read ring buffer: %w", err)
		}
		if err := event.Decode(r.rec.RawSample, &r.ev); err != nil {
			return read, err
		}
		handle(&r.ev)
		read++
		if quiet > 0 {
			r.rd.SetDeadline(time.Now().Add(quiet))
		}
	}
}

// Wait returns when the probes wake the reader (they do each time the
// unread data passes a multiple of 1/RingWakeFraction of the ring), or
// woke it since the last Wait, or after d.
func (r *Ring) Wait(d time.Duration) { r.wake.wait(d) }

// Close closes the reader and the ring buffer.
func (r *Ring) Close() error {
	r.wake.close()
	return errors.Join(r.rd.Close(), r.m.Close())
}

// ringWaiter waits for the probes to wake the ring buffer's reader,
// through the Go runtime's poller on a duplicate of the ring's descriptor:
// the ring buffer reader would block a thread in epoll_wait, and the
// runtime's monitor then wakes up every few milliseconds while it does
// (twice the context switches of an idle node agent, measured).
type ringWaiter struct {
	f  *os.File
	rc syscall.RawConn
}

func newRingWaiter(ring *ebpf.Map) (*ringWaiter, error) {
	fd, err := unix.FcntlInt(uintptr(ring.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the ring buffer's descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("poll the ring buffer: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ring buffer") // non-blocking: in the runtime's poller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("poll the ring buffer: %w", err)
	}
	return &ringWaiter{f: f, rc: rc}, nil
}

// wait returns when the probes wake the reader (or woke it since the last
// wait), or after d.
func (r *ringWaiter) wait(d time.Duration) {
	if err := r.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		time.Sleep(d) // not pollable: no wake-ups, only the pause
		return
	}
	asked := false
	// The first call says "not ready", so the runtime parks until the
	// descriptor is signalled readable or the deadline passes.
	r.rc.Read(func(uintptr) bool {
		done := asked
		asked = true
		return done
	})
}

func (r *ringWaiter) close() { r.f.Close() }
