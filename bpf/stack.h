// The stack walk: the goroutine's return addresses by frame pointers, and
// whether user code is among them. Part of ctxwatch.c, after its
// configuration and maps.
#ifndef CTXWATCH_STACK_H
#define CTXWATCH_STACK_H

// user_pc says whether pc is in user code: a binary search of the agent's
// sorted ranges. A global function, verified once per program: inlined,
// each of the search's outcomes was a state of its own at every frame of a
// stack walk, and a real service's ranges made that most of the verifier's
// work at attach (6.18, Jaeger v2 and its 75 ranges, measured when the
// context walk had just become a global function and before walk_step:
// 612,186 instructions verified in all with user_pc inlined, 148,747 as a
// global function; spawn 55,714 and 5,380).
__attribute__((noinline)) int user_pc(__u64 pc)
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
	// An event's two traces, put here for report_pair (ctxwatch.c): len 0
	// when none is waiting. walk_stack leaves them alone.
	struct trace t, other;
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
// It returns whether there is a caller to record: none once a frame of
// user code is recorded, when upto_user.
static __always_inline int frame(struct stack *s, int i, __u64 *pc, __u64 *fp, int upto_user)
{
	if (*pc == 0)
		return 0;
	s->pc[i & (STACK_DEPTH - 1)] = *pc;
	s->n = i + 1;
	if (!s->user && user_pc(*pc - 1))
		s->user = 1;
	if (upto_user && s->user)
		return 0;
	__u64 rec[2];
	if (*fp == 0 || bpf_probe_read_user(rec, sizeof(rec), (void *)*fp) < 0)
		return 0;
	*fp = rec[0];
	*pc = rec[1];
	return 1;
}

// stack_slot returns this thread's slot in stacks, made if it has none.
static __always_inline struct stack *stack_slot(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct stack *s = bpf_map_lookup_elem(&stacks, &tid);
	if (s)
		return s;
	bpf_map_update_elem(&stacks, &tid, (void *)&zero_stack, BPF_ANY);
	return bpf_map_lookup_elem(&stacks, &tid);
}

// walk_stack captures the calling thread's goroutine stack into its slot in
// stacks, from a return address and a frame pointer, following Go's frame
// pointer chain ([fp] = caller's fp, [fp+8] = return address). It returns 1
// when a frame of user code is on it, 0 when none is, -1 when there is no
// slot. A global function, so the verifier checks it once, not once per
// caller: inlined into each place an event is sent, its 16 frames times a
// 13-step search made with_value too big for 5.10's verifier (1M insns).
// With upto_user it stops at the first frame of user code: for an event
// whose frames the agent does not read, only whether user code is on the
// stack (a first check that propagated), each frame more is a read of the
// target saved (a handler deep in a server's stack: a dozen).
__attribute__((noinline)) int walk_stack(__u64 first, __u64 fp, int upto_user)
{
	struct stack *s = stack_slot();
	if (!s)
		return -1;
	s->n = 0;
	s->user = 0;
	// Unrolled by hand: as a loop, clang enters it from the middle, and
	// 5.10's verifier refuses the fall-through that closes it as a
	// back-edge (bpf/cfg_test.go checks for that).
	__u64 pc = first;
	int u = upto_user;
	if (frame(s, 0, &pc, &fp, u) && frame(s, 1, &pc, &fp, u) && frame(s, 2, &pc, &fp, u) && frame(s, 3, &pc, &fp, u) &&
	    frame(s, 4, &pc, &fp, u) && frame(s, 5, &pc, &fp, u) && frame(s, 6, &pc, &fp, u) && frame(s, 7, &pc, &fp, u) &&
	    frame(s, 8, &pc, &fp, u) && frame(s, 9, &pc, &fp, u) && frame(s, 10, &pc, &fp, u) &&
	    frame(s, 11, &pc, &fp, u) && frame(s, 12, &pc, &fp, u) && frame(s, 13, &pc, &fp, u) && frame(s, 14, &pc, &fp, u))
		frame(s, 15, &pc, &fp, u);
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

// ret_slot is where an entry probe's return address is: the stack slot
// at RSP (amd64), or the address itself (LR, arm64). Read at each use
// from a ctx that clang takes as fresh: a value kept across with_value's
// calls takes a slot of its stack, which 5.10 holds to 512 bytes with its
// callees', and ctx+off kept instead is a pointer the verifier refuses.
static __always_inline __u64 ret_slot(REGS *ctx)
{
	asm volatile("" : "+r"(ctx));
#if defined(__TARGET_ARCH_arm64)
	return ctx->regs[30];
#else
	return ctx->rsp;
#endif
}

// user_stack captures the stack at an entry probe, where [SP] (amd64) or LR
// (arm64) is the return address into the caller and the frame pointer is
// still the caller's. It returns the stack if user code is on it: a check
// made only by library code is not judged. With upto_user, the stack ends
// at its first user frame (see walk_stack).
static __always_inline struct stack *user_stack_upto(REGS *ctx, int upto_user)
{
	__u64 ret = ret_slot(ctx);
#if !defined(__TARGET_ARCH_arm64)
	if (read(&ret, sizeof(ret), ret) < 0)
		return 0;
#endif
	if (walk_stack(ret, GO_FP(ctx), upto_user) != 1)
		return 0;
	return this_stack();
}

static __always_inline struct stack *user_stack(REGS *ctx)
{
	return user_stack_upto(ctx, 0);
}

#endif // CTXWATCH_STACK_H
