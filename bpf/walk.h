// The context walk: from a Context to the trace it carries, through the
// parent chain, with the keys and OTel span types the agent configured.
// Part of ctxwatch.c, after its configuration and maps.
#ifndef CTXWATCH_WALK_H
#define CTXWATCH_WALK_H

// The context walk runs as global functions (find_value, walk_step),
// verified once per program: inlined, each of a walk's outcomes went on
// through the rest of its caller as a path of its own, and the verifier
// followed all of them (6.18, TestVerifiedInstructions: 1,182,905
// instructions verified in all with the walk and stack.h's user_pc
// inlined, 108,436 with them global, 83,414 now). A global function
// returns a scalar and takes no pointer on 5.10, so what the walk finds,
// and what it reads on the way, is in a slot of the CPU it runs on.
// Uprobe programs run with migration, not preemption, disabled: another
// task's program on this CPU can take the slot while this one is
// preempted. So whoever starts using the slot takes a new sequence
// number, and whoever reads a result checks the number after reading; a
// changed number means "unknown", never a verdict.
struct found {
	__u64 seq;
	struct walk w;
	// Scratch: find_value's node (valueCtx{Context, key, val any}) and
	// context being walked, and the bytes value_is and trace_value read.
	// In the slot, not on the stack: a call chain's frames share 512
	// bytes, and with_value leaves about 100 to the walk and the key
	// compare.
	struct iface v[3], c;
	__u64 typ;
	__u64 buf[KEY_STR_LEN / 8];
	__u32 cancel_seen; // find_value: w.cancel is set, or cancellation stopped
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct found);
} founds SEC(".maps");

static __always_inline struct found *found_slot(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&founds, &zero);
}

// claim takes the slot: a new sequence number, 0 when there is no slot.
static __always_inline __u64 claim(struct found *f)
{
	if (!f)
		return 0;
	__u64 seq = f->seq + 1;
	f->seq = seq;
	return seq;
}

// still says whether the slot is still under sequence number seq: read
// after what was read from it.
static __always_inline int still(struct found *f, __u64 seq)
{
	asm volatile("" ::: "memory"); // the slot's fields before its number
	return seq && f->seq == seq;
}

// value_is says whether the key at kdata has user key i's value: its text
// for a string key or a named string type (the data word points at the
// string header {ptr, len}), its number for a named integer type (at the
// boxed value; small integers in runtime.staticuint64s); -1 when the slot
// it reads into, claimed as seq, was taken meanwhile.
static __always_inline int value_is(struct found *f, __u32 i, __u64 kdata, __u64 seq)
{
	__u64 *buf = f->buf;
	if (keys_kind[i] == KEY_TYPE_INT) {
		if (bpf_probe_read_user(buf, 8, (void *)kdata) < 0)
			return 0;
		int match = (buf[0] & keys_int_mask[i]) == keys_int[i];
		return still(f, seq) ? match : -1;
	}
	if (bpf_probe_read_user(buf, 16, (void *)kdata) < 0)
		return 0;
	__u64 ptr = buf[0], len = buf[1];
	if (!still(f, seq))
		return -1;
	if (len != keys_str_len[i] || len > KEY_STR_LEN)
		return 0;
	if (len == 0)
		return 1;
#pragma unroll
	for (int w = 0; w < KEY_STR_LEN / 8; w++)
		buf[w] = 0;
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
	return still(f, seq) ? diff == 0 : -1;
}

// user_key returns i+1 for user key i, -1 for any other key, -2 when that
// cannot be told (the slot was taken). A key compared by its value claims
// the slot, unless the caller holds it as seq (not 0). A global function,
// verified once: inlined into the context walk's 24 steps, a named string
// type's compare took 6.18's verifier past 1M instructions.
__attribute__((noinline)) int user_key(__u64 ktype, __u64 kdata, __u64 seq)
{
	struct found *f = found_slot();
	if (!f)
		return -2;
	for (__u32 i = 0; i < MAX_KEYS && i < n_keys; i++) {
		__u8 kind = keys_kind[i];
		__u64 want = kind == KEY_STRING ? typ_string : keys_type[i];
		if (ktype != want)
			continue;
		if (kind == KEY_TYPE)
			return i + 1;
		if (!seq)
			seq = claim(f);
		int m = value_is(f, i, kdata, seq);
		if (m < 0)
			return -2;
		if (m)
			return i + 1;
	}
	return -1;
}

