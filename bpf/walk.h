// The context walk: from a Context to the trace it carries, through the
// parent chain, with the keys and OTel span types the agent configured.
// Part of ctxwatch.c, after its configuration and maps.
#ifndef CTXWATCH_WALK_H
#define CTXWATCH_WALK_H

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
		// The itab's type (runtime.itab: Inter at 0, Type at 8, Go 1.17
		// to 1.27), not read for the two static itabs met most: a read of
		// the target is dearer than the rest of a step (bench: withvalue-
		// traced). A run-time itab of the same type is read, as before.
		// An itab the binary lacks is 0, which c.tab is not here.
		__u64 typ;
		if (c.tab == itab_value_ctx)
			typ = typ_value_ctx;
		else if (c.tab == itab_cancel_ctx)
			typ = typ_cancel_ctx;
		else if (read(&typ, sizeof(typ), c.tab + 8) < 0)
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

#endif // CTXWATCH_WALK_H
