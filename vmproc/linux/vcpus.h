/* vcpus.h - one thread per vCPU running a Linux guest, until the VM ends.
 *
 * Each thread runs KVM_RUN in a loop with one switch on exit_reason:
 * port I/O and MMIO go to the device bus (devices/bus.h); everything that
 * cannot go on ends the VM. The first thread to see the end records why
 * (a reason and a message), makes the eventfd readable for the child's
 * main thread, and kicks the others out of KVM_RUN (immediate_exit, then
 * VMP_VCPU_KICK_SIGNAL to the thread); every thread then returns.
 *
 * APs (vCPU >= 1) run KVM_RUN from the start too: KVM's in-kernel LAPIC
 * keeps them inside it until the kernel sends INIT/SIPI.
 *
 * Threads are created parked (vmp_vcpus_create) and run only after
 * vmp_vcpus_start: the child creates them BEFORE its jail lowers
 * RLIMIT_NPROC (child/jail.c, vmp_jail_lower_nproc), and starts them when
 * it is ready. The jail's seccomp filter must then allow what they do:
 * ioctl (KVM_RUN, KVM_IRQ_LINE, KVM_GET_REGS), write (eventfd), tgkill
 * and rt_sigreturn (the kick), futex (the bus mutex).
 *
 * The threads are made after the jail (child/main.c: jail, VM, threads,
 * NPROC down), so they inherit its filter, credentials, no_new_privs and
 * empty capability sets from the thread that made them; test_linux checks
 * every task's /proc/PID/task/TID/status.
 *
 * vmp_vcpus_signal_init installs a handler for VMP_VCPU_KICK_SIGNAL
 * (process-wide, without SA_RESTART: its only job is to make KVM_RUN
 * return EINTR); once per process, before the jail, whose filter has no
 * rt_sigaction (child/jail.c says why); it also makes and joins one
 * thread, so that glibc's one-time thread set-up (its own rt_sigaction)
 * happens there too, and caps malloc at one arena (M_ARENA_MAX): a vCPU
 * thread that allocated would otherwise reserve a 64 MiB arena against
 * the jail's RLIMIT_AS.
 *
 * Ownership: borrows vm and bus, which must outlive it; owns its threads
 * and its eventfd. vmp_vcpus_destroy stops and joins the threads, closes
 * the eventfd and frees.
 */
#ifndef HATCHERY_VMP_LINUX_VCPUS_H
#define HATCHERY_VMP_LINUX_VCPUS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "hatchery/error.h"
#include "kvm/kvm.h"

#define VMP_VCPU_KICK_SIGNAL SIGUSR1

enum vmp_vm_end {
	VMP_VM_RUNNING = 0,
	VMP_VM_RESET,           /* the guest reset itself (reboot / panic=1) */
	VMP_VM_TRIPLE_FAULT,    /* KVM_EXIT_SHUTDOWN */
	VMP_VM_SYSTEM_EVENT,    /* KVM_EXIT_SYSTEM_EVENT (shutdown, reset, crash) */
	VMP_VM_INTERNAL_ERROR,  /* KVM_EXIT_INTERNAL_ERROR: KVM could not emulate */
	VMP_VM_FAIL_ENTRY,      /* KVM_EXIT_FAIL_ENTRY: the CPU refused the state */
	VMP_VM_HOST_ERROR,      /* KVM_RUN failed, or an exit we do not know */
	VMP_VM_STOPPED,         /* the host stopped it (vmp_vcpus_stop) */
};

const char *vmp_vm_end_name(enum vmp_vm_end e);

struct vmp_vcpus;

int vmp_vcpus_signal_init(struct hatch_err *err);

/* One parked thread per vCPU of vm. -1 with err if a thread or the eventfd
 * cannot be made (the threads already made are joined). */
int vmp_vcpus_create(struct vmp_vm *vm, struct vmp_bus *bus, struct vmp_vcpus **out,
		     struct hatch_err *err);

/* Let the threads enter KVM_RUN. Once. */
void vmp_vcpus_start(struct vmp_vcpus *v);

/* Stop every vCPU between two instructions (each thread completes the
 * exit it was in, finishes a half-done I/O with one immediate_exit
 * KVM_RUN, and parks), so that the host may read or write the vCPUs' and
 * the devices' state (a Save, a reset). Before vmp_vcpus_start nothing
 * runs and this returns at once. Returns 0, or -1 when the VM has ended
 * (then nothing is paused). vmp_vcpus_resume lets them run again. Main
 * thread only. */
int vmp_vcpus_pause(struct vmp_vcpus *v);
void vmp_vcpus_resume(struct vmp_vcpus *v);

/* Readable (an eventfd counter, EFD_NONBLOCK | EFD_CLOEXEC) once the VM
 * has ended. Owned by v. */
int vmp_vcpus_eventfd(const struct vmp_vcpus *v);

/* Why the VM ended (VMP_VM_RUNNING while it runs); the message, which
 * says it for a user ("the guest reset itself (reboot / panic=1)",
 * "triple fault on vCPU 1 at rip ..."), goes to msg[0, cap). */
enum vmp_vm_end vmp_vcpus_end(struct vmp_vcpus *v, char *msg, size_t cap);

/* KVM exits handled, all vCPUs; each thread adds its count when it
 * returns, so the sum is final after vmp_vcpus_stop. */
uint64_t vmp_vcpus_exits(struct vmp_vcpus *v);

/* End the VM (VMP_VM_STOPPED unless it had ended already), make every
 * thread leave KVM_RUN and join them. Idempotent. */
void vmp_vcpus_stop(struct vmp_vcpus *v);

/* vmp_vcpus_stop, then close the eventfd and free. NULL is fine. */
void vmp_vcpus_destroy(struct vmp_vcpus *v);

#endif
