// Channel hand-offs (lost-at-handoff): a channel element sent from user
// code by a goroutine with a trace in scope hands the trace to the
// goroutine that receives it in user code. Part of ctxwatch.c, after the
// programs it shares helpers with.
//
// Go runtime facts relied on (runtime/chan.go and select.go, Go 1.17 to
// 1.27): a plain send, and a one-case select with default, enter
// chansend(c, ep, block, callerpc) from chansend1 or selectnbsend; a
// receive, a range loop and a one-case select with default enter
// chanrecv(c, ep, block) from chanrecv1, chanrecv2 or selectnbrecv. Each
// wrapper has its own frame, called by the user's code. A multi-case
// select calls selectgo from its own function (see select_enter). Elements
// are FIFO per channel: a send goes to the first waiting receiver
// (recvq.first, passing over a select another case has won: g.selectDone),
// else into buffer slot sendx, else the sender waits in sendq with its
// element (sudog.elem); a receive takes slot recvx, or, unbuffered, the
// first waiting sender's element; a receive from a full buffer with a
// waiting sender moves that sender's element into the slot just taken. A
// parked receiver's frames, from its g.sched.bp (gopark's frame or its
// caller's, by release), pass the return into chanrecv, or selectgo for a
// select, within three frames. Offsets of hchan, sudog and g.selectDone
// come from the agent (internal/layout's table, or DWARF; sudog.elem is
// elem.vu from Go 1.26). Not seen: a select's send cases, and a select's
// receive from a buffer or a waiting sender where the agent placed no
// select_result probe (a library's select).
#ifndef CTXWATCH_CHAN_H
#define CTXWATCH_CHAN_H

// Where a traced element waits: a buffer slot, or (HANDOFF_G | goid) the
// element of a sender blocked in sendq.
#define HANDOFF_G (1ULL << 63)

struct handoff_key {
	__u64 tgid;
	__u64 hchan;
	__u64 at;
};

struct handoff {
	struct gstate st;   // what the receiver inherits
	__u64 parent_goid;  // the sender
	__u64 word;         // the element's first bytes (elem_word): a stale entry is told by them
	__u64 stack[STACK_DEPTH]; // the send's stack, the user's send line first
	__u32 nstack;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct handoff_key);
	__type(value, struct handoff);
} handoffs SEC(".maps");

// Channels that hold traced elements, with how many: a receive outside
// them costs this one lookup.
struct chan_key {
	__u64 tgid;
	__u64 hchan;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct chan_key);
	__type(value, __u32);
} chans SEC(".maps");

volatile const struct handoff zero_handoff;

// How many entries chans has had put in and not deleted: never below the
// entries it holds (the LRU's evictions are not counted off). Zero, and a
// select costs no lookup (select_enter, select_result).
__u64 traced_chans;

static __always_inline int chan_word(__u64 c, __u64 *v)
{
	return read(v, sizeof(*v), c);
}

// elem_word sums up the first bytes (at most 16) of an element of size
// size. Two words, not one: a job struct that starts with a context
// starts with its itab, the same for every context of that type; the data
// word after it tells one request's context from another's.
static __always_inline __u64 elem_word(__u64 p, __u64 size)
{
	__u64 w[2] = {};
	if (!p || !size)
		return 0;
	if (size >= 16)
		bpf_probe_read_user(w, 16, (void *)p);
	else if (size >= 8)
		bpf_probe_read_user(w, 8, (void *)p);
	else if (size >= 4)
		bpf_probe_read_user(w, 4, (void *)p);
	else
		bpf_probe_read_user(w, 1, (void *)p);
	return w[0] ^ ((w[1] << 29) | (w[1] >> 35)) ^ (w[1] * 0x9e3779b97f4a7c15ULL);
}

// called_by_user says whether the channel operation whose entry (or
// return) probe captured stack s was called by user code: frame depth of
// s returns into it. For chansend and chanrecv, s->pc[0] returns into the
// runtime's wrapper (chansend1, chanrecv1, ...), s->pc[1] into its caller:
// depth 1. The compiler calls selectgo from the select's own function:
// depth 0.
static __always_inline int called_by_user(struct stack *s, int depth)
{
	return s && s->n > (__u32)depth && user_pc(s->pc[depth & 1] - 1);
}

