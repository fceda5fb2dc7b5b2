// The records the probes share with the agent: bpf2go generates their Go
// twins (-type), and internal/uprobe's layout tests pin internal/event's
// decoder to them through the object's BTF. Part of ctxwatch.c.
#ifndef CTXWATCH_WIRE_H
#define CTXWATCH_WIRE_H

#define MAX_WALK 24      // context chain levels followed before giving up
#define STACK_DEPTH 16   // user frames captured per event
#define MAX_SPANS 4      // spans of the trace a goroutine started, for scope
#define MAX_KEYS 4       // user trace keys (--trace-key)
#define TRACE_LEN 32     // bytes of trace identity kept
#define KEY_STR_LEN 32   // longest string key matched
#define MAX_RANGES 4096  // user code text ranges
#define RANGE_STEPS 13   // binary search steps: 2^13 > MAX_RANGES

enum event_type {
	EV_SPAWN = 1,        // a goroutine with a trace in scope started another
	EV_FIRST_CHECK = 2,  // an inheriting goroutine's first judged check
	EV_DROPPED = 3,      // an owner checked with no trace, trace in scope
	EV_OVERWRITTEN = 4,  // WithValue put a different trace under the same key
	EV_STALE_PARENT = 5, // a span started on an ended span this goroutine started
	EV_LOG = 6,          // a log record written by a goroutine with a trace in scope
	EV_HANDOFF = 7,      // a goroutine received a channel element sent with a trace in scope
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
} __attribute__((aligned(8))); // compared a word at a time (trace_diff)

struct gstate {
	struct trace t;
	__u64 cancel;           // nearest cancelable ancestor (*cancelCtx), 0 = none
	__u64 spans[MAX_SPANS]; // *recordingSpan of t started here or by the parent
	// mine[i]: spans[i] was started on this goroutine (the SDK's tracer
	// Start stored it), tagged with its span id (span_tag); 0 when it was
	// inherited or re-attached. For stale-parent.
	__u32 mine[MAX_SPANS];
	__u64 spawn_ns;
	__u32 flags;
	__u32 nspans;
};

struct event {
	__u64 ktime_ns;
	__u64 goid;
	__u64 parent_goid; // EV_SPAWN: the spawner; EV_HANDOFF: the sender
	__u64 pc;          // EV_SPAWN: gopc; EV_HANDOFF: the send's return address; checks: the probed function's address
	__u64 spawn_ns;    // checks of inheritors: when the goroutine was spawned
	__u32 tgid;
	__u8 type;
	__u8 outcome;
	__u8 nstack;
	__u8 _pad;
	struct trace t;     // the trace in scope (inherited or owned); stale-parent: the ended parent
	struct trace other; // new-root/dropped/overwritten: the other trace; stale-parent: the new span
	__u64 stack[STACK_DEPTH];
};

struct range {
	__u64 start, end;
};

#endif // CTXWATCH_WIRE_H
