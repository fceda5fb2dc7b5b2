//go:build ignore

// ctxwatch's kernel side: uprobes in a Go program that keep, per goroutine,
// the trace in scope and tell the agent only what it needs: spawns inside a
// trace, the first judged check of a goroutine that inherited one, drops,
// overwrites, spans started on an ended parent of the same goroutine, the
// log records written inside a trace, and the channel elements that hand a
// trace to their receiver (chan.h). A check outside any trace costs one map
// lookup and emits nothing.
//
// The file is split by concern: goabi.h (the Go runtime and ABI), wire.h
// (the records shared with the agent), walk.h (the context walk), stack.h
// (the stack walk); this file holds the configuration, the maps and the
// programs.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stddef.h>

#include "goabi.h"
#include "wire.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// What the agent tells each copy of the program about its target process.
// Addresses are run-time addresses (load bias applied). cfg_tgid is the one
// process watched, or 0 when the processes of one executable share the
// program (ctxwatch node): then they are the keys of procs.
volatile const __u32 cfg_tgid;
volatile const __u8 cfg_spawn_g_arg; // where the spawn probe finds the new g
volatile const __u64 off_g_goid, off_g_m, off_g_sched_bp, off_m_curg;
// g.parentGoid (Go 1.21 and later; 0 before): the spawn probe reads the
// new goroutine's id and its spawner's at once, 120 to 128 bytes apart
// (Go 1.21 to 1.27), and reads m.curg only for a spawn inside a trace.
volatile const __u64 off_g_parent_goid;
#define IDS_WORDS 20 // the spawn probe's read of a new g: 160 bytes from goid
// g.sched.ctxt: the closure (*funcval) a new goroutine runs, 0 when
// registered work (AfterFunc) is not followed.
volatile const __u64 off_g_sched_ctxt;
volatile const __u64 typ_value_ctx, typ_cancel_ctx, typ_timer_ctx, typ_after_func_ctx;
// The static itabs (go:itab.*context.valueCtx,context.Context and the
// cancelCtx one) of those two types, 0 when the binary has none: a context
// node with one of them is known without reading its itab.
volatile const __u64 itab_value_ctx, itab_cancel_ctx;
volatile const __u64 typ_without_cancel_ctx, typ_stop_ctx, typ_background_ctx, typ_todo_ctx, typ_empty_ctx;
volatile const __u64 off_cancel_err;
volatile const __u64 typ_string, typ_bytes;
volatile const __u64 typ_span_key, typ_recording_span, typ_nonrecording_span;
volatile const __u64 off_rs_sc, off_rs_parent, off_rs_end, off_nrs_sc;
volatile const __u64 typ_sdk_nonrecording_span, off_sdk_nrs_sc;
// The text of the OTel SDK's (*tracer).Start and, where the binary has it
// as a function, of trace.ContextWithSpan: a WithValue called from there
// (through there) stores a span just started, not one re-attached to another
// context. 0 when the SDK is not linked: nothing is taken as started, and
// stale-parent is not watched.
volatile const __u64 txt_tracer_start, txt_tracer_start_end, txt_ctx_with_span, txt_ctx_with_span_end;
// runtime.hchan and runtime.sudog fields, for channel hand-offs (chan.h);
// off_c_buf is 0 when they are not watched.
volatile const __u64 off_c_qcount, off_c_dataqsiz, off_c_buf, off_c_elemsize, off_c_closed;
volatile const __u64 off_c_sendx, off_c_recvx, off_c_recvq, off_c_sendq;
volatile const __u64 off_sg_g, off_sg_elem, off_sg_is_select;
volatile const __u64 txt_chanrecv, txt_chanrecv_end; // runtime.chanrecv's text
// runtime.selectgo's text, and runtime.g.selectDone: a multi-case select
// (chan.h). 0 when selects are not watched.
volatile const __u64 txt_selectgo, txt_selectgo_end, off_g_select_done;
volatile const __u32 n_keys;
volatile const __u8 keys_kind[MAX_KEYS];
volatile const __u64 keys_type[MAX_KEYS];
volatile const __u8 keys_str[MAX_KEYS][KEY_STR_LEN];
volatile const __u32 keys_str_len[MAX_KEYS];
volatile const __u64 keys_int[MAX_KEYS];      // KEY_TYPE_INT: the value, masked to the type's size
volatile const __u64 keys_int_mask[MAX_KEYS];
// User code text ranges, sorted: a global, not a map, so that the binary
// search makes no helper call (5.10's verifier refuses a loop entered right
// after a call, which clang may lay out).
volatile const __u32 n_ranges;
// Unread bytes in the ring buffer at whose every multiple an event wakes
// the agent (see emit): otherwise it reads the ring on its own schedule
// (every 2 ms while events come, every 64 ms when idle), since a wake-up
// per event would cost more than the event; a burst wakes it long before
// the ring is full.
volatile const __u64 ring_wake_bytes;
volatile const struct range user_ranges[MAX_RANGES];

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 17);
	__type(key, __u64); // gkey: tgid and goid
	__type(value, struct gstate);
} goroutines SEC(".maps");

// The processes a shared program watches (cfg_tgid == 0).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); // tgid
	__type(value, __u8);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

// Types that are not of package context but whose value is a struct with an
// embedded context.Context as its first field (os/signal's signalCtx, a
// user's wrapper): the walk goes on through that field, laid out as every
// context type's parent is. Filled by the agent from the binary's type data.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64); // type descriptor address
	__type(value, __u8);
} ctx_wrappers SEC(".maps");

