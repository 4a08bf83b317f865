/* machine.h - a Linux guest's machine in one child: the kernel and
 * initramfs loaded by the 64-bit boot protocol, the ACPI tables, the
 * devices (COM1, i8042, a virtio-console as the agent channel) on one bus,
 * a thread per vCPU, and the agent channel's frames. docs/guest-linux.md
 * has the machine map.
 *
 * Lifecycle, in a freshly forked, jailed child (child/linux.c):
 *   vmp_linux_create()   after vmp_vm_create: guest RAM filled, devices
 *                        built, vCPU threads created but parked (before
 *                        the jail lowers RLIMIT_NPROC: threads are tasks)
 *   vmp_linux_start()    the vCPUs run
 *   poll vmp_linux_pollfds(), then vmp_linux_process() for what is ready;
 *   the agent's frames with vmp_linux_agent_recv()/_send()
 *   the VM ends when the guest resets (reboot, panic=1), triple-faults,
 *   a KVM call fails, the agent channel breaks its framing, or the disk's
 *   backend fails or closes its connection:
 *   vmp_linux_process() then returns -1 with the reason and the last
 *   console lines; the child reports it and exits (a VM is never reused
 *   after that).
 *
 * Ownership: the machine borrows the struct vmp_vm and the kernel and
 * initrd bytes (copied into guest RAM at create); it owns its devices,
 * eventfds and threads, and lives until the child exits (no destroy: the
 * process's exit is the teardown, as for the kernel-less runtime).
 * Locking: all device state is behind the bus's one mutex; the functions
 * here are for the child's main thread only.
 */
#ifndef HATCHERY_VMP_LINUX_MACHINE_H
#define HATCHERY_VMP_LINUX_MACHINE_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "kvm/kvm.h"
#include "snapshot.h"

struct vmp_linux_config {
	/* A bzImage, not owned; NULL: the machine is built for a snapshot
	 * (vmp_linux_restore_devices after vmp_snap_apply): no kernel is
	 * loaded, guest RAM stays as it is. */
	const uint8_t *kernel;
	size_t kernel_len;
	const uint8_t *initrd;       /* a (compressed) cpio, not owned */
	size_t initrd_len;
	const char *cmdline_extra;   /* appended to the default command line; may be NULL */
	const struct kvm_cpuid2 *host_cpuid; /* the supervisor's probe; borrowed */
	/* A disk: virtio-mmio device 1, a virtio-blk whose queue the
	 * vhost-user backend at the other end of disk_fd (a connected stream
	 * socket, borrowed) serves; the guest sees /dev/vda. The VM must have
	 * been created with VMP_VM_SHARED_MEM (the backend maps guest RAM).
	 * disk_fd is read only when `disk` is set. */
	bool disk;
	int disk_fd;
};

struct vmp_linux;

#define VMP_LINUX_MAX_POLLFDS 8
/* Machine map: virtio-mmio device 0 is the agent's console, 1 the disk. */
#define VMP_LINUX_AGENT_DEV 0
#define VMP_LINUX_DISK_DEV 1

int vmp_linux_create(struct vmp_vm *vm, const struct vmp_linux_config *cfg,
		     struct vmp_linux **out, struct hatch_err *err);
int vmp_linux_start(struct vmp_linux *m, struct hatch_err *err);

/* The fds the main thread must poll (POLLIN), at most
 * VMP_LINUX_MAX_POLLFDS. Returns how many were written. */
size_t vmp_linux_pollfds(struct vmp_linux *m, struct pollfd *fds);

/* Handle what poll reported on those fds (and move queued agent frames
 * in and out of the guest's buffers). Returns 0, or -1 once the VM has
 * ended (err: code GUEST_FAULT or VM_ERROR, the reason, the console's
 * last lines). */
int vmp_linux_process(struct vmp_linux *m, const struct pollfd *fds, size_t n,
		      struct hatch_err *err);

/* Queue one frame (a packed VmRequest) for the agent. 0, -EAGAIN when the
 * outbox has no room for it now (try after the next process), -EMSGSIZE
 * over 65,536 bytes. */
int vmp_linux_agent_send(struct vmp_linux *m, const void *frame, size_t len);
/* Bytes the outbox takes now. */
size_t vmp_linux_agent_room(const struct vmp_linux *m);
/* The next whole frame from the agent: 1 (*frame valid until the next
 * call), 0 none yet, -1 the agent broke the framing (err). */
int vmp_linux_agent_recv(struct vmp_linux *m, const uint8_t **frame, size_t *len,
			 struct hatch_err *err);

/* ---- snapshots (docs/snapshot.md, "Linux guests") -------------------------
 *
 * Save: vmp_linux_pause, vmp_linux_devices_save, vmp_snap_save with the
 * devices, vmp_linux_resume. Restore into a machine built without a
 * kernel (or paused and its RAM dropped, for a reset): vmp_snap_apply,
 * vmp_linux_devices_restore, vmp_linux_resume (which also starts vCPUs
 * that never ran) and vmp_linux_kick. */

/* Stop the vCPUs between instructions (vcpus.h). -1 with err when the VM
 * has ended. */
int vmp_linux_pause(struct vmp_linux *m, struct hatch_err *err);
/* Let them run (or start them, the first time). */
void vmp_linux_resume(struct vmp_linux *m);

/* With the vCPUs paused: the devices' state. FAILED_PRECONDITION when the
 * agent channel has a frame in flight either way (its buffers are not
 * saved: a Save happens between operations) or is broken. */
int vmp_linux_devices_save(struct vmp_linux *m, struct snap_devices *d,
			   struct hatch_err *err);
/* Is d the device set this machine builds (machine type, virtio devices,
 * their ids, queues and features)? FAILED_PRECONDITION naming the first
 * difference. The supervisor asks at start-up, the child again. */
int vmp_linux_devices_check(const struct snap_devices *d, struct hatch_err *err);
/* With the vCPUs paused or never started, after vmp_snap_apply: set the
 * devices' state; the agent channel starts empty and the frames not yet
 * taken are dropped. */
int vmp_linux_devices_restore(struct vmp_linux *m, const struct snap_devices *d,
			      struct hatch_err *err);
/* After a restore, with the vCPUs running: serve every queue once as if
 * the guest had kicked it (a kick that was in flight at the save is lost
 * with the eventfd), and raise the interrupt again if one was pending. */
void vmp_linux_kick(struct vmp_linux *m);

/* The console's last `lines` lines into buf (NUL-terminated). */
size_t vmp_linux_console_tail(struct vmp_linux *m, char *buf, size_t len, unsigned lines);

#endif
