// What the probes assume of the Go runtime and its ABI: registers, the g,
// interface values. Part of ctxwatch.c (one translation unit).
#ifndef CTXWATCH_GOABI_H
#define CTXWATCH_GOABI_H

// Go runtime facts relied on. Offsets and type addresses are not assumed
// here: the agent sets them (volatile const), from internal/layout's tables
// measured per Go release, or from the target's DWARF for a release they
// lack. What is assumed, checked from go1.17.13 to go1.27.4 on amd64 by the
// compat matrix (integration/compat_test.go, every release's examples
// watched), and for go1.26.8 on arm64 by the root tests run in arm64 VMs
// (vmtest -arch arm64):
//   - the register ABI (go1.17+): integer arguments in RAX, RBX, RCX, RDI,
//     RSI, R8...; an interface takes two registers, itab or type word then
//     data word (struct iface below); the current g in R14;
//   - g.goid is unique for the process's life;
//   - every context type of package context, and every type the agent puts
//     in ctx_wrappers, is a pointer to a struct whose first field is its
//     parent Context; valueCtx is {Context, key, val any} (the agent checks
//     the field offsets against DWARF when the binary has it:
//     internal/layout's TestFieldOffset for every release in its table);
//   - an itab holds the concrete type descriptor at offset 8 (itab.inter,
//     itab._type);
//   - a string is {ptr, len} (walk.h reads string keys so);
//   - a func value is a pointer to a funcval whose first word is the code
//     pointer, and a new goroutine's g.sched.ctxt is the funcval it runs;
//   - runtime.newproc's closure runs on g0 (systemstack) with m.curg the
//     spawning goroutine, whose sched.bp is newproc's frame pointer on
//     amd64, and on arm64 that of systemstack's own frame, whose record
//     holds newproc's (systemstack's prologue checked in go1.17.13,
//     go1.21.13 and go1.26.8 arm64 builds); it
//     makes the new g with newproc1 (the result) and queues it with
//     runqput(pp, newg, next).
// The agent refuses a Go release it has no layout for (too old: before
// 1.17) rather than guess.

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

// An interface value as Go lays it out.
struct iface {
	__u64 tab;  // itab (or type word for an empty interface)
	__u64 data;
};

#endif // CTXWATCH_GOABI_H