// key_index returns 0 for the OTel span key, i+1 for user key i, -1 for
// any other key, -2 when that cannot be told. Only a trace key's value is
// ever read.
static __always_inline int key_index(__u64 ktype, __u64 kdata, __u64 seq)
{
	if (ktype == 0)
		return -1;
	if (typ_span_key && ktype == typ_span_key)
		return 0;
	if (n_keys == 0)
		return -1;
	return user_key(ktype, kdata, seq);
}

// span_context reads a SpanContext (trace id at 0, span id at 16), by way
// of buf (3 words).
static __always_inline int span_context(struct trace *t, __u64 addr, __u64 *buf)
{
	if (read(buf, 24, addr) < 0)
		return -1;
	__u8 *sc = (__u8 *)buf;
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

// trace_value decodes the value held under trace key k, reading by way of
// buf (3 words). Returns the carry state; *span gets the *recordingSpan
// when the value is one.
static __always_inline int trace_value(struct trace *t, int k, __u64 vtype, __u64 vdata, __u64 *span, __u64 *buf)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->key = k;
	*span = 0;
	if (k == 0) {
		if (vtype == typ_recording_span && vtype) {
			if (span_context(t, vdata + off_rs_sc, buf) < 0)
				return CARRY_UNKNOWN;
			if (read(buf, 16, vdata + off_rs_parent) < 0)
				return CARRY_UNKNOWN;
			t->root = !(buf[0] | buf[1]);
			*span = vdata;
		} else if (vtype == typ_nonrecording_span && vtype) {
			if (span_context(t, vdata + off_nrs_sc, buf) < 0)
				return CARRY_UNKNOWN;
		} else if (vtype == typ_sdk_nonrecording_span && vtype) {
			// The SDK's span of an unsampled trace: a trace all the same.
			if (span_context(t, vdata + off_sdk_nrs_sc, buf) < 0)
				return CARRY_UNKNOWN;
		} else {
			return CARRY_UNKNOWN; // a Span implementation we do not know
		}
		return t->len ? CARRY_TRACE : CARRY_NONE;
	}
	__u64 ptr = vdata, len = 16; // anything else: its first bytes
	if (vtype == typ_string || vtype == typ_bytes) {
		if (read(buf, 16, vdata) < 0)
			return CARRY_UNKNOWN;
		ptr = buf[0];
		len = buf[1];
	}
	if (len == 0)
		return CARRY_NONE;
	__u32 n = len > TRACE_LEN ? TRACE_LEN : len;
	if (read(t->id, n & (TRACE_LEN - 1) ? n & (TRACE_LEN - 1) : TRACE_LEN, ptr) < 0)
		return CARRY_UNKNOWN;
	t->len = n;
	return CARRY_TRACE;
}

