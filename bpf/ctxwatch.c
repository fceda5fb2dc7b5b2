//go:build ignore

// ctxwatch's kernel side: uprobes in a Go program that keep, per goroutine,
// the trace in scope and tell the agent only what it needs: spawns inside a
// trace, the first judged check of a goroutine that inherited one, drops and
// overwrites. A check outside any trace costs one map lookup and emits nothing.
//
// Go runtime facts relied on (checked against go1.26.8, amd64, register ABI
// of go1.17+; every offset and type address below comes from the agent,
// read from the target's DWARF, never assumed here):
//   - R14 holds the current g; g.goid is unique for the process's life.
//   - Integer arguments in RAX, RBX, RCX, RDI, RSI, R8...; an interface
//     takes two registers (itab or type word, then data word).
//   - Every context type of package context is a pointer to a struct whose
//     first field is its parent Context (an iface: itab, data).
//   - An itab holds the concrete type descriptor at offset 8.
//   - runtime.newproc's closure runs on g0 (systemstack) with m.curg the
//     spawning goroutine, whose sched.bp is newproc's frame pointer; it
//     makes the new g with newproc1 (the result) and queues it with
//     runqput(pp, newg, next), checked from go1.17.13 to go1.27.4.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stddef.h>

// Registers, per architecture (bpf2go -target amd64 or arm64). Go's register
// ABI: integer arguments and results in RAX, RBX, RCX, RDI, RSI, R8, R9, R10,
// R11 on amd64, R0-R15 on arm64; the current g in R14 on amd64, R28 on arm64.
// At an entry probe (after the stack check) the return address is at [SP]
// on amd64 and in the link register R30 on arm64; the frame pointer (RBP,
// R29) is still the caller's, and a frame record is {saved fp, return pc}
// on both.
#if defined(__TARGET_ARCH_arm64)
// The uprobe context on arm64: struct user_pt_regs (asm/ptrace.h).
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#define REGS struct user_pt_regs
#define GO_ARG0(c) ((c)->regs[0])
#define GO_ARG1(c) ((c)->regs[1])
#define GO_ARG2(c) ((c)->regs[2])
#define GO_ARG3(c) ((c)->regs[3])
#define GO_ARG4(c) ((c)->regs[4])
#define GO_ARG5(c) ((c)->regs[5])
#define GO_NARGS 16
#define GO_G(c) ((c)->regs[28])
#define GO_FP(c) ((c)->regs[29])
#define GO_PC(c) ((c)->pc)
#else
#include <linux/ptrace.h>
#define REGS struct pt_regs
#define GO_ARG0(c) ((c)->rax)
#define GO_ARG1(c) ((c)->rbx)
#define GO_ARG2(c) ((c)->rcx)
#define GO_ARG3(c) ((c)->rdi)
#define GO_ARG4(c) ((c)->rsi)
#define GO_ARG5(c) ((c)->r8)
#define GO_NARGS 9
#define GO_G(c) ((c)->r14)
#define GO_FP(c) ((c)->rbp)
#define GO_PC(c) ((c)->rip)
#endif

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_WALK 24      // context chain levels followed before giving up
#define STACK_DEPTH 16   // user frames captured per event
#define MAX_SPANS 4      // spans of the trace a goroutine started, for scope
#define MAX_KEYS 4       // user trace keys (--trace-key)
#define TRACE_LEN 32     // bytes of trace identity kept
#define KEY_STR_LEN 32   // longest string key matched
#define MAX_RANGES 4096  // user code text ranges
#define RANGE_STEPS 13   // binary search steps: 2^13 > MAX_RANGES

enum event_type {
	EV_SPAWN = 1,       // a goroutine with a trace in scope started another
	EV_FIRST_CHECK = 2, // an inheriting goroutine's first judged check
	EV_DROPPED = 3,     // an owner checked with no trace, trace in scope
	EV_OVERWRITTEN = 4, // WithValue put a different trace under the same key
};

