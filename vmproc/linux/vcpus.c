/* vcpus.c - the vCPU threads of a Linux guest. See vcpus.h. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hatchery/error.h"
#include "hatchery/v1/common.pb-c.h"
#include "linux/vcpus.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

struct vcpu_thread {
	struct vmp_vcpus *v;
	unsigned id;
	pthread_t tid;
	bool created, joined;
};

struct vmp_vcpus {
	struct vmp_vm *vm;
	struct vmp_bus *bus;
	int efd;

	pthread_mutex_t mu;     /* guards started, end, msg, pause, parked; with
	                         * cond: the start gate and the pause gate */
	pthread_cond_t cond;
	bool started;
	atomic_bool pause;      /* vmp_vcpus_pause: park at the loop's top */
	unsigned parked;        /* threads parked by a pause */
	atomic_bool ended;      /* read without mu on every exit */
	enum vmp_vm_end end;
	char msg[HATCH_ERR_MSG_MAX];

	atomic_uint_fast64_t exits;
	struct vcpu_thread t[VMP_MAX_VCPUS];
};

const char *vmp_vm_end_name(enum vmp_vm_end e)
{
	static const char *const n[] = {
		[VMP_VM_RUNNING] = "running", [VMP_VM_RESET] = "reset",
		[VMP_VM_TRIPLE_FAULT] = "triple fault", [VMP_VM_SYSTEM_EVENT] = "system event",
		[VMP_VM_INTERNAL_ERROR] = "KVM internal error",
		[VMP_VM_FAIL_ENTRY] = "VM entry failed", [VMP_VM_HOST_ERROR] = "host error",
		[VMP_VM_STOPPED] = "stopped",
	};
	return (unsigned)e < sizeof(n) / sizeof(n[0]) && n[e] ? n[e] : "?";
}

static void on_kick(int sig)
{
	(void)sig; /* only to interrupt KVM_RUN */
}

/* Kick every vCPU thread but `self` out of KVM_RUN. immediate_exit first:
 * a thread between its `ended` check and the ioctl would otherwise miss a
 * signal that lands before it enters the guest. */
static void kick_all(struct vmp_vcpus *v, int self)
{
	for (unsigned i = 0; i < v->vm->nvcpus; i++) {
		if ((int)i == self || !v->t[i].created || v->t[i].joined)
			continue;
		v->vm->run[i]->immediate_exit = 1;
		pthread_kill(v->t[i].tid, VMP_VCPU_KICK_SIGNAL);
	}
}