// Work registered inside a trace and run later on a goroutine the runtime
// starts: time.AfterFunc's callback, started by the timer (time.goFunc:
// `go f()`), and context.AfterFunc's, started by the goroutine that
// cancels the context (`go a.f()`). Both hand the user's func value itself
// to newproc, so the new goroutine's g.sched.ctxt is the funcval that was
// registered: the key, with the funcval's code pointer (its first word).
// The address alone is not enough: a timer stopped before it fired leaves
// its entry, and the garbage collector hands the funcval's memory to
// another closure, which a later go statement starts (found by TestSoak).
// The value is what the registering goroutine would have handed a child
// it spawned there, and where it registered.
struct reg_key {
	__u64 tgid;
	__u64 funcval;
	__u64 fn;
};

struct registered {
	struct gstate st;
	__u64 parent_goid;
	__u64 stack[STACK_DEPTH];
	__u32 nstack;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct reg_key);
	__type(value, struct registered);
} registered SEC(".maps");

volatile const struct registered zero_registered;

// Set once some work was registered inside a trace: from then on, spawns
// without a traced spawner look their funcval up in registered.
__u32 registered_any;

// Probe address -> index of the register pair holding the context argument
// of a --check-func or --log-func function.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} check_funcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct walk {
	struct trace t;
	__u64 cancel; // nearest cancelable ancestor, 0 = none
	__u64 span;   // the *recordingSpan found, if any
	int carry;
};

// Probe hits per CPU, for the agent's estimate of what the probes cost the
// target. A global, not a map: counting must not add a map lookup to the
// hot path. One cache line per CPU, so CPUs do not share lines.
#define MAX_CPUS 512
__u64 hits[MAX_CPUS * 8];

static __always_inline void hit(void)
{
	// A mask, not a compare: 5.10's verifier does not carry a compare on
	// the copy clang makes over to the register it indexes with (found by
	// vmtest). Beyond MAX_CPUS, CPUs share a slot: the sum stays right.
	__u32 cpu = bpf_get_smp_processor_id() & (MAX_CPUS - 1);
	hits[cpu * 8] += 1;
}

// Hits of the probes the kernel single-steps (the log record probe, on a
// CALL through a register), also counted in hits: the overhead budget
// charges them at the dearer cost. Laid out as hits.
__u64 hits_stepped[MAX_CPUS * 8];

static __always_inline void hit_stepped(void)
{
	__u32 cpu = bpf_get_smp_processor_id() & (MAX_CPUS - 1);
	hits_stepped[cpu * 8] += 1;
}

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);
	if (v)
		*v += 1;
}

static __always_inline int read(void *dst, __u32 size, __u64 src)
{
	if (bpf_probe_read_user(dst, size, (void *)src) < 0) {
		count(STAT_READ_FAULT);
		return -1;
	}
	return 0;
}

// ours returns the current process id if it is watched, else 0: a uprobe
// fires in every process mapping the file. One process costs a compare;
// processes sharing the program (node mode) a map lookup.
static __always_inline __u32 ours(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (cfg_tgid)
		return tgid == cfg_tgid ? tgid : 0;
	return bpf_map_lookup_elem(&procs, &tgid) ? tgid : 0;
}

static __always_inline int goid_of(__u64 g, __u64 *goid)
{
	return read(goid, sizeof(*goid), g + off_g_goid);
}

// Goroutine states are keyed by process and goroutine id, since processes
// sharing the program share the map: the goid in the low GOID_BITS (a
// process would need 4e12 goroutines to overflow them), the tgid above
// (below 2^22, the kernel's PID_MAX_LIMIT). internal/uprobe splits keys
// the same way.
#define GOID_BITS 42
#define GOID_MASK ((1ULL << GOID_BITS) - 1)

static __always_inline __u64 gkey(__u32 tgid, __u64 goid)
{
	return (goid & GOID_MASK) | ((__u64)tgid << GOID_BITS);
}

static __always_inline int gkey_of(__u32 tgid, __u64 g, __u64 *key)
{
	__u64 goid;
	if (goid_of(g, &goid) < 0)
		return -1;
	*key = gkey(tgid, goid);
	return 0;
}

static __always_inline void forget(__u64 key)
{
	if (bpf_map_delete_elem(&goroutines, &key) == 0)
		count(STAT_STATE_DELETED);
}

// trace_diff is 0 when a and b are the same trace (the same length, key
// and bytes), computed without a branch: the verifier follows each branch
// of a compare byte by byte as a path of its own.
static __always_inline __u64 trace_diff(const struct trace *a, const struct trace *b)
{
	const __u64 *x = (const __u64 *)a->id, *y = (const __u64 *)b->id;
	__u64 d = (__u64)(a->len ^ b->len) | (__u64)(a->key ^ b->key);
#pragma unroll
	for (int i = 0; i < TRACE_LEN / 8; i++)
		d |= x[i] ^ y[i];
	return d;
}

static __always_inline int same_trace(const struct trace *a, const struct trace *b)
{
	return trace_diff(a, b) == 0;
}

#include "walk.h"
#include "stack.h"

// Events are built in ring buffer memory reserved for them, never in a
// per-CPU buffer, for the reason given at stacks.
static __always_inline struct event *new_event(__u8 type, __u64 key, struct gstate *st, __u64 pc)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(STAT_EVENTS_LOST);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->goid = key & GOID_MASK;
	ev->tgid = key >> GOID_BITS;
	ev->pc = pc;
	if (st) {
		ev->t = st->t;
		ev->spawn_ns = st->spawn_ns;
	}
	return ev;
}

// An event's size in the ring buffer: the record and its 8-byte header,
// rounded up to 8 bytes (the kernel's BPF_RINGBUF_HDR_SZ and alignment).
#define EVENT_RECORD ((sizeof(struct event) + 8 + 7) & ~7ULL)