enum outcome {
	OUT_PROPAGATED = 1, // carries the inherited trace
	OUT_LOST = 2,       // carries no trace
	OUT_NEW_ROOT = 3,   // set a new trace on a context without the inherited one
	OUT_OTHER = 4,      // carries some other trace it did not make
	OUT_TRACELESS = 5,  // an incidental check without the trace: the work decides
};

enum gflags {
	G_OWNS = 1,     // put the trace into a context itself
	G_INHERITS = 2, // got it at spawn
	G_PENDING = 4,  // inherited, first judged check not seen yet
	G_TRACELESS = 8, // pending, and an incidental traceless check was sent
};

enum carry { CARRY_NONE = 0, CARRY_TRACE = 1, CARRY_UNKNOWN = 2 };

enum stat {
	STAT_EVENTS_LOST = 0, // ring buffer full
	STAT_READ_FAULT,      // target memory unreadable
	STAT_WALK_DEEP,       // context chain longer than MAX_WALK
	STAT_HITS,            // unused: see hits
	STAT_STATE_FULL,      // goroutine state could not be stored
	STAT_STATE_NEW,       // goroutine states created
	STAT_STATE_DELETED,   // goroutine states deleted by the program
	STAT_MAX,
};

// A key is matched by its type alone (a type with one value, struct{}), by
// its text (a plain string key), or by its type and its value (a named
// string or integer type whose other constants key other values).
enum key_kind { KEY_NONE = 0, KEY_TYPE = 1, KEY_STRING = 2, KEY_TYPE_STRING = 3, KEY_TYPE_INT = 4 };

// Referenced so that bpf2go emits these enums for the agent.
const enum event_type *unused_event_type __attribute__((unused));
const struct event *unused_event __attribute__((unused));
const enum outcome *unused_outcome __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const enum key_kind *unused_key_kind __attribute__((unused));
const enum gflags *unused_gflags __attribute__((unused));

struct trace {
	__u8 id[TRACE_LEN]; // OTel: the 16-byte trace id; custom: value bytes
	__u8 span[8];       // OTel: span id of the current span
	__u8 len;           // meaningful bytes of id; 0 = no trace
	__u8 key;           // 0 = OTel span key, i+1 = user key i
	__u8 root;          // OTel: the span has no parent
	__u8 _pad[5];
};

struct gstate {
	struct trace t;
	__u64 cancel;           // nearest cancelable ancestor (*cancelCtx), 0 = none
	__u64 spans[MAX_SPANS]; // *recordingSpan of t started here or by the parent
	__u64 spawn_ns;
	__u32 flags;
	__u32 nspans;
};

struct event {
	__u64 ktime_ns;
	__u64 goid;
	__u64 parent_goid; // EV_SPAWN: the spawner
	__u64 pc;          // EV_SPAWN: gopc; checks: the probed function's address
	__u64 spawn_ns;    // checks of inheritors: when the goroutine was spawned
	__u32 tgid;
	__u8 type;
	__u8 outcome;
	__u8 nstack;
	__u8 _pad;
	struct trace t;     // the trace in scope (inherited or owned)
	struct trace other; // new-root/dropped/overwritten: the other trace
	__u64 stack[STACK_DEPTH];
};

struct range {
	__u64 start, end;
};

// An interface value as Go lays it out.
struct iface {
	__u64 tab;  // itab (or type word for an empty interface)
	__u64 data;
};