// parked_by_user says whether the parked receiver whose frames rs holds
// (from its g.sched.bp) waits in a receive called by user code: the frame
// after the return into chanrecv is the wrapper's (chanrecv1, chanrecv2),
// the next its caller's; a select's (sel) returns into selectgo, and the
// frame after it is the select's own function, user code or not. Where
// g.sched.bp points (gopark's frame, or its caller's) has differed across
// releases: the return into chanrecv or selectgo is looked for among the
// first frames.
static __always_inline int parked_by_user(struct stack *rs, int sel)
{
	if (!rs)
		return 0;
	__u64 lo = sel ? txt_selectgo : txt_chanrecv, hi = sel ? txt_selectgo_end : txt_chanrecv_end;
	int up = sel ? 1 : 2;
#pragma unroll
	for (int j = 0; j < 3; j++)
		if (rs->pc[j] > lo && rs->pc[j] <= hi)
			return (__u32)(j + up) < rs->n && user_pc(rs->pc[(j + up) & (STACK_DEPTH - 1)] - 1);
	return 0;
}

// hand_to gives goroutine g (of process tgid) the state src that a send
// handed on, with the send's stack, as a spawn gives its child: it is
// pending, judged at its next trace-bearing act. A receiver that owns the
// same trace has it already; one that owns another in scope, with a span of
// it open or a cancelable ancestor not canceled (a handler waiting for its
// worker's result, a request's context), is inside its own unit of work,
// and keeps it. Otherwise the element is its next unit of work: a trace
// set on a context with neither (a worker's WithValue on Background, with
// custom keys) never leaves scope, so scope alone cannot say.
// ev holds the send's stack; hand_to submits or discards it.
static __always_inline void hand_to(__u32 tgid, __u64 g, struct gstate *src, struct event *ev)
{
	__u64 rkey;
	if (gkey_of(tgid, g, &rkey) < 0)
		goto discard;
	struct gstate *rst = bpf_map_lookup_elem(&goroutines, &rkey);
	if (rst && (rst->flags & G_OWNS) && !(rst->flags & G_PENDING) &&
	    (same_trace(&rst->t, &src->t) || ((rst->nspans || rst->cancel) && in_scope(rst))))
		goto discard;
	struct gstate cst = *src;
	cst.flags = G_INHERITS | G_PENDING;
	__builtin_memset(cst.mine, 0, sizeof(cst.mine)); // the sender's spans are not the receiver's
	cst.spawn_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&goroutines, &rkey, &cst, BPF_ANY) < 0) {
		count(STAT_STATE_FULL);
		goto discard;
	}
	if (!rst)
		count(STAT_STATE_NEW);
	ev->goid = rkey & GOID_MASK;
	ev->tgid = tgid;
	ev->t = cst.t;
	ev->spawn_ns = ev->ktime_ns = cst.spawn_ns;
	ev->pc = ev->stack[0];
	emit(ev, 0);
	return;
discard:
	bpf_ringbuf_discard(ev, 0);
}

// chan_count adds d to the traced elements channel ck holds, and keeps
// traced_chans.
static __always_inline void chan_count(struct chan_key *ck, int d)
{
	__u32 *n = bpf_map_lookup_elem(&chans, ck);
	if (!n) {
		if (d > 0) {
			__u32 one = 1;
			if (bpf_map_update_elem(&chans, ck, &one, BPF_NOEXIST) == 0)
				__sync_fetch_and_add(&traced_chans, 1);
		}
		return;
	}
	if (d > 0) {
		__sync_fetch_and_add(n, 1);
	} else if (*n <= 1) {
		if (bpf_map_delete_elem(&chans, ck) == 0)
			__sync_fetch_and_add(&traced_chans, -1);
	} else {
		__sync_fetch_and_add(n, -1);
	}
}