// emit sends ev with stack s (none if s is 0), timed now unless its
// maker gave it a time.
static __always_inline void emit(struct event *ev, struct stack *s)
{
	if (s) {
		__builtin_memcpy(ev->stack, s->pc, sizeof(ev->stack));
		ev->nstack = s->n > STACK_DEPTH ? STACK_DEPTH : s->n;
	}
	if (!ev->ktime_ns)
		ev->ktime_ns = bpf_ktime_get_ns();
	// Wake the reader only when this record takes the unread data across
	// a multiple of ring_wake_bytes: a wake-up per record above the mark
	// (the rule before) cost a self-IPI per event while the agent was
	// behind, a VM exit on a virtual machine (8% of a 3-million-spawn
	// storm's samples on 6.18). The unread data counts this record,
	// reserved but not yet read. Two CPUs reserving at once may both
	// miss a mark: the next one wakes the reader.
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (ring_wake_bytes && avail >= EVENT_RECORD &&
	    avail / ring_wake_bytes != (avail - EVENT_RECORD) / ring_wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
}

// span_tag is what gstate.mine keeps of a span started here: its span id's
// low 32 bits, never 0. A *recordingSpan's memory, once collected, may hold
// another goroutine's span: the tag tells them apart.
static __always_inline __u32 span_tag(const struct trace *t)
{
	return ((__u32)t->span[0] | (__u32)t->span[1] << 8 | (__u32)t->span[2] << 16 | (__u32)t->span[3] << 24) | 1;
}

_Static_assert(MAX_SPANS == 4, "oldest_ended takes the four slots of gstate.spans");

// oldest_ended returns the slot of the oldest of a full state's spans
// s0..s3 (oldest first) that has ended, MAX_SPANS when none has (or none
// could be read). A global function, verified once, as parent_ended.
__attribute__((noinline)) int oldest_ended(__u64 s0, __u64 s1, __u64 s2, __u64 s3)
{
	__u64 s[MAX_SPANS] = {s0, s1, s2, s3};
	for (int i = 0; i < MAX_SPANS; i++) {
		__u64 end[2] = {}; // time.Time wall, ext: both zero until End
		if (bpf_probe_read_user(end, sizeof(end), (void *)(s[i] + off_rs_end)) == 0 && (end[0] || end[1]))
			return i;
	}
	return MAX_SPANS;
}

// add_span records span of the goroutine's trace; tag is its span_tag if
// this goroutine started it, else 0.
static __always_inline void add_span(struct gstate *st, __u64 span, __u32 tag)
{
	if (!span)
		return;
	for (__u32 i = 0; i < MAX_SPANS && i < st->nspans; i++)
		if (st->spans[i] == span) {
			if (tag)
				st->mine[i] = tag;
			return;
		}
	__u32 n = st->nspans;
	if (n < MAX_SPANS) {
		st->spans[n & (MAX_SPANS - 1)] = span;
		st->mine[n & (MAX_SPANS - 1)] = tag;
		st->nspans = n + 1;
	} else {
		// Full: drop the oldest span that has ended, else the oldest. A
		// unit of work's span outlives the spans of its steps, started
		// and ended one after the other under it; dropping the oldest
		// whatever it was pushed the unit's open span out after four
		// steps, and scope rule 2 then found every span it knew ended:
		// the unit's later records and checks were not judged.
		__u32 drop = oldest_ended(st->spans[0], st->spans[1], st->spans[2], st->spans[3]);
		if (drop >= MAX_SPANS)
			drop = 0;
		for (__u32 i = 0; i < MAX_SPANS - 1; i++) {
			if (i < drop)
				continue;
			st->spans[i] = st->spans[i + 1];
			st->mine[i] = st->mine[i + 1];
		}
		st->spans[MAX_SPANS - 1] = span;
		st->mine[MAX_SPANS - 1] = tag;
	}
}

// own makes goroutine key the owner of trace t, a new unit of work; fresh
// says it had no state (counted, so that the agent can tell evictions).
static __always_inline void own(__u64 key, struct trace *t, __u64 cancel, __u64 span, __u32 tag, int fresh)
{
	struct gstate st;
	__builtin_memset(&st, 0, sizeof(st));
	st.t = *t;
	st.cancel = cancel;
	st.flags = G_OWNS;
	add_span(&st, span, tag);
	if (bpf_map_update_elem(&goroutines, &key, &st, BPF_ANY) < 0)
		count(STAT_STATE_FULL);
	else if (fresh)
		count(STAT_STATE_NEW);
}

// check judges a goroutine's use of context c that sets no trace. work says
// whether the call is trace-bearing work (a --check-func function) or an
// incidental use of a context (WithCancel, WithTimeout, WithValue with
// another key). DESIGN.md's "judge the work": an OTel trace lives on in
// spans, so a traceless incidental check is no break by itself (a
// goroutine may take a timeout on Background only to wait for a
// semaphore): an owner is judged at its next span start or trace-key set,
// and an inheriting goroutine's traceless check is sent once, marked, for
// the agent to hold until the goroutine's work decides. With custom keys
// there are no spans: every check is work.
static __always_inline void check(REGS *ctx, __u64 key, struct gstate *st, struct iface c, int work)
{
	int incidental = !work && st->t.key == 0;
	struct walk wk;
	struct walk *w = &wk;
	if (st->flags & G_PENDING) {
		if (incidental && (st->flags & G_TRACELESS))
			return; // its traceless check was sent: the work decides now
		walk_ctx(w, c, -1);
		if (w->carry == CARRY_UNKNOWN)
			return; // unknown context: not a verdict either way
		__u8 out = OUT_LOST;
		if (w->carry == CARRY_TRACE)
			out = same_trace(&w->t, &st->t) ? OUT_PROPAGATED : OUT_OTHER;
		else if (incidental)
			out = OUT_TRACELESS;
		// The agent reads a propagated first check's goroutine and
		// outcome, not its frames: the walk stops at the first user one.
		struct stack *s = user_stack_upto(ctx, out == OUT_PROPAGATED);
		if (!s)
			return; // only library code: not judged
		struct event *ev = new_event(EV_FIRST_CHECK, key, st, GO_PC(ctx));
		if (!ev)
			return;
		ev->outcome = out;
		if (out == OUT_OTHER)
			ev->other = w->t;
		emit(ev, s);
		if (out == OUT_TRACELESS)
			st->flags |= G_TRACELESS;
		else
			st->flags &= ~(G_PENDING | G_TRACELESS);
		return;
	}
	if (!in_scope(st)) {
		forget(key);
		return;
	}
	if (!(st->flags & G_OWNS) || incidental)
		return;
	walk_ctx(w, c, -1);
	if (w->carry != CARRY_NONE)
		return;
	struct stack *s = user_stack(ctx);
	if (!s)
		return;
	struct event *ev = new_event(EV_DROPPED, key, st, GO_PC(ctx));
	if (ev)
		emit(ev, s);
}

// start_frame, started_tag, parent_ended and count_start are global
// functions, verified once and seen by with_value as calls returning an unknown number: the tag that
// with_value carries on to the state it stores is then one value to the
// verifier, not 0 on some paths and a span's tag on others, which doubled
// the paths it followed through the rest of with_value (instructions
// verified on 6.18: 86,530 without stale-parent, 121,659 with the tag made
// inline, 86,891 so).

// start_frame returns the frame pointer of the SDK's (*tracer).Start if
// the WithValue being entered stores a span that Start just made on this
// goroutine: its caller is (*tracer).Start (fp, the caller's frame pointer,
// is then Start's), or trace.ContextWithSpan called from there (fp is then
// ContextWithSpan's frame record, whose saved fp is Start's). A span put
// into another context (trace.ContextWithSpan in user code, the usual way
// to hand a request's span to work that outlives the request) was not
// started here: 0, as for no span. ret_at is where WithValue's return
// address is: the stack slot at RSP (amd64), or the address itself (LR,
// arm64). A frame not found as expected says 0: a missed stale-parent,
// never a false one.
__attribute__((noinline)) __u64 start_frame(__u64 ret_at, __u64 fp, __u64 span)
{
	if (!span || !txt_tracer_start)
		return 0;
	__u64 ret = ret_at;
#if !defined(__TARGET_ARCH_arm64)
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)ret_at) < 0)
		return 0;