static void vm_end(struct vmp_vcpus *v, int self, enum vmp_vm_end why, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void vm_end(struct vmp_vcpus *v, int self, enum vmp_vm_end why, const char *fmt, ...)
{
	bool first = false;
	pthread_mutex_lock(&v->mu);
	if (!atomic_load(&v->ended)) {
		first = true;
		v->end = why;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
		va_end(ap);
		atomic_store(&v->ended, true);
		pthread_cond_broadcast(&v->cond); /* parked threads leave too */
		/* Kicked under mu: vmp_vcpus_stop joins (and so frees the
		 * pthread_t of) a thread only after taking mu in its own
		 * vm_end, hence never while a kick is being sent to it. */
		kick_all(v, self);
	}
	pthread_mutex_unlock(&v->mu);
	if (!first)
		return;
	uint64_t one = 1;
	ssize_t r = write(v->efd, &one, sizeof(one));
	(void)r; /* an eventfd write fails only on overflow, impossible here */
}

static uint64_t vcpu_rip(struct vmp_vcpus *v, unsigned i)
{
	struct kvm_regs r;
	return ioctl(v->vm->vcpu_fd[i], KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

/* One exit; false when the VM has ended. */
static bool handle_exit(struct vmp_vcpus *v, unsigned i, struct kvm_run *kr)
{
	enum vmp_bus_action act = VMP_BUS_CONTINUE;
	switch (kr->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)kr + kr->io.data_offset;
		/* String I/O (rep outsb ...) comes as `count` elements. */
		for (uint32_t k = 0; k < kr->io.count && act == VMP_BUS_CONTINUE; k++)
			act = vmp_bus_access(v->bus, VMP_BUS_PIO, kr->io.port,
					     data + (size_t)k * kr->io.size, kr->io.size,
					     kr->io.direction == KVM_EXIT_IO_OUT);
		break;
	}
	case KVM_EXIT_MMIO:
		act = vmp_bus_access(v->bus, VMP_BUS_MMIO, kr->mmio.phys_addr, kr->mmio.data,
				     kr->mmio.len > 8 ? 8 : kr->mmio.len, kr->mmio.is_write);
		break;
	case KVM_EXIT_INTR:
		return true; /* a signal: the loop checks `ended` */
	case KVM_EXIT_SHUTDOWN: {
		/* On AMD, KVM reinitialises the VMCB on a shutdown intercept: the
		 * vCPU then sits at the reset vector and the faulting rip is gone. */
		uint64_t rip = vcpu_rip(v, i);
		if (rip == 0xfff0)
			vm_end(v, (int)i, VMP_VM_TRIPLE_FAULT,
			       "the guest triple-faulted on vCPU %u (rip unknown: KVM reset "
			       "the vCPU, as it does on AMD)", i);
		else
			vm_end(v, (int)i, VMP_VM_TRIPLE_FAULT,
			       "the guest triple-faulted on vCPU %u at rip %#llx", i,
			       (unsigned long long)rip);
		return false;
	}
	case KVM_EXIT_SYSTEM_EVENT: {
		const char *t = kr->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? "shutdown" :
				kr->system_event.type == KVM_SYSTEM_EVENT_RESET ? "reset" :
				kr->system_event.type == KVM_SYSTEM_EVENT_CRASH ? "crash" : "event";
		vm_end(v, (int)i, VMP_VM_SYSTEM_EVENT, "the guest asked for a system %s (type %u) on vCPU %u",
		       t, kr->system_event.type, i);
		return false;
	}
	case KVM_EXIT_INTERNAL_ERROR:
		vm_end(v, (int)i, VMP_VM_INTERNAL_ERROR,
		       "KVM internal error (suberror %u) on vCPU %u at rip %#llx: the guest did something KVM cannot emulate",
		       kr->internal.suberror, i, (unsigned long long)vcpu_rip(v, i));
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_end(v, (int)i, VMP_VM_FAIL_ENTRY,
		       "VM entry failed on vCPU %u (hardware reason %#llx)", i,
		       (unsigned long long)kr->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		vm_end(v, (int)i, VMP_VM_HOST_ERROR, "unexpected KVM exit reason %u on vCPU %u",
		       kr->exit_reason, i);
		return false;
	}
	if (act == VMP_BUS_RESET) {
		vm_end(v, (int)i, VMP_VM_RESET, "the guest reset itself (reboot / panic=1)");
		return false;
	}
	return true;
}

/* A pause asked this thread to stop: finish the instruction KVM may have
 * left half done (an I/O or MMIO read whose data it takes on the next
 * KVM_RUN: immediate_exit completes it and runs nothing, KVM API docs),
 * then wait until the pause is over. The state the host reads meanwhile is
 * then whole. */

static void park(struct vmp_vcpus *v, unsigned i, uint64_t *exits)
{
	struct kvm_run *kr = v->vm->run[i];
	kr->immediate_exit = 1;
	/* Completing a string I/O may exit to us again: serve that too. */
	while (ioctl(v->vm->vcpu_fd[i], KVM_RUN, 0) == 0) {
		(*exits)++;
		if (!handle_exit(v, i, kr))
			return; /* the VM ended: the loop sees it */
	}
	pthread_mutex_lock(&v->mu);
	v->parked++;
	pthread_cond_broadcast(&v->cond);
	while (atomic_load(&v->pause) && !atomic_load(&v->ended))
		pthread_cond_wait(&v->cond, &v->mu);
	v->parked--;
	if (!atomic_load(&v->ended))
		kr->immediate_exit = 0;
	pthread_mutex_unlock(&v->mu);
}

static void *vcpu_main(void *arg)
{
	struct vcpu_thread *t = arg;
	struct vmp_vcpus *v = t->v;
	unsigned i = t->id;

	/* The child may run with signals blocked; the kick must get through. */
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, VMP_VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	pthread_mutex_lock(&v->mu);
	while (!v->started && !atomic_load(&v->ended))
		pthread_cond_wait(&v->cond, &v->mu);
	pthread_mutex_unlock(&v->mu);

	struct kvm_run *kr = v->vm->run[i];
	int fd = v->vm->vcpu_fd[i];
	uint64_t exits = 0;
	while (!atomic_load(&v->ended)) {
		if (atomic_load(&v->pause)) {
			park(v, i, &exits);
			continue;
		}
		if (ioctl(fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vm_end(v, (int)i, VMP_VM_HOST_ERROR, "KVM_RUN on vCPU %u: %s", i,
			       strerror(errno));
			break;
		}
		exits++;
		if (!handle_exit(v, i, kr))
			break;
	}
	atomic_fetch_add(&v->exits, exits);
	return NULL;
}

static void join_all(struct vmp_vcpus *v)
{
	for (unsigned i = 0; i < v->vm->nvcpus; i++) {
		if (v->t[i].created && !v->t[i].joined) {
			pthread_join(v->t[i].tid, NULL);
			v->t[i].joined = true;
		}
	}
}

static void *noop_thread(void *arg)
{
	return arg;
}

int vmp_vcpus_signal_init(struct hatch_err *err)
{
	struct sigaction sa = { .sa_handler = on_kick }; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VMP_VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "sigaction (vCPU kick)");
	/* glibc's first pthread_create installs its own handler for the
	 * set*id broadcast signal (SIGRT_1) with rt_sigaction: let it do so
	 * now, with a thread that ends at once, rather than under the
	 * filter. */
	mallopt(M_ARENA_MAX, 1);
	pthread_t t;
	int r = pthread_create(&t, NULL, noop_thread, NULL);
	if (r != 0)
		return hatch_err_set(err, E(INTERNAL), r, "pthread_create (before the jail)");
	pthread_join(t, NULL);
	return 0;
}

int vmp_vcpus_create(struct vmp_vm *vm, struct vmp_bus *bus, struct vmp_vcpus **out,
		     struct hatch_err *err)
{
	struct vmp_vcpus *v = calloc(1, sizeof(*v));
	if (!v)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "vCPU threads");
	v->vm = vm;
	v->bus = bus;
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->efd < 0) {
		int e = errno;
		vmp_vcpus_destroy(v);
		return hatch_err_set(err, E(INTERNAL), e, "eventfd (vCPU threads)");
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		v->t[i] = (struct vcpu_thread){ .v = v, .id = i };
		int r = pthread_create(&v->t[i].tid, NULL, vcpu_main, &v->t[i]);
		if (r != 0) {
			vmp_vcpus_destroy(v);
			return hatch_err_set(err, E(INTERNAL), r, "pthread_create (vCPU %u)", i);
		}
		/* No pthread_setname_np: it opens /proc/self/task/N/comm,
		 * which a jailed child cannot (no open, no /proc). */
		v->t[i].created = true;
	}
	*out = v;
	return 0;
}

