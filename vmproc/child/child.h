/* child.h - what the files of child/ share: the child's state, its fixed
 * fds and its deadlines. Internal to vmproc/child/.
 *
 *   main.c      vmp_child_main: init, fd hygiene, jail, build the VM, ready,
 *               the control channel, the serve loop, what ends it
 *   requests.c  the VM socket: one client packet, each VmRequest's reply
 *   linux.c     kind = linux: boot to the agent's hello, health pings
 *               through the agent, the client <-> agent relay
 *   restore.c   restore pools: the pool snapshot before ready, on lease,
 *               and over a used VM for the next lease (reuse = snapshot)
 *   jail.c      entering the jail (jail.h)
 */
#ifndef HATCHERY_VMP_CHILD_H
#define HATCHERY_VMP_CHILD_H

#include <stdbool.h>
#include <stdint.h>

#include "child/jail.h"
#include "hatchery/error.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/vm.pb-c.h"
#include "kvm/kvm.h"
#include "linux/machine.h"
#include "linux/relay.h"
#include "runtime/runtime.h"
#include "vmproc.h"
#include "vmsnap.h"

/* Fixed fd numbers in the child after fd hygiene. */
#define CTRL_FD 3
#define KVM_FD 4
#define SUP_PIDFD 5 /* closed once the jail has re-armed PDEATHSIG */
#define VM_FD 6     /* the VM socket: the client's requests arrive here */
#define SNAP_FD 7   /* restore pools: the pool's snapshot (read-only) */
#define DISK_FD 8   /* a Linux VM's disk: its vhost-user backend connection */

#define BOOT_DEADLINE_MS 1000
#define CALL_DEADLINE_MS 1000      /* a Call's deadline when it gives none */
#define CALL_DEADLINE_MAX_MS 60000
#define HEARTBEAT_DEADLINE_MS 100
/* A result must fit in one reply packet with its envelope. */
#define RESULT_MAX (IPC_MAX_MSG - 8192)

/* One receive buffer for the child's life (main.c); static so the fork
 * does not have to copy a heap allocation, and only the pages a message
 * touches get dirtied. */
extern uint8_t vmp_child_rx_buf[IPC_MAX_MSG];

struct child {
	const struct vmp_spawn *s;
	struct vmp_vm vm;
	struct vmp_guest guest;
	struct vmp_guest_result res; /* big (logs): one per child, not on the stack */
	int client_fd;
	uint32_t host_pid;        /* from SupHello: we are pid 1 in here */
	struct vmp_jail_info jail;
	/* From SupHello: the supervisor reads them from outside (vmproc.h). */
	uint64_t ns_ino[VMP_NS__N];
	/* CLOCK_MONOTONIC: our first instruction, fd hygiene done, ready. */
	uint64_t t_start, t_init, t_ready;
	/* A Restore failed after it changed the VM: the VM is unusable. */
	bool restore_broke;
	/* Restore pool, prerestore = false: the snapshot is restored on lease
	 * (SupLeased or the client's first packet, whichever comes first). */
	bool restore_pending;
	/* ... and that restore failed: every request gets this error, then
	 * the child exits (the supervisor forks a fresh one). */
	bool restore_failed;
	/* The lease ended the ordinary way: Release, or the client hung up.
	 * Only then may a reuse = snapshot child reset and serve again. */
	bool lease_clean;
	uint64_t resets;          /* how many times this child was reset */
	int restore_err_code;
	char restore_err[HATCH_ERR_MSG_MAX];
	/* kind = linux (linux.c): the machine, the relay's state, what the
	 * agent's hello said, the boot's time, the health ping's seq. */
	struct vmp_linux *lm;
	struct vmp_relay relay;
	char kernel_release[65];
	uint32_t guest_nproc;
	uint64_t linux_boot_ns;
	uint64_t health_seq;
	uint64_t op_deadline;     /* CLOCK_MONOTONIC ns; 0: no operation waits */
};

/* Send ChildFailed{msg} on the control channel (the supervisor logs it and
 * shows it as the pool's last_error). */
void vmp_child_send_failed(const char *msg);

/* requests.c: a VmReply carrying only an Error, for request `id`, on fd. */
void vmp_child_send_error(int fd, uint64_t id, int code, const char *msg);

/* requests.c: serve one packet from the client. Returns 1 to go on, 0 to
 * end the lease. */
int vmp_child_serve_client(struct child *ch);
/* requests.c: one decoded request and the fds its packet carried (all
 * closed). Returns 1 to go on, 0 to end the lease. */
int vmp_child_serve_request(struct child *ch, const Hatchery__V1__VmRequest *req,
			    struct ipc_msg *m);

/* linux.c, kind = linux: build the machine (vCPU threads parked: before
 * NPROC drops), boot it to the agent's hello within boot_timeout_ms, and
 * serve: health pings through the agent, then the lease's relay. Build and
 * boot return 0 or -1 with err (the message has the console's last lines);
 * serve returns when the lease is over and exits itself when the VM
 * ended. */
int vmp_child_linux_build(struct child *ch, struct hatch_err *err);
int vmp_child_linux_boot(struct child *ch, struct hatch_err *err);
void vmp_child_linux_serve(struct child *ch);

/* linux.c, snapshots of a Linux VM. Save: between operations (else
 * FAILED_PRECONDITION); 0, or -1 with err (if the VM ended meanwhile, the
 * next turn of the serve loop sees it). Restore the snapshot in fd into
 * the machine (built without a kernel, vCPUs never started; or, `reset`,
 * a machine that has run: paused and its RAM dropped first), start it,
 * kick its queues and resume its agent (clock, entropy). *touched as for
 * vmp_snap_restore. */
int vmp_child_linux_save(struct child *ch, int fd, struct vmp_snap_save_stats *st,
			 struct hatch_err *err);
int vmp_child_linux_restore(struct child *ch, int fd, bool reset, bool *touched,
			    struct hatch_err *err);

/* restore.c: restore the pool's snapshot (inherited at SNAP_FD) into our
 * VM; `reset`: over a VM that has run (vmp_snap_reset). Returns 0, or -1
 * with err. */
int vmp_child_restore_pool_snapshot(struct child *ch, bool reset, struct hatch_err *err);

/* restore.c: restore pool with prerestore = false, on lease, once (a no-op
 * otherwise). A failure is reported to the supervisor and kept for the
 * client's requests. */
void vmp_child_restore_on_lease(struct child *ch);

/* restore.c: reuse = snapshot, after a clean lease: reset to the snapshot
 * and take the next lease's VM socket. Returns 0 to serve again, -1 with
 * err when the child must exit. */
int vmp_child_reset_for_next_lease(struct child *ch, struct hatch_err *err);

#endif