#endif
	if (txt_ctx_with_span && ret >= txt_ctx_with_span && ret < txt_ctx_with_span_end) {
		__u64 rec[2] = {}; // ContextWithSpan's frame record: {saved fp, return pc}
		if (bpf_probe_read_user(rec, sizeof(rec), (void *)fp) < 0)
			return 0;
		ret = rec[1];
		fp = rec[0];
	}
	return ret >= txt_tracer_start && ret < txt_tracer_start_end ? fp : 0;
}

// started_tag returns tag, the span_tag of the span being stored, when
// start_frame found the Start that made it (sfp), else 0.
__attribute__((noinline)) __u32 started_tag(__u64 sfp, __u32 tag)
{
	return sfp ? tag : 0;
}

// A Start site: the return address into the function that called the
// SDK's (*tracer).Start, in process tgid. For a direct tracer.Start call,
// or a user helper that calls it, that is the frame user_stack's first
// user frame comes from, the site a stale-parent event is reported at.
struct start_key {
	__u32 tgid;
	__u32 _pad;
	__u64 pc;
};

// What a Start site did with spans it started on a parent span that the
// same goroutine had started (the only case stale-parent judges): started
// counts them all, stale those whose parent had ended. No event on this
// path: the agent reads the counters when it makes a summary.
struct start_count {
	__u64 started;
	__u64 stale;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct start_key);
	__type(value, struct start_count);
} start_sites SEC(".maps");

// START_UP is how many frames above a Start called from library code
// count_start climbs to find user code (the otel package's global
// delegate tracer, taken before the SDK's provider was set, calls the
// SDK's Start from its own).
#define START_UP 3

// The first count of a Start site, stale or not: globals, not locals, for
// the stack that with_value and its calls share (512 bytes; 5.10 rounds
// each frame up to 32).
volatile const struct start_count first_count[2] = {{1, 0}, {1, 1}};

// count_start counts a span started on an own parent by goroutine gkey
// (its process in the high bits) at the Start site whose frame pointer is
// sfp: the frame record there holds the return address into Start's
// caller (one read of the target). When that caller is not user code,
// the return addresses above it are read, up to START_UP more, until one
// is: the site a stale-parent event's first user frame names. A global
// function, verified once.
__attribute__((noinline)) int count_start(__u64 gkey, __u64 sfp, int stale)
{
	struct start_key k = {.tgid = (__u32)(gkey >> GOID_BITS)};
	__u64 rec[2] = {}; // a frame record: {saved fp, return pc}
	if (bpf_probe_read_user(rec, sizeof(rec), (void *)sfp) < 0 || !rec[1])
		return 0;
	k.pc = rec[1];
	for (int i = 0; i < START_UP && !user_pc(rec[1] - 1); i++) {
		if (!rec[0] || bpf_probe_read_user(rec, sizeof(rec), (void *)rec[0]) < 0 || !rec[1])
			break;
		if (user_pc(rec[1] - 1)) {
			k.pc = rec[1];
			break;
		}
	}
	struct start_count *c = bpf_map_lookup_elem(&start_sites, &k);
	if (!c) {
		if (bpf_map_update_elem(&start_sites, &k, (void *)&first_count[stale ? 1 : 0], BPF_NOEXIST) == 0)
			return 1;
		c = bpf_map_lookup_elem(&start_sites, &k); // another CPU made it
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->started, 1);
	if (stale)
		__sync_fetch_and_add(&c->stale, 1);
	return 1;
}

