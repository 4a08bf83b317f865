/* vcpu.h - the vCPU loop: KVM_RUN under a deadline, one switch on
 * kvm_run->exit_reason, whatever the guest kind.
 *
 * Port I/O exits go to the guest kind's handler (the kernel-less runtime's
 * hypercalls: runtime/runtime.c); every other exit is decided here. A
 * device model (a serial port, a virtio transport) would be dispatched
 * from the same switch by port or MMIO address.
 *
 * The deadline is one POSIX timer per process (vmproc is single-threaded:
 * one vCPU thread) whose SIGALRM makes KVM_RUN return -EINTR.
 *
 * Ownership: the loop borrows the VM; a result's out points into guest RAM
 * and is valid until the next run.
 */
#ifndef HATCHERY_VMP_VCPU_H
#define HATCHERY_VMP_VCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "kvm/kvm.h"

/* How a run of guest code ended. */
enum vmp_guest_outcome {
	VMP_GUEST_OK = 0,
	VMP_GUEST_ERROR,        /* the function returned an error (guest lives on) */
	VMP_GUEST_NO_FUNCTION,  /* no function of that name (guest lives on) */
	VMP_GUEST_FAULT,        /* a CPU exception at CPL 3: see fault */
	VMP_GUEST_DEADLINE,     /* the deadline passed first */
	VMP_GUEST_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN */
	VMP_GUEST_BAD_IO,       /* an I/O port or MMIO exit the ABI does not have */
	VMP_GUEST_PROTOCOL,     /* a malformed hypercall (bad number, bad lengths) */
	VMP_GUEST_HOST_ERROR,   /* a KVM ioctl failed, or the VM is dead */
};

struct vmp_guest_fault {
	uint32_t vector;        /* 0 #DE, 6 #UD, 13 #GP, 14 #PF, ... */
	uint64_t error_code;
	uint64_t rip;
	uint64_t address;       /* CR2 for #PF, else 0 */
};

#define VMP_GUEST_LOG_MAX 4096  /* log bytes kept per call; the rest is counted */

struct vmp_guest_result {
	enum vmp_guest_outcome outcome;
	struct vmp_guest_fault fault;   /* VMP_GUEST_FAULT */
	const uint8_t *out;             /* VMP_GUEST_OK: in guest RAM */
	size_t out_len;
	char message[HATCH_ERR_MSG_MAX]; /* for every outcome but OK */
	char log[VMP_GUEST_LOG_MAX];    /* log lines, '\n'-separated */
	size_t log_len;
	uint32_t log_dropped;           /* lines that did not fit */
	uint64_t exits;                 /* KVM exits during the call */
	uint64_t run_ns;                /* wall time inside the run loop */
};

const char *vmp_guest_outcome_name(enum vmp_guest_outcome o);

/* Install the deadline signal handler and create the timer. Once per
 * process, before the jail: rt_sigaction and timer_create are not on the
 * allowlist. */
int vmp_guest_deadline_init(struct hatch_err *err);

/* The guest kind's answer to a port I/O exit (kr->exit_reason ==
 * KVM_EXIT_IO): true to run on; false to end the run, with res->outcome and
 * res->message set unless the run ended as the caller wanted (outcome OK). */
typedef bool vmp_vcpu_io_fn(void *ctx, struct kvm_run *kr,
			    struct vmp_guest_result *res);

/* Run vCPU `i` until `io` ends the run, another exit does, or deadline_ms
 * passes (0: no deadline). Sets res->outcome (and message for every
 * non-OK one), exits and run_ns; returns the outcome. */
enum vmp_guest_outcome vmp_vcpu_run(struct vmp_vm *vm, unsigned i,
				    uint32_t deadline_ms, vmp_vcpu_io_fn *io,
				    void *ctx, struct vmp_guest_result *res);

#endif