// walk_step takes one step of find_value's walk, at the context in the
// slot (f->c): 1 when the walk is over (the slot's w says how), 0 when f->c
// is now the parent to go on with. A global function, verified once per
// program: as the body of find_value's loop, each of its paths was
// followed at each of the 24 steps (6.18, TestVerifiedInstructions:
// ctx_arg0 21,541 instructions verified so, 7,568 now). For the same
// reason what a step keeps is in the slot, not in locals the verifier
// tracks: cancel_seen as a local made two states of every step.
__attribute__((noinline)) int walk_step(__u64 seq, int want)
{
	struct found *f = found_slot();
	if (!f)
		return 1;
	struct walk *w = &f->w;
	// Reads of one or two words land on the stack, not in the slot: a
	// read into map memory costs about 100 ns more (bench table 1a). The
	// valueCtx node's 48 bytes do not fit: with_value's call chain is at
	// 5.10's 512 bytes with this frame at 64.
	struct iface next;
	__u64 t;
	if (f->c.tab == 0) {
		w->carry = CARRY_NONE; // nil Context
		return 1;
	}
	// The itab's type (runtime.itab: Inter at 0, Type at 8, Go 1.17 to
	// 1.27), not read for the two static itabs met most: a read of the
	// target is dearer than the rest of a step (bench: withvalue-traced).
	// A run-time itab of the same type is read, as before. An itab the
	// binary lacks is 0, which c.tab is not here.
	if (f->c.tab == itab_value_ctx)
		f->typ = typ_value_ctx;
	else if (f->c.tab == itab_cancel_ctx)
		f->typ = typ_cancel_ctx;
	else if (read(&t, sizeof(t), f->c.tab + 8) < 0)
		return 1;
	else
		f->typ = t;
	__u64 typ = f->typ;
	if (typ == typ_value_ctx) {
		struct iface *v = f->v;
		if (read(v, sizeof(f->v), f->c.data) < 0)
			return 1;
		int k = key_index(v[1].tab, v[1].data, seq);
		if (k == -2)
			return 1; // the slot was taken: unknown
		if (k >= 0 && (want < 0 || k == want)) {
			w->carry = trace_value(&w->t, k, v[2].tab, v[2].data, &w->span, f->buf);
			return 1;
		}
		f->c = v[0];
		return 0;
	}
	if (typ == typ_cancel_ctx || typ == typ_timer_ctx || (typ_after_func_ctx && typ == typ_after_func_ctx)) {
		if (!f->cancel_seen) {
			w->cancel = f->c.data;
			f->cancel_seen = 1;
		}
	} else if (typ_without_cancel_ctx && typ == typ_without_cancel_ctx) {
		f->cancel_seen = 1; // cancellation stops here
	} else if (typ_stop_ctx && typ == typ_stop_ctx) {
	} else if (typ == typ_background_ctx || typ == typ_todo_ctx || typ == typ_empty_ctx) {
		w->carry = CARRY_NONE;
		return 1;
	} else if (!bpf_map_lookup_elem(&ctx_wrappers, &typ)) {
		return 1; // not a type of package context, nor a wrapper of one
	}
	if (read(&next, sizeof(next), f->c.data) < 0)
		return 1;
	f->c = next;
	return 0;
}

// find_value follows a Context's parent chain to the first value under a
// trace key (only key want when want >= 0), noting the nearest cancelable
// ancestor on the way, into the CPU's found slot. Types outside package
// context cannot be walked: the answer is then CARRY_UNKNOWN, never "no
// trace". It returns the sequence number it claimed the slot with (0: no
// slot).
__attribute__((noinline)) __u64 find_value(__u64 tab, __u64 data, int want)
{
	struct found *f = found_slot();
	__u64 seq = claim(f);
	if (!f)
		return 0;
	struct walk *w = &f->w;
	w->cancel = 0;
	w->span = 0;
	w->carry = CARRY_UNKNOWN;
	w->t.len = 0;
	f->c.tab = tab;
	f->c.data = data;
	f->cancel_seen = 0;
	for (int i = 0; i < MAX_WALK; i++)
		if (walk_step(seq, want))
			return seq;
	count(STAT_WALK_DEEP);
	return seq;
}

// walk_ctx is find_value, its result copied to w.
static __always_inline void walk_ctx(struct walk *w, struct iface c, int want)
{
	__u64 seq = find_value(c.tab, c.data, want);
	struct found *f = found_slot();
	if (!f) {
		w->carry = CARRY_UNKNOWN;
		return;
	}
	*w = f->w;
	if (!still(f, seq))
		w->carry = CARRY_UNKNOWN;
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

#endif // CTXWATCH_WALK_H