// What the agent tells each copy of the program about its target process.
// Addresses are run-time addresses (load bias applied). cfg_tgid is the one
// process watched, or 0 when the processes of one executable share the
// program (ctxwatch node): then they are the keys of procs.
volatile const __u32 cfg_tgid;
volatile const __u8 cfg_spawn_g_arg; // where the spawn probe finds the new g
volatile const __u64 off_g_goid, off_g_m, off_g_sched_bp, off_m_curg;
// g.sched.ctxt: the closure (*funcval) a new goroutine runs, 0 when
// registered work (AfterFunc) is not followed.
volatile const __u64 off_g_sched_ctxt;
volatile const __u64 typ_value_ctx, typ_cancel_ctx, typ_timer_ctx, typ_after_func_ctx;
volatile const __u64 typ_without_cancel_ctx, typ_stop_ctx, typ_background_ctx, typ_todo_ctx, typ_empty_ctx;
volatile const __u64 off_cancel_err;
volatile const __u64 typ_string, typ_bytes;
volatile const __u64 typ_span_key, typ_recording_span, typ_nonrecording_span;
volatile const __u64 off_rs_sc, off_rs_parent, off_rs_end, off_nrs_sc;
volatile const __u64 typ_sdk_nonrecording_span, off_sdk_nrs_sc;
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
// Unread bytes in the ring buffer from which a new event wakes the agent:
// below, it reads the ring on its own schedule (every 2 ms while events
// come, every 64 ms when idle), and a wake-up per event would cost it more
// than the event; above, a burst wakes it long before the ring is full.
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
// of a --check-func function.
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

static __always_inline int gkey_of(__u32 tgid, __u64 g, __u64 *key)
{
	__u64 goid;
	if (goid_of(g, &goid) < 0)
		return -1;
	*key = (goid & GOID_MASK) | ((__u64)tgid << GOID_BITS);
	return 0;
}

static __always_inline void forget(__u64 key)
{
	if (bpf_map_delete_elem(&goroutines, &key) == 0)
		count(STAT_STATE_DELETED);
}

static __always_inline int same_trace(const struct trace *a, const struct trace *b)
{
	if (a->len != b->len || a->key != b->key)
		return 0;
	for (int i = 0; i < TRACE_LEN; i++)
		if (a->id[i] != b->id[i])
			return 0;
	return 1;
}

// key_value_is says whether the key at kdata has user key i's value: its
// text for a string key or a named string type (the data word points at
// the string header {ptr, len}), its number for a named integer type (at
// the boxed value; small integers in runtime.staticuint64s). A global
// function, verified once: inlined into the context walk's 24 steps, a
// named string type's compare took 6.18's verifier past 1M instructions.
// Its frame is kept small: with with_value's, it must fit in 512 bytes.
__attribute__((noinline)) int key_value_is(__u32 i, __u64 kdata)
{
	__u64 buf[KEY_STR_LEN / 8] = {};
	if (i >= MAX_KEYS)
		return 0;
	if (keys_kind[i] == KEY_TYPE_INT) {
		if (bpf_probe_read_user(buf, 8, (void *)kdata) < 0)
			return 0;
		return (buf[0] & keys_int_mask[i]) == keys_int[i];
	}
	if (bpf_probe_read_user(buf, 16, (void *)kdata) < 0)
		return 0;
	__u64 ptr = buf[0], len = buf[1];
	if (len != keys_str_len[i] || len > KEY_STR_LEN)
		return 0;
	if (len == 0)
		return 1;
	buf[0] = 0;
	buf[1] = 0;
	if (bpf_probe_read_user(buf, len & (KEY_STR_LEN - 1) ? len & (KEY_STR_LEN - 1) : KEY_STR_LEN, (void *)ptr) < 0)
		return 0;
	// Word by word and branch-free: buf and keys_str[i] are both zero
	// past len. A loop over the bytes made 6.1 and 6.12's verifiers give
	// up after 1M instructions with 4 string keys (found by vmtest).
	const volatile __u64 *want = (const volatile __u64 *)keys_str[i];
	__u64 diff = 0;
#pragma unroll
	for (int w = 0; w < KEY_STR_LEN / 8; w++)
		diff |= buf[w] ^ want[w];
	return diff == 0;
}