// parent_ended says whether parent, the *recordingSpan in the context of
// a span that this goroutine is starting (tag: started_tag's answer, 0 for
// a span not started here), has ended: its endTime, a time.Time, has a
// non-zero wall or ext.
__attribute__((noinline)) int parent_ended(__u64 parent, __u32 tag)
{
	if (!tag)
		return 0;
	__u64 end[2] = {};
	if (bpf_probe_read_user(end, sizeof(end), (void *)(parent + off_rs_end)) < 0)
		return 0;
	return end[0] || end[1];
}

// own_span says whether span, with span id tag ptag, is one that this
// goroutine started itself (a slot of its state holds it with ptag). A
// pending goroutine has no span of its own: a parent started by the
// spawner (work that outlives its request) is never its own.
static __always_inline int own_span(struct gstate *st, __u64 span, __u32 ptag)
{
	if (st->flags & G_PENDING)
		return 0;
	int found = 0;
	for (__u32 i = 0; i < MAX_SPANS && i < st->nspans; i++)
		if (st->spans[i] == span && st->mine[i] == ptag)
			found = 1;
	return found;
}

// same_otel_trace compares two OTel trace ids (16 bytes) word by word.
static __always_inline int same_otel_trace(const struct trace *a, const struct trace *b)
{
	const __u64 *x = (const __u64 *)a->id, *y = (const __u64 *)b->id;
	return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

// pair_stack puts an event's two traces in this thread's stack slot and
// captures the stack there (ret_at: where the return address is, as for
// start_frame), for report_pair, which takes no pointer (5.10's global
// functions take scalars). It says whether user code is on the stack.
// The return address is read into the slot, not onto with_value's stack:
// 5.10 counts each frame of a call chain at 32 bytes or more, and
// with_value's chain down to user_pc has none to spare.
static __attribute__((noinline)) int pair_stack(const struct trace *t, const struct trace *other, __u64 ret_at, __u64 fp)
{
	struct stack *s = stack_slot();
	if (!s)
		return 0;
	s->t = *t;
	s->other = *other;
#if defined(__TARGET_ARCH_arm64)
	s->pc[0] = ret_at;
#else
	if (read(&s->pc[0], sizeof(s->pc[0]), ret_at) < 0)
		return 0;
#endif
	return walk_stack(s->pc[0], fp, 0) == 1;
}

// report_pair sends an event of type (overwritten, stale-parent) with the
// two traces and the stack pair_stack left in this thread's slot. A
// global function, called from with_value alone: inline there, two of
// these events took its frames past the 512 bytes a program's stack has.
__attribute__((noinline)) int report_pair(__u32 type, __u64 key, __u64 pc)
{
	struct stack *s = this_stack();
	if (!s || !s->t.len) // the slot was evicted and made anew
		return 0;
	struct event *ev = new_event(type, key, 0, pc);
	if (ev) {
		ev->t = s->t;
		ev->other = s->other;
		emit(ev, s);
	}
	s->t.len = 0;
	return 1;
}

// context.WithValue(parent Context, key, val any): parent in RAX/RBX, key in
// RCX/RDI, val in RSI/R8. The probe sits after the stack check, so it fires
// once per call with every argument in place.
SEC("uprobe/with_value")
int with_value(REGS *ctx)
{
	__u32 tgid = ours();
	if (!tgid)
		return 0;
	hit();
	__u64 key;
	if (gkey_of(tgid, GO_G(ctx), &key) < 0)
		return 0;
	struct iface parent = {GO_ARG0(ctx), GO_ARG1(ctx)};
	int k = key_index(GO_ARG2(ctx), GO_ARG3(ctx), 0);
	if (k == -2)
		return 0; // the key compare was interrupted: no verdict
	struct gstate *st = bpf_map_lookup_elem(&goroutines, &key);
	if (k < 0) {
		if (st)
			check(ctx, key, st, parent, 0);
		return 0;
	}

	struct trace nt;
	struct walk wk;
	struct walk *w = &wk;
	__u64 span;
	// trace_value's scratch (3 words) is the walk's trace, filled only
	// after: 5.10 holds with_value's frame and its callees' to 512 bytes.
	if (trace_value(&nt, k, GO_ARG4(ctx), GO_ARG5(ctx), &span, (__u64 *)w->t.id) != CARRY_TRACE)
		return 0;
	walk_ctx(w, parent, k);
	__u64 cancel = w->cancel;
	int tracer_said = 0;
	if (k == 0 && w->carry == CARRY_UNKNOWN) {
		// A context the walk cannot follow (*gin.Context, a framework's
		// or a user's type): the tracer looked the parent span up through
		// ctx.Value, so the span it made says what the context carried. A
		// root: no span; a child: the span's own trace.
		w->carry = nt.root ? CARRY_NONE : CARRY_TRACE;
		tracer_said = 1;
	}

	// Overwritten: the parent carried another trace under this key. The
	// test is arithmetic, not a branch on carry and on each byte: the
	// verifier follows a branch's outcomes as paths of their own through
	// the rest of with_value, which a learned carry kept apart (6.18:
	// 38,575 instructions verified with same_trace's branches, 20,425
	// without the test at all).
	__u64 no_own = (__u64)(w->carry ^ CARRY_TRACE) | (__u64)tracer_said; // 0: the walk found a trace
	if (!no_own && trace_diff(&w->t, &nt) && pair_stack(&w->t, &nt, ret_slot(ctx), GO_FP(ctx)))
		report_pair(EV_OVERWRITTEN, key, GO_PC(ctx));
	// A span the tracer just started here is tagged as this goroutine's.
	// Started on a context whose span this goroutine started and has
	// ended (a loop's `ctx, span = tracer.Start(ctx, ...)`, a context used
	// after span.End()): stale-parent. The SDK took its parent from that
	// context: the same trace, not a root.
	__u64 sfp = start_frame(ret_slot(ctx), GO_FP(ctx), span);
	__u32 tag = started_tag(sfp, span_tag(&nt));
	// DESIGN.md's stale-parent: the parent is one of this goroutine's own
	// spans and has ended. Every span started here on a parent of its own
	// is counted at its Start site (start_sites), stale or not: the
	// site's retention. On the common path, a span started on an open
	// parent of its own, that costs start_frame's read of the return
	// address, the endTime read, the read of Start's frame record and a
	// map update; no event.
	if (st && sfp && w->carry == CARRY_TRACE && !tracer_said && w->span && !nt.root && same_otel_trace(&w->t, &nt) &&
	    own_span(st, w->span, span_tag(&w->t))) {
		int ended = parent_ended(w->span, tag);
		count_start(key, sfp, ended);
		if (ended && pair_stack(&w->t, &nt, ret_slot(ctx), GO_FP(ctx)))
			report_pair(EV_STALE_PARENT, key, GO_PC(ctx));
	}
	// The context this check hands on carries nt; it carried the
	// goroutine's trace before if it carries the same trace now.
	if (!st) {
		own(key, &nt, cancel, span, tag, 1);
		return 0;
	}
	int had = same_trace(&nt, &st->t); // the context handed on carries nt
	int unknown = w->carry == CARRY_UNKNOWN;
	int scope = in_scope(st);

	if (st->flags & G_PENDING) {
		// Setting a trace is work: the inherited trace is judged here,
		// however long ago the spawner's request ended (a fire-and-forget
		// task). A different trace that the context already carried is
		// another unit of work (a worker started lazily, taking another
		// request's job): not judged against this one.
		if (unknown && !had)
			return 0;
		__u8 out = OUT_PROPAGATED;
		if (!had)
			out = w->carry == CARRY_TRACE ? OUT_OTHER : OUT_NEW_ROOT;
		struct stack *s = user_stack_upto(ctx, out == OUT_PROPAGATED); // as in check
		if (!s)
			return 0; // only library code: not judged
		struct event *ev = new_event(EV_FIRST_CHECK, key, st, GO_PC(ctx));
		if (!ev)
			return 0;
		ev->outcome = out;
		if (out != OUT_PROPAGATED)
			ev->other = nt;
		emit(ev, s);
		if (had) {
			st->flags = (st->flags & ~(G_PENDING | G_TRACELESS)) | G_OWNS;
			st->t.root = nt.root;
			__builtin_memcpy(st->t.span, nt.span, sizeof(nt.span));
			add_span(st, span, tag);
		} else {
			own(key, &nt, cancel, span, tag, 0);
		}
		return 0;
	}
	if (had && scope) {
		st->flags |= G_OWNS;
		__builtin_memcpy(st->t.span, nt.span, sizeof(nt.span));
		add_span(st, span, tag);
		return 0;
	}
	// A different trace. Rule 3: with a span of the old trace still open
	// here, starting a new one on a context without it is a drop; otherwise
	// it is the next unit of work.
	if (scope && (st->flags & G_OWNS) && k == 0 && st->t.key == 0 && st->nspans && !had && !unknown &&
	    w->carry != CARRY_TRACE) {
		struct stack *s = user_stack(ctx);
		struct event *ev = s ? new_event(EV_DROPPED, key, st, GO_PC(ctx)) : 0;
		if (ev) {
			ev->other = nt;
			emit(ev, s);
		}
		return 0;
	}
	own(key, &nt, cancel, span, tag, 0);
	return 0;
}

// entered starts an entry probe that acts only for a goroutine with a
// state: the watched process, the hit counted, the goroutine's key, and
// its state (0 when it has none, or is not of a watched process).
static __always_inline struct gstate *entered(REGS *ctx, __u32 *tgid, __u64 *key)
{
	*tgid = ours();
	if (!*tgid)
		return 0;
	hit();
	if (gkey_of(*tgid, GO_G(ctx), key) < 0)
		return 0;
	return bpf_map_lookup_elem(&goroutines, key);
}

// Functions whose first argument is the context they use: the WithCancel
// and WithDeadline families (parent in RAX/RBX).
SEC("uprobe/ctx_arg0")
int ctx_arg0(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st)
		return 0;
	struct iface c = {GO_ARG0(ctx), GO_ARG1(ctx)};
	check(ctx, key, st, c, 0);
	return 0;
}