void vmp_vcpus_start(struct vmp_vcpus *v)
{
	pthread_mutex_lock(&v->mu);
	v->started = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->mu);
}

int vmp_vcpus_pause(struct vmp_vcpus *v)
{
	pthread_mutex_lock(&v->mu);
	int r = 0;
	if (atomic_load(&v->ended)) {
		r = -1;
	} else if (v->started) {
		atomic_store(&v->pause, true);
		/* As kick_all, under mu: a thread cannot be joined meanwhile. */
		for (unsigned i = 0; i < v->vm->nvcpus; i++) {
			v->vm->run[i]->immediate_exit = 1;
			pthread_kill(v->t[i].tid, VMP_VCPU_KICK_SIGNAL);
		}
		while (v->parked < v->vm->nvcpus && !atomic_load(&v->ended))
			pthread_cond_wait(&v->cond, &v->mu);
		if (atomic_load(&v->ended))
			r = -1;
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

void vmp_vcpus_resume(struct vmp_vcpus *v)
{
	pthread_mutex_lock(&v->mu);
	atomic_store(&v->pause, false);
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->mu);
}

int vmp_vcpus_eventfd(const struct vmp_vcpus *v)
{
	return v->efd;
}

enum vmp_vm_end vmp_vcpus_end(struct vmp_vcpus *v, char *msg, size_t cap)
{
	pthread_mutex_lock(&v->mu);
	enum vmp_vm_end e = atomic_load(&v->ended) ? v->end : VMP_VM_RUNNING;
	if (msg && cap)
		snprintf(msg, cap, "%s", e == VMP_VM_RUNNING ? "" : v->msg);
	pthread_mutex_unlock(&v->mu);
	return e;
}

uint64_t vmp_vcpus_exits(struct vmp_vcpus *v)
{
	return atomic_load(&v->exits);
}

void vmp_vcpus_stop(struct vmp_vcpus *v)
{
	/* Ends the VM and kicks every thread, unless a vCPU thread ended it
	 * first and kicked them itself. */
	vm_end(v, -1, VMP_VM_STOPPED, "stopped by the host");
	join_all(v);
}

void vmp_vcpus_destroy(struct vmp_vcpus *v)
{
	if (!v)
		return;
	vmp_vcpus_stop(v);
	if (v->efd >= 0)
		close(v->efd);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->mu);
	free(v);
}