// key_index returns 0 for the OTel span key, i+1 for user key i, -1 for
// any other key. Only a trace key's value is ever read.
static __always_inline int key_index(__u64 ktype, __u64 kdata)
{
	if (ktype == 0)
		return -1;
	if (typ_span_key && ktype == typ_span_key)
		return 0;
	for (__u32 i = 0; i < MAX_KEYS && i < n_keys; i++) {
		__u8 kind = keys_kind[i];
		__u64 want = kind == KEY_STRING ? typ_string : keys_type[i];
		if (ktype != want)
			continue;
		if (kind == KEY_TYPE || key_value_is(i, kdata))
			return i + 1;
	}
	return -1;
}

// span_context reads a SpanContext (trace id at 0, span id at 16).
static __always_inline int span_context(struct trace *t, __u64 addr)
{
	__u8 sc[24];
	if (read(sc, sizeof(sc), addr) < 0)
		return -1;
	__u8 any = 0;
	for (int i = 0; i < 16; i++) {
		t->id[i] = sc[i];
		any |= sc[i];
	}
	for (int i = 0; i < 8; i++)
		t->span[i] = sc[16 + i];
	t->len = any ? 16 : 0; // an invalid SpanContext carries no trace
	return 0;
}

// trace_value decodes the value held under trace key k. Returns the carry
// state; *span gets the *recordingSpan when the value is one.
static __always_inline int trace_value(struct trace *t, int k, __u64 vtype, __u64 vdata, __u64 *span)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->key = k;
	*span = 0;
	if (k == 0) {
		if (vtype == typ_recording_span && vtype) {
			if (span_context(t, vdata + off_rs_sc) < 0)
				return CARRY_UNKNOWN;
			__u8 parent[16];
			if (read(parent, sizeof(parent), vdata + off_rs_parent) < 0)
				return CARRY_UNKNOWN;
			__u8 any = 0;
			for (int i = 0; i < 16; i++)
				any |= parent[i];
			t->root = !any;
			*span = vdata;
		} else if (vtype == typ_nonrecording_span && vtype) {
			if (span_context(t, vdata + off_nrs_sc) < 0)
				return CARRY_UNKNOWN;
		} else if (vtype == typ_sdk_nonrecording_span && vtype) {
			// The SDK's span of an unsampled trace: a trace all the same.
			if (span_context(t, vdata + off_sdk_nrs_sc) < 0)
				return CARRY_UNKNOWN;
		} else {
			return CARRY_UNKNOWN; // a Span implementation we do not know
		}
		return t->len ? CARRY_TRACE : CARRY_NONE;
	}
	struct { __u64 ptr, len; } s = {};
	if (vtype == typ_string || vtype == typ_bytes) {
		if (read(&s, sizeof(s), vdata) < 0)
			return CARRY_UNKNOWN;
	} else {
		s.ptr = vdata; // anything else: its first bytes
		s.len = 16;
	}
	if (s.len == 0)
		return CARRY_NONE;
	__u32 n = s.len > TRACE_LEN ? TRACE_LEN : s.len;
	if (read(t->id, n & (TRACE_LEN - 1) ? n & (TRACE_LEN - 1) : TRACE_LEN, s.ptr) < 0)
		return CARRY_UNKNOWN;
	t->len = n;
	return CARRY_TRACE;
}