// runtime.chansend(c *hchan, ep unsafe.Pointer, block bool, callerpc
// uintptr): c in RAX, ep in RBX, block in CL. Outside a trace it costs the
// goroutine's state lookup (entered), as every probe does.
SEC("uprobe/chan_send")
int chan_send(REGS *ctx)
{
	__u32 tgid;
	__u64 key;
	struct gstate *st = entered(ctx, &tgid, &key);
	if (!st || !off_c_buf)
		return 0;
	__u64 c = GO_ARG0(ctx), ep = GO_ARG1(ctx);
	int block = GO_ARG2(ctx) & 0xff;
	if (!c)
		return 0;
	if (!in_scope(st)) {
		if (!(st->flags & G_PENDING))
			forget(key);
		return 0;
	}
	__u64 qcount, dataqsiz, sendx, recvq, elemsize = 0;
	__u32 closed = 0;
	if (chan_word(c + off_c_qcount, &qcount) < 0 || chan_word(c + off_c_dataqsiz, &dataqsiz) < 0 ||
	    chan_word(c + off_c_sendx, &sendx) < 0 || chan_word(c + off_c_recvq, &recvq) < 0)
		return 0;
	if (read(&closed, sizeof(closed), c + off_c_closed) < 0 || closed)
		return 0; // the send panics
	// An element of size zero (chan struct{}: a semaphore's token, a start
	// or done signal) carries no work to judge.
	if (read(&elemsize, 2, c + off_c_elemsize) < 0 || !elemsize)
		return 0;
	struct stack *s = user_stack(ctx);
	if (!called_by_user(s, 1))
		return 0; // a library's send (net/http, errgroup) hands nothing
	if (recvq) {
		// Straight to the first waiting receiver, if it waits in a
		// receive or a select called by user code.
		__u64 rg = 0, bp = 0;
		__u8 sel = 0;
		if (read(&rg, sizeof(rg), recvq + off_sg_g) < 0 || !rg)
			return 0;
		if (read(&sel, sizeof(sel), recvq + off_sg_is_select) < 0)
			return 0;
		if (sel) {
			// A select waits on each of its channels: the first send
			// (or close) to reach it wins it, g.selectDone set, and
			// the runtime's dequeue passes over it after. Won already:
			// not handed (another receiver, further in recvq, takes
			// the element). Won by another case after this read: the
			// trace goes to a goroutine that did not take the element.
			// A g's selectDone is written first when a select of it is
			// won: before, its page may never have been touched (a g
			// that straddles two pages), and the read fails where the
			// target would read zero.
			__u32 won = 0;
			if (!off_g_select_done || !txt_selectgo)
				return 0;
			if (bpf_probe_read_user(&won, sizeof(won), (void *)(rg + off_g_select_done)) < 0)
				won = 0;
			if (won)
				return 0;
		}
		struct event *ev = new_event(EV_HANDOFF, key, st, 0);
		if (!ev)
			return 0;
		ev->parent_goid = key & GOID_MASK;
		__builtin_memcpy(ev->stack, &s->pc[1], sizeof(ev->stack) - sizeof(ev->stack[0]));
		ev->nstack = s->n > STACK_DEPTH ? STACK_DEPTH - 1 : s->n - 1;
		// The receiver's stack, from the frame its park saved.
		__u64 rec[2] = {};
		if (read(&bp, sizeof(bp), rg + off_g_sched_bp) < 0 || read(rec, sizeof(rec), bp) < 0 ||
		    walk_stack(rec[1], rec[0], 0) < 0) {
			bpf_ringbuf_discard(ev, 0);
			return 0;
		}
		if (!parked_by_user(this_stack(), sel)) {
			bpf_ringbuf_discard(ev, 0);
			return 0;
		}
		hand_to(tgid, rg, st, ev);
		return 0;
	}
	struct handoff_key hk = {tgid, c, 0};
	if (qcount < dataqsiz)
		hk.at = sendx;
	else if (block)
		hk.at = HANDOFF_G | (key & GOID_MASK);
	else
		return 0; // a select with default that does not send
	int fresh = bpf_map_update_elem(&handoffs, &hk, (void *)&zero_handoff, BPF_NOEXIST) == 0;
	if (!fresh && bpf_map_update_elem(&handoffs, &hk, (void *)&zero_handoff, BPF_ANY) < 0) {
		count(STAT_STATE_FULL);
		return 0;
	}
	struct handoff *h = bpf_map_lookup_elem(&handoffs, &hk);
	if (!h)
		return 0;
	h->st = *st;
	h->parent_goid = key & GOID_MASK;
	h->word = elem_word(ep, elemsize);
	__builtin_memcpy(h->stack, &s->pc[1], sizeof(h->stack) - sizeof(h->stack[0]));
	h->nstack = s->n > STACK_DEPTH ? STACK_DEPTH - 1 : s->n - 1;
	if (fresh) {
		struct chan_key ck = {tgid, c};
		chan_count(&ck, 1);
	}
	return 0;
}

