/* vcpu.c - the vCPU loop and its deadline. See vcpu.h. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "kvm/vcpu.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* ---- deadline ------------------------------------------------------------- */

/* One timer per process (vmproc is single-threaded: one vCPU thread). The
 * handler makes KVM_RUN return -EINTR, or, if the signal lands between our
 * deadline check and the ioctl, makes the next KVM_RUN return at once
 * (immediate_exit): without that a guest that never exits would run on. */
static timer_t deadline_timer;
static bool deadline_ready;
static volatile sig_atomic_t deadline_fired;
static struct kvm_run *volatile deadline_run;

static void on_deadline(int sig)
{
	(void)sig;
	deadline_fired = 1;
	struct kvm_run *r = deadline_run;
	if (r)
		r->immediate_exit = 1;
}

int vmp_guest_deadline_init(struct hatch_err *err)
{
	if (deadline_ready)
		return 0;
	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	struct sigaction sa = { .sa_handler = on_deadline };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "sigaction SIGALRM");
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM };
	if (timer_create(CLOCK_MONOTONIC, &sev, &deadline_timer) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "timer_create");
	deadline_ready = true;
	return 0;
}

static int deadline_arm(struct kvm_run *run, uint32_t ms)
{
	deadline_fired = 0;
	run->immediate_exit = 0;
	if (!ms)
		return 0;
	if (!deadline_ready)
		return -ENOTSUP;
	deadline_run = run;
	struct itimerspec its = {
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
	};
	if (timer_settime(deadline_timer, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

static void deadline_disarm(struct kvm_run *run, uint32_t ms)
{
	if (ms) {
		struct itimerspec off = { 0 };
		timer_settime(deadline_timer, 0, &off, NULL);
	}
	deadline_run = NULL;
	/* A signal that came after the last exit must not cut the next run short. */
	run->immediate_exit = 0;
}

/* ---- the run loop --------------------------------------------------------- */

enum vmp_guest_outcome vmp_vcpu_run(struct vmp_vm *vm, unsigned i,
				    uint32_t deadline_ms, vmp_vcpu_io_fn *io,
				    void *ctx, struct vmp_guest_result *res)
{
	struct kvm_run *kr = vm->run[i];
	int fd = vm->vcpu_fd[i];
	uint64_t t0 = hatch_now_ns();
	int r = deadline_arm(kr, deadline_ms);
	if (r < 0) {
		snprintf(res->message, sizeof(res->message), "deadline timer: %s", strerror(-r));
		return res->outcome = VMP_GUEST_HOST_ERROR;
	}
	res->outcome = VMP_GUEST_OK;
	for (bool go = true; go;) {
		if (ioctl(fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				if (deadline_fired) {
					res->outcome = VMP_GUEST_DEADLINE;
					snprintf(res->message, sizeof(res->message),
						 "the guest did not finish within the deadline (%u ms)", deadline_ms);
					break;
				}
				kr->immediate_exit = 0;
				continue;
			}
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message), "KVM_RUN: %s", strerror(errno));
			break;
		}
		res->exits++;
		switch (kr->exit_reason) {
		case KVM_EXIT_IO:
			go = io(ctx, kr, res);
			break;
		case KVM_EXIT_MMIO:
			res->outcome = VMP_GUEST_BAD_IO;
			snprintf(res->message, sizeof(res->message),
				 "guest accessed MMIO address %#llx",
				 (unsigned long long)kr->mmio.phys_addr);
			go = false;
			break;
		case KVM_EXIT_SHUTDOWN:
			res->outcome = VMP_GUEST_TRIPLE_FAULT;
			snprintf(res->message, sizeof(res->message),
				 "guest triple fault (an exception could not be delivered)");
			go = false;
			break;
		case KVM_EXIT_HLT:
			res->outcome = VMP_GUEST_FAULT;
			snprintf(res->message, sizeof(res->message), "guest halted");
			go = false;
			break;
		case KVM_EXIT_INTR:
			if (deadline_fired) {
				res->outcome = VMP_GUEST_DEADLINE;
				snprintf(res->message, sizeof(res->message),
					 "the guest did not finish within the deadline (%u ms)", deadline_ms);
				go = false;
			}
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			/* E.g. the emulator met an instruction it cannot do:
			 * the guest's doing, since only the stub runs at CPL 0. */
			res->outcome = VMP_GUEST_FAULT;
			snprintf(res->message, sizeof(res->message),
				 "KVM internal error (suberror %u): the guest did something KVM cannot emulate",
				 kr->internal.suberror);
			go = false;
			break;
		default:
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message),
				 "unexpected KVM exit reason %u", kr->exit_reason);
			go = false;
			break;
		}
	}
	deadline_disarm(kr, deadline_ms);
	res->run_ns = hatch_now_ns() - t0;
	return res->outcome;
}

const char *vmp_guest_outcome_name(enum vmp_guest_outcome o)
{
	static const char *const n[] = {
		[VMP_GUEST_OK] = "ok", [VMP_GUEST_ERROR] = "error",
		[VMP_GUEST_NO_FUNCTION] = "no function", [VMP_GUEST_FAULT] = "fault",
		[VMP_GUEST_DEADLINE] = "deadline", [VMP_GUEST_TRIPLE_FAULT] = "triple fault",
		[VMP_GUEST_BAD_IO] = "bad I/O", [VMP_GUEST_PROTOCOL] = "protocol",
		[VMP_GUEST_HOST_ERROR] = "host error",
	};
	return (unsigned)o < HATCH_ARRAY_SIZE(n) && n[o] ? n[o] : "?";
}