// walk_ctx follows a Context's parent chain to the first value under a
// trace key (only key want when want >= 0), noting the nearest cancelable
// ancestor on the way. Types outside package context cannot be walked: the
// answer is then CARRY_UNKNOWN, never "no trace".
static __always_inline void walk_ctx(struct walk *w, struct iface c, int want)
{
	int cancel_seen = 0;
	w->cancel = 0;
	w->span = 0;
	w->carry = CARRY_UNKNOWN;
	w->t.len = 0;
	for (int i = 0; i < MAX_WALK; i++) {
		if (c.tab == 0) {
			w->carry = CARRY_NONE; // nil Context
			return;
		}
		__u64 typ;
		if (read(&typ, sizeof(typ), c.tab + 8) < 0)
			return;
		if (typ == typ_value_ctx) {
			struct { struct iface parent, key, val; } v;
			if (read(&v, sizeof(v), c.data) < 0)
				return;
			int k = key_index(v.key.tab, v.key.data);
			if (k >= 0 && (want < 0 || k == want)) {
				w->carry = trace_value(&w->t, k, v.val.tab, v.val.data, &w->span);
				return;
			}
			c = v.parent;
			continue;
		}
		if (typ == typ_cancel_ctx || typ == typ_timer_ctx || (typ_after_func_ctx && typ == typ_after_func_ctx)) {
			if (!cancel_seen) {
				w->cancel = c.data;
				cancel_seen = 1;
			}
		} else if (typ_without_cancel_ctx && typ == typ_without_cancel_ctx) {
			cancel_seen = 1; // cancellation stops here
		} else if (typ_stop_ctx && typ == typ_stop_ctx) {
		} else if (typ == typ_background_ctx || typ == typ_todo_ctx || typ == typ_empty_ctx) {
			w->carry = CARRY_NONE;
			return;
		} else if (!bpf_map_lookup_elem(&ctx_wrappers, &typ)) {
			return; // not a type of package context, nor a wrapper of one
		}
		if (read(&c, sizeof(c), c.data) < 0)
			return;
	}
	count(STAT_WALK_DEEP);
}

// in_scope applies DESIGN.md's scope rules 1 and 2: the cancelable ancestor
// of the context that brought the trace is not canceled, and some span of it
// started here is still open. Rule 3 is applied where a new trace is set.
static __always_inline int in_scope(struct gstate *st)
{
	// A read that fails (a page the kernel is migrating or collapsing
	// into a huge page) says nothing: it never ends a scope.
	if (st->cancel) {
		__u64 err;
		if (read(&err, sizeof(err), st->cancel + off_cancel_err) == 0 && err)
			return 0;
	}
	if (st->nspans == 0)
		return 1;
	for (__u32 i = 0; i < MAX_SPANS && i < st->nspans; i++) {
		__u64 end[2]; // time.Time wall, ext: both zero until End
		if (read(end, sizeof(end), st->spans[i] + off_rs_end) < 0 || (!end[0] && !end[1]))
			return 1;
	}
	return 0;
}