// take hands entry hk to the receiving goroutine if the element it takes
// starts with word and the receive was called by user code (its stack is
// walked only then: depth as for called_by_user; below 0, the probe is in
// user code itself), and forgets the entry either way.
static __always_inline void take(REGS *ctx, __u32 tgid, struct handoff_key *hk, __u64 word, int depth)
{
	struct handoff *h = bpf_map_lookup_elem(&handoffs, hk);
	if (!h)
		return;
	struct chan_key ck = {hk->tgid, hk->hchan};
	int user = h->word == word && (depth < 0 || called_by_user(user_stack(ctx), depth));
	struct event *ev = 0;
	struct gstate st;
	if (user) {
		ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
		if (!ev)
			count(STAT_EVENTS_LOST);
	}
	if (ev) {
		__builtin_memset(ev, 0, sizeof(*ev));
		ev->type = EV_HANDOFF;
		ev->parent_goid = h->parent_goid;
		__builtin_memcpy(ev->stack, h->stack, sizeof(ev->stack));
		ev->nstack = h->nstack > STACK_DEPTH ? STACK_DEPTH : h->nstack;
		st = h->st;
	}
	// The one receive that deletes it hands it: two receivers racing
	// for the same slot hand it once.
	int mine = bpf_map_delete_elem(&handoffs, hk) == 0;
	if (mine)
		chan_count(&ck, -1);
	if (!ev)
		return;
	if (!mine) {
		bpf_ringbuf_discard(ev, 0);
		return;
	}
	hand_to(tgid, GO_G(ctx), &st, ev);
}

// What a receive from a channel takes, found before it runs: the entry
// of handoffs for the element (a buffer slot recvx, or HANDOFF_G | the
// goid of the first waiting sender, unbuffered), with the element's
// elem_word, and, from a full buffer, the first waiting sender whose entry
// moves into the slot just taken.
struct recv_plan {
	__u64 at;
	__u64 word;
	__u64 from; // HANDOFF_G | the sender's goid, or 0
	__u64 take; // at and word are set
};

// plan_recv fills p for a receive from channel c, read without its lock,
// and returns p->take. Otherwise the receive waits (the sender hands it on)
// or returns a closed channel's zero value: nothing taken.
static __always_inline int plan_recv(__u64 c, struct recv_plan *p)
{
	__u64 qcount, dataqsiz, recvx, sendq, buf, elemsize = 0;
	p->take = 0;
	p->from = 0;
	if (chan_word(c + off_c_qcount, &qcount) < 0 || chan_word(c + off_c_dataqsiz, &dataqsiz) < 0 ||
	    chan_word(c + off_c_recvx, &recvx) < 0 || chan_word(c + off_c_sendq, &sendq) < 0 ||
	    chan_word(c + off_c_buf, &buf) < 0 || read(&elemsize, 2, c + off_c_elemsize) < 0)
		return 0;
	__u64 sgoid = 0, selem = 0;
	if (sendq) {
		__u64 sg = 0;
		if (read(&sg, sizeof(sg), sendq + off_sg_g) < 0 || !sg || goid_of(sg, &sgoid) < 0)
			sendq = 0;
		else if (read(&selem, sizeof(selem), sendq + off_sg_elem) < 0)
			sendq = 0;
	}
	if (dataqsiz && qcount > 0) {
		p->at = recvx;
		p->word = elem_word(buf + recvx * elemsize, elemsize);
		p->take = 1;
		if (qcount >= dataqsiz && sendq)
			p->from = HANDOFF_G | (sgoid & GOID_MASK);
	} else if (!dataqsiz && sendq) {
		p->at = HANDOFF_G | (sgoid & GOID_MASK);
		p->word = elem_word(selem, elemsize);
		p->take = 1;
	}
	return p->take;
}

// recv_took does what plan p says for a receive from c that ran (depth as
// for called_by_user): the entry taken is handed, and a waiting sender's
// element moved into the slot just taken takes its entry there.
static __always_inline void recv_took(REGS *ctx, __u32 tgid, __u64 c, struct recv_plan *p, int depth)
{
	struct handoff_key hk = {tgid, c, p->at};
	take(ctx, tgid, &hk, p->word, depth);
	if (!p->from)
		return;
	struct handoff_key from = {tgid, c, p->from};
	struct handoff *h = bpf_map_lookup_elem(&handoffs, &from);
	if (h && bpf_map_update_elem(&handoffs, &hk, h, BPF_ANY) == 0)
		bpf_map_delete_elem(&handoffs, &from);
}

// runtime.chanrecv(c *hchan, ep unsafe.Pointer, block bool): c in RAX.
// A channel that holds no traced element costs the one lookup of chans.
SEC("uprobe/chan_recv")
int chan_recv(REGS *ctx)
{
	__u32 tgid = ours();
	if (!tgid)
		return 0;
	hit();
	struct chan_key ck = {tgid, GO_ARG0(ctx)};
	if (!ck.hchan || !bpf_map_lookup_elem(&chans, &ck))
		return 0;
	struct recv_plan p;
	if (plan_recv(ck.hchan, &p))
		recv_took(ctx, tgid, ck.hchan, &p, 1);
	return 0;
}