// register_work records func value fv, registered by the current goroutine
// (time.AfterFunc, context.AfterFunc): if it has a trace in scope, the
// goroutine that will run fv inherits it, with this call's stack as its
// spawn stack (the user's registration line).
static __always_inline void register_work(REGS *ctx, __u32 tgid, __u64 key, struct gstate *st, __u64 fv)
{
	if (!off_g_sched_ctxt || !fv || !in_scope(st))
		return;
	struct stack *s = user_stack(ctx);
	// Work the user registered: the caller is user code. Not a library's
	// own timer (context.WithDeadline's, under a user's call).
	if (!s || !s->n || !user_pc(s->pc[0] - 1))
		return;
	struct reg_key rk = {tgid, fv, 0};
	if (read(&rk.fn, sizeof(rk.fn), fv) < 0)
		return;
	// Made in place from a zero value: on the program's stack, with
	// check's walk in context_after_func, it would not fit in 512 bytes.
	if (bpf_map_update_elem(&registered, &rk, (void *)&zero_registered, BPF_ANY) < 0) {
		count(STAT_STATE_FULL);
		return;
	}
	struct registered *r = bpf_map_lookup_elem(&registered, &rk);
	if (!r)
		return;
	r->st = *st;
	r->st.flags = G_INHERITS | G_PENDING;
	__builtin_memset(r->st.mine, 0, sizeof(r->st.mine)); // its spans are not the new goroutine's
	r->parent_goid = key & GOID_MASK;
	__builtin_memcpy(r->stack, s->pc, sizeof(r->stack));
	r->nstack = s->n > STACK_DEPTH ? STACK_DEPTH : s->n;
	registered_any = 1;
}