static __always_inline int user_pc(__u64 pc)
{
	__u32 lo = 0, hi = n_ranges;
	for (int i = 0; i < RANGE_STEPS; i++) {
		if (lo >= hi)
			return 0;
		__u32 mid = ((lo + hi) / 2) & (MAX_RANGES - 1); // no-op mask, for the verifier
		if (pc < user_ranges[mid].start)
			hi = mid;
		else if (pc >= user_ranges[mid].end)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

struct stack {
	__u64 pc[STACK_DEPTH];
	__u32 n;
	__u32 user; // a frame of user code is on it
};

// One stack slot per thread. Not per CPU: uprobe programs run with
// migration, not preemption, disabled, so another task's program on the
// same CPU could overwrite a per-CPU slot half-way. A thread never runs two
// of these programs at once (uprobes fire from user mode only).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); // thread id
	__type(value, struct stack);
} stacks SEC(".maps");

// A new slot's value. A global, not a local: the caller's stack and this
// function's share 512 bytes, and with_value's leaves too few for it.
volatile const struct stack zero_stack;

// frame records frame i of a stack walk and steps to its caller through
// the frame record at *fp ([fp] = caller's fp, [fp+8] = return address).
// It returns whether there is a caller to record.
static __always_inline int frame(struct stack *s, int i, __u64 *pc, __u64 *fp)
{
	if (*pc == 0)
		return 0;
	s->pc[i & (STACK_DEPTH - 1)] = *pc;
	s->n = i + 1;
	if (!s->user && user_pc(*pc - 1))
		s->user = 1;
	__u64 rec[2];
	if (*fp == 0 || bpf_probe_read_user(rec, sizeof(rec), (void *)*fp) < 0)
		return 0;
	*fp = rec[0];
	*pc = rec[1];
	return 1;
}

// walk_stack captures the calling thread's goroutine stack into its slot in
// stacks, from a return address and a frame pointer, following Go's frame
// pointer chain ([fp] = caller's fp, [fp+8] = return address). It returns 1
// when a frame of user code is on it, 0 when none is, -1 when there is no
// slot. A global function, so the verifier checks it once, not once per
// caller: inlined into each place an event is sent, its 16 frames times a
// 13-step search made with_value too big for 5.10's verifier (1M insns).
__attribute__((noinline)) int walk_stack(__u64 first, __u64 fp)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct stack *s = bpf_map_lookup_elem(&stacks, &tid);
	if (!s) {
		bpf_map_update_elem(&stacks, &tid, (void *)&zero_stack, BPF_ANY);
		s = bpf_map_lookup_elem(&stacks, &tid);
		if (!s)
			return -1;
	}
	s->n = 0;
	s->user = 0;
	// Unrolled by hand: as a loop, clang enters it from the middle, and
	// 5.10's verifier refuses the fall-through that closes it as a
	// back-edge (bpf/cfg_test.go checks for that).
	__u64 pc = first;
	if (frame(s, 0, &pc, &fp) && frame(s, 1, &pc, &fp) && frame(s, 2, &pc, &fp) && frame(s, 3, &pc, &fp) &&
	    frame(s, 4, &pc, &fp) && frame(s, 5, &pc, &fp) && frame(s, 6, &pc, &fp) && frame(s, 7, &pc, &fp) &&
	    frame(s, 8, &pc, &fp) && frame(s, 9, &pc, &fp) && frame(s, 10, &pc, &fp) && frame(s, 11, &pc, &fp) &&
	    frame(s, 12, &pc, &fp) && frame(s, 13, &pc, &fp) && frame(s, 14, &pc, &fp))
		frame(s, 15, &pc, &fp);
	return s->user;
}

// this_stack returns the stack walk_stack captured on this thread. A second
// lookup of the slot walk_stack used: a global function returns a scalar,
// never a pointer. Paid only when an event is sent.
static __always_inline struct stack *this_stack(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	return bpf_map_lookup_elem(&stacks, &tid);
}

// user_stack captures the stack at an entry probe, where [SP] (amd64) or LR
// (arm64) is the return address into the caller and the frame pointer is
// still the caller's. It returns the stack if user code is on it: a check
// made only by library code is not judged.
static __always_inline struct stack *user_stack(REGS *ctx)
{
	__u64 ret;
#if defined(__TARGET_ARCH_arm64)
	ret = ctx->regs[30];
#else
	if (read(&ret, sizeof(ret), ctx->rsp) < 0)
		return 0;
#endif
	if (walk_stack(ret, GO_FP(ctx)) != 1)
		return 0;
	return this_stack();
}

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

// emit sends ev with stack s (none if s is 0).
static __always_inline void emit(struct event *ev, struct stack *s)
{
	if (s) {
		__builtin_memcpy(ev->stack, s->pc, sizeof(ev->stack));
		ev->nstack = s->n > STACK_DEPTH ? STACK_DEPTH : s->n;
	}
	ev->ktime_ns = bpf_ktime_get_ns();
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ring_wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
}

static __always_inline void add_span(struct gstate *st, __u64 span)
{
	if (!span)
		return;
	for (__u32 i = 0; i < MAX_SPANS && i < st->nspans; i++)
		if (st->spans[i] == span)
			return;
	__u32 n = st->nspans;
	if (n < MAX_SPANS) {
		st->spans[n & (MAX_SPANS - 1)] = span;
		st->nspans = n + 1;
	} else {
		// Keep the newest: the oldest of four is the likeliest ended.
		for (int i = 0; i < MAX_SPANS - 1; i++)
			st->spans[i] = st->spans[i + 1];
		st->spans[MAX_SPANS - 1] = span;
	}
}