// A multi-case select: runtime.selectgo(cas0 *scase, order0 *uint16, pc0
// *uintptr, nsends, nrecvs int, block bool) (int, bool), Go 1.17 to 1.27.
// cas0 is an array of scase {c *hchan; elem unsafe.Pointer}, the nsends
// send cases first, then the nrecvs receive cases; it returns the chosen
// case's index (-1: default) and, for a receive, whether a value came.
// Which case it takes is known only at its return, and what the receive
// took only before it ran: a probe on the select's CALL of selectgo, in
// its own function, plans the receive of each of the first SELECT_CASES
// receive cases whose channel holds traced elements (plan_recv), kept by
// goroutine; a probe where that function then tests selectgo's results
// (select_result) does the plan of the case chosen (recv_took). Only
// selects of user code have these probes: a library's select costs
// nothing and hands nothing. A select woken from its park by a send was
// handed by that send (chan_send); its plans, made when its channels held
// nothing to take, are empty. Send cases hand nothing.
#define SELECT_CASES 4

struct select_plan {
	__u64 call;   // where the select calls selectgo (as the probe saw it)
	__u64 nsends;
	__u64 c[SELECT_CASES];
	struct recv_plan p[SELECT_CASES];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); // gkey
	__type(value, struct select_plan);
} selects SEC(".maps");

// A select's CALL of runtime.selectgo, its arguments loaded: cas0 in RAX,
// nsends in RDI, nrecvs in RSI. While no channel holds a traced element it
// costs a read of traced_chans; else one lookup of chans per receive case
// looked at.
SEC("uprobe/select_enter")
int select_enter(REGS *ctx)
{
	__u32 tgid = ours();
	if (!tgid)
		return 0;
	hit();
	if (!traced_chans)
		return 0;
	__u64 cas0 = GO_ARG0(ctx), nsends = GO_ARG3(ctx), nrecvs = GO_ARG4(ctx), key;
	if (!cas0 || nsends > 65536 || gkey_of(tgid, GO_G(ctx), &key) < 0)
		return 0;
	struct select_plan sp;
	__builtin_memset(&sp, 0, sizeof(sp));
	int any = 0;
#pragma unroll
	for (int i = 0; i < SELECT_CASES; i++) {
		if ((__u64)i >= nrecvs)
			break;
		struct chan_key ck = {tgid, 0};
		if (read(&ck.hchan, sizeof(ck.hchan), cas0 + (nsends + i) * 16) < 0 || !ck.hchan ||
		    !bpf_map_lookup_elem(&chans, &ck))
			continue;
		sp.c[i] = ck.hchan;
		any |= plan_recv(ck.hchan, &sp.p[i]);
	}
	// A plan left by a select whose results were not seen (probes
	// detached in between) must not stand for this one.
	if (!any) {
		bpf_map_delete_elem(&selects, &key);
		return 0;
	}
	sp.call = GO_PC(ctx);
	sp.nsends = nsends;
	bpf_map_update_elem(&selects, &key, &sp, BPF_ANY);
	return 0;
}

// select_took runs where the select's function tests selectgo's results,
// still in their registers: the chosen case in RAX, whether a value came in
// BL. The plan is this select's if it was made at a call just before the
// probe (each probe's address as the kernel reports it: the instruction's,
// or one after it).
static __always_inline void select_took(REGS *ctx)
{
	__u32 tgid = ours();
	if (!tgid)
		return;
	hit();
	if (!traced_chans)
		return;
	__u64 key;
	if (gkey_of(tgid, GO_G(ctx), &key) < 0)
		return;
	struct select_plan *sp = bpf_map_lookup_elem(&selects, &key);
	if (!sp)
		return;
	__u64 i = GO_ARG0(ctx) - sp->nsends; // a send case or default: above SELECT_CASES
	int ok = (GO_ARG1(ctx) & 0xff) && i < SELECT_CASES && GO_PC(ctx) - sp->call < 128;
	struct recv_plan p = {};
	__u64 c = 0;
	if (ok) {
		p = sp->p[i & (SELECT_CASES - 1)];
		c = sp->c[i & (SELECT_CASES - 1)];
	}
	bpf_map_delete_elem(&selects, &key);
	if (ok && c && p.take)
		recv_took(ctx, tgid, c, &p, -1);
}

// The result probe on a jump, which the kernel emulates.
SEC("uprobe/select_result")
int select_result(REGS *ctx)
{
	select_took(ctx);
	return 0;
}

// The result probe on another instruction, single-stepped: its hits are
// counted apart.
SEC("uprobe/select_result_stepped")
int select_result_stepped(REGS *ctx)
{
	if (ours())
		hit_stepped();
	select_took(ctx);
	return 0;
}

#endif // CTXWATCH_CHAN_H