// time.AfterFunc(d Duration, f func()): f in RBX (X1).
SEC("uprobe/time_after_func")
int time_after_func(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (st)
		register_work(ctx, tgid, key, st, GO_ARG1(ctx));
	return 0;
}

// context.AfterFunc(ctx Context, f func()): ctx in RAX/RBX, f in RCX. A
// check of ctx too, like the WithCancel family.
SEC("uprobe/context_after_func")
int context_after_func(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st)
		return 0;
	register_work(ctx, tgid, key, st, GO_ARG2(ctx));
	struct iface c = {GO_ARG0(ctx), GO_ARG1(ctx)};
	check(ctx, key, st, c, 0);
	return 0;
}

// arg_reg returns integer argument register i of Go's register ABI. Read
// through a helper: the verifier refuses a computed offset into the context.
static __always_inline __u64 arg_reg(REGS *ctx, __u32 i)
{
#if defined(__TARGET_ARCH_arm64)
	__u64 v = 0;
	if (i < GO_NARGS)
		bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + offsetof(struct user_pt_regs, regs) + 8 * i);
	return v;
#else
	static const __u16 off[9] = {
		offsetof(struct pt_regs, rax), offsetof(struct pt_regs, rbx), offsetof(struct pt_regs, rcx),
		offsetof(struct pt_regs, rdi), offsetof(struct pt_regs, rsi), offsetof(struct pt_regs, r8),
		offsetof(struct pt_regs, r9),  offsetof(struct pt_regs, r10), offsetof(struct pt_regs, r11),
	};
	__u64 v = 0;
	if (i < 9)
		bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + off[i]);
	return v;
#endif
}

// func_ctx_arg reads the context argument of a --check-func or --log-func
// function at its entry: its register pair is looked up by probe address
// (check_funcs). It returns 0 for an address the agent did not register.
static __always_inline int func_ctx_arg(REGS *ctx, struct iface *c)
{
	__u64 ip = GO_PC(ctx);
	__u32 *reg = bpf_map_lookup_elem(&check_funcs, &ip);
	if (!reg)
		return 0;
	c->tab = arg_reg(ctx, *reg);
	c->data = arg_reg(ctx, *reg + 1);
	return 1;
}

// --check-func functions, only for goroutines inside a trace.
SEC("uprobe/check_func")
int check_func(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct iface c;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st || !func_ctx_arg(ctx, &c))
		return 0;
	check(ctx, key, st, c, 1);
	return 0;
}

// log_record judges a log record written with context c by a goroutine
// with a state: every record inside a trace is sent, with what c carries
// (the agent counts them per log line), and a record without the trace is
// the break itself (log-without-trace). A record is trace-bearing work
// (DESIGN.md, "judge the work"): an inheriting goroutine's first record
// that carries a trace, or none, is its verdict, as a --check-func call
// is; an unknown context (one the walk cannot follow) is sent, as OUT_OTHER
// with no other trace, and judges nothing. A record with no user code on
// its stack (a library's own) is not judged. inside says the probe is
// inside the logging function, past its prologue (its frame pointer is its
// own), rather than at a function's entry.
static __always_inline void log_record(REGS *ctx, __u64 key, struct gstate *st, struct iface c, int inside)
{
	if (!(st->flags & G_PENDING) && !in_scope(st)) {
		forget(key);
		return;
	}
	struct walk wk;
	struct walk *w = &wk;
	walk_ctx(w, c, -1);
	struct stack *s = 0;
	if (inside) {
		__u64 frame[2];
		if (read(frame, sizeof(frame), GO_FP(ctx)) == 0 && walk_stack(frame[1], frame[0], 0) == 1)
			s = this_stack();
	} else {
		s = user_stack(ctx);
	}
	if (!s)
		return;
	struct event *ev = new_event(EV_LOG, key, st, GO_PC(ctx));
	if (!ev)
		return;
	ev->outcome = OUT_LOST;
	if (w->carry == CARRY_UNKNOWN) {
		ev->outcome = OUT_OTHER;
	} else if (w->carry == CARRY_TRACE) {
		ev->outcome = same_trace(&w->t, &st->t) ? OUT_PROPAGATED : OUT_OTHER;
		ev->other = w->t;
	}
	emit(ev, s);
	if (w->carry != CARRY_UNKNOWN)
		st->flags &= ~(G_PENDING | G_TRACELESS);
}

// log/slog's (*Logger).log and logAttrs, on their call of
// l.Handler().Handle(ctx, r), reached only when the record's level is
// enabled: the record is written. The handler is the receiver (RAX; R0 on
// arm64), the context the first argument (RBX/RCX; R1/R2); the record, too
// big for registers, is on the stack and never read. Inside the function,
// the frame pointer is its own: the stack starts at its return address,
// [RBP+8] ([R29+8] on arm64, Go 1.21 to 1.27).
SEC("uprobe/slog_handle")
int slog_handle(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (tgid)
		hit_stepped();
	if (!st)
		return 0;
	struct iface c = {GO_ARG1(ctx), GO_ARG2(ctx)};
	log_record(ctx, key, st, c, 1);
	return 0;
}

// --log-func functions, at entry: a record written with their context
// argument.
SEC("uprobe/log_func")
int log_func(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct iface c;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st || !func_ctx_arg(ctx, &c))
		return 0;
	log_record(ctx, key, st, c, 0);
	return 0;
}