// own makes goroutine key the owner of trace t, a new unit of work; fresh
// says it had no state (counted, so that the agent can tell evictions).
static __always_inline void own(__u64 key, struct trace *t, __u64 cancel, __u64 span, int fresh)
{
	struct gstate st;
	__builtin_memset(&st, 0, sizeof(st));
	st.t = *t;
	st.cancel = cancel;
	st.flags = G_OWNS;
	add_span(&st, span);
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
		struct stack *s = user_stack(ctx);
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
	int k = key_index(GO_ARG2(ctx), GO_ARG3(ctx));
	struct gstate *st = bpf_map_lookup_elem(&goroutines, &key);
	if (k < 0) {
		if (st)
			check(ctx, key, st, parent, 0);
		return 0;
	}

	struct trace nt;
	__u64 span;
	if (trace_value(&nt, k, GO_ARG4(ctx), GO_ARG5(ctx), &span) != CARRY_TRACE)
		return 0;
	struct walk wk;
	struct walk *w = &wk;
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

	if (w->carry == CARRY_TRACE && !tracer_said && !same_trace(&w->t, &nt)) {
		struct stack *s = user_stack(ctx);
		struct event *ev = s ? new_event(EV_OVERWRITTEN, key, 0, GO_PC(ctx)) : 0;
		if (ev) {
			ev->t = w->t;
			ev->other = nt;
			emit(ev, s);
		}
	}
	// The context this check hands on carries nt; it carried the
	// goroutine's trace before if it carries the same trace now.
	if (!st) {
		own(key, &nt, cancel, span, 1);
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
		struct stack *s = user_stack(ctx);
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
			add_span(st, span);
		} else {
			own(key, &nt, cancel, span, 0);
		}
		return 0;
	}
	if (had && scope) {
		st->flags |= G_OWNS;
		__builtin_memcpy(st->t.span, nt.span, sizeof(nt.span));
		add_span(st, span);
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
	own(key, &nt, cancel, span, 0);
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

// --check-func functions: the register pair of the context argument is
// looked up by probe address, only for goroutines inside a trace.
SEC("uprobe/check_func")
int check_func(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st)
		return 0;
	__u64 ip = GO_PC(ctx);
	__u32 *reg = bpf_map_lookup_elem(&check_funcs, &ip);
	if (!reg)
		return 0;
	struct iface c = {arg_reg(ctx, *reg), arg_reg(ctx, *reg + 1)};
	check(ctx, key, st, c, 1);
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
	__u64 m, curg, pkey;
	if (read(&m, sizeof(m), GO_G(ctx) + off_g_m) < 0 || !m)
		return 0;
	if (read(&curg, sizeof(curg), m + off_m_curg) < 0 || !curg)
		return 0;
	if (gkey_of(tgid, curg, &pkey) < 0)
		return 0;
	struct gstate *pst = bpf_map_lookup_elem(&goroutines, &pkey);
	if (!pst)
		return 0;
	if (!in_scope(pst)) {
		if (!(pst->flags & G_PENDING))
			forget(pkey);
		return 0;
	}
	__u64 ckey;
	if (gkey_of(tgid, newg, &ckey) < 0)
		return 0;
	struct gstate cst = *pst;
	cst.flags = G_INHERITS | G_PENDING;
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
	if (read(&bp, sizeof(bp), curg + off_g_sched_bp) == 0) {
		__u64 frame[2];
		if (read(frame, sizeof(frame), bp) == 0 && walk_stack(frame[1], frame[0]) >= 0)
			s = this_stack();
	}
	struct event *ev = new_event(EV_SPAWN, ckey, &cst, 0);
	if (!ev)
		return 0;
	ev->parent_goid = pkey & GOID_MASK;
	if (s && s->n)
		ev->pc = s->pc[0]; // the go statement's return address
	emit(ev, s);
	return 0;
}