// spawn_registered handles the spawn of newg if it runs registered work:
// the goroutine inherits what its registration saw, and the spawn event
// carries the registration's stack. It returns whether it did.
static __always_inline int spawn_registered(__u32 tgid, __u64 newg)
{
	struct reg_key rk = {tgid, 0, 0};
	if (read(&rk.funcval, sizeof(rk.funcval), newg + off_g_sched_ctxt) < 0 || !rk.funcval)
		return 0;
	if (read(&rk.fn, sizeof(rk.fn), rk.funcval) < 0)
		return 0;
	struct registered *r = bpf_map_lookup_elem(&registered, &rk);
	if (!r)
		return 0;
	__u64 ckey;
	if (gkey_of(tgid, newg, &ckey) < 0)
		return 0;
	struct gstate cst = r->st;
	cst.spawn_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&goroutines, &ckey, &cst, BPF_ANY) < 0) {
		count(STAT_STATE_FULL);
		return 1;
	}
	count(STAT_STATE_NEW);
	struct event *ev = new_event(EV_SPAWN, ckey, &cst, 0);
	if (ev) {
		ev->ktime_ns = cst.spawn_ns;
		ev->parent_goid = r->parent_goid;
		__builtin_memcpy(ev->stack, r->stack, sizeof(ev->stack));
		ev->nstack = r->nstack > STACK_DEPTH ? STACK_DEPTH : r->nstack;
		ev->pc = ev->stack[0];
		emit(ev, 0);
	}
	// A timer's func runs once per registration (Reset registers it
	// anew only through another AfterFunc call).
	bpf_map_delete_elem(&registered, &rk);
	return 1;
}

// running_g returns the goroutine the system goroutine of ctx (g0, in
// systemstack) runs for: its m's curg; 0 when it cannot be read.
static __always_inline __u64 running_g(REGS *ctx)
{
	__u64 m, curg;
	if (read(&m, sizeof(m), GO_G(ctx) + off_g_m) < 0 || !m || read(&curg, sizeof(curg), m + off_m_curg) < 0)
		return 0;
	return curg;
}

// runtime.newproc.func1's CALL of runqput(pp, newg, next): the new g is the
// second argument (RBX, X1). Or, as a fallback, runtime.newproc1's RETs: the
// new g is the result (RAX, X0). Either runs on g0 (systemstack), m.curg is
// the spawner.
SEC("uprobe/spawn")
int spawn(REGS *ctx)
{
	__u32 tgid = ours();
	if (!tgid)
		return 0;
	hit();
	// Both registers loaded, then chosen: a computed offset into the
	// context is refused by the verifier.
	__u64 g0 = GO_ARG0(ctx), g1 = GO_ARG1(ctx);
	asm volatile("" : "+r"(g0), "+r"(g1));
	__u64 newg = cfg_spawn_g_arg ? g1 : g0;
	if (newg == 0)
		return 0;
	if (registered_any && spawn_registered(tgid, newg))
		return 0;
	// A read of the target costs about the same for 128 bytes as for 8
	// (bench: "The steps of a probe's work"): one read of newg from its
	// goid on holds both ids where the runtime keeps the parent's.
	__u64 curg = 0, pkey, ckey = 0;
	__u64 ids[IDS_WORDS];
	if (off_g_parent_goid > off_g_goid && off_g_parent_goid - off_g_goid < sizeof(ids)) {
		if (read(ids, sizeof(ids), newg + off_g_goid) < 0)
			return 0;
		// A constant index to the verifier, which reads the offsets from
		// the frozen .rodata.
		pkey = gkey(tgid, ids[(off_g_parent_goid - off_g_goid) / 8]);
		ckey = gkey(tgid, ids[0]);
	} else {
		curg = running_g(ctx);
		if (!curg || gkey_of(tgid, curg, &pkey) < 0)
			return 0;
	}
	struct gstate *pst = bpf_map_lookup_elem(&goroutines, &pkey);
	if (!pst)
		return 0;
	if (!in_scope(pst)) {
		if (!(pst->flags & G_PENDING))
			forget(pkey);
		return 0;
	}
	if (!ckey && gkey_of(tgid, newg, &ckey) < 0)
		return 0;
	struct gstate cst = *pst;
	cst.flags = G_INHERITS | G_PENDING;
	__builtin_memset(cst.mine, 0, sizeof(cst.mine)); // the spawner's spans are not the child's
	cst.spawn_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&goroutines, &ckey, &cst, BPF_ANY) < 0) {
		count(STAT_STATE_FULL);
		return 0;
	}
	count(STAT_STATE_NEW);
	// The spawner's stack, from newproc's frame: its return address is
	// the go statement.
	struct stack *s = 0;
	__u64 bp;
	if (!curg)
		curg = running_g(ctx);
	if (curg && read(&bp, sizeof(bp), curg + off_g_sched_bp) == 0) {
		__u64 frame[2];
#if defined(__TARGET_ARCH_arm64)
		// On arm64, systemstack opens a frame of its own (on amd64 it
		// has none), and sched.bp is its frame pointer: the record there
		// holds newproc's and a return address into newproc.
		if (read(frame, sizeof(frame), bp) < 0)
			frame[0] = 0; // the read below fails
		bp = frame[0];
#endif
		if (read(frame, sizeof(frame), bp) == 0 && walk_stack(frame[1], frame[0], 0) >= 0)
			s = this_stack();
	}
	struct event *ev = new_event(EV_SPAWN, ckey, &cst, 0);
	if (!ev)
		return 0;
	ev->ktime_ns = cst.spawn_ns; // a clock read less (some 100 ns)
	ev->parent_goid = pkey & GOID_MASK;
	if (s && s->n)
		ev->pc = s->pc[0]; // the go statement's return address
	emit(ev, s);
	return 0;
}

#include "chan.h"
