/* client.h - the C client library for hatcheryd and for leased VMs.
 *
 * Lifecycle:
 *   hatch_connect()  -> struct hatch_client *   (one connection to hatcheryd)
 *   hatch_acquire()  -> int vm_fd                (a socket to one vmproc)
 *   hatch_vm_ping()/hatch_vm_info() on vm_fd
 *   hatch_vm_release(vm_fd) or close(vm_fd)      (ends the lease)
 *   hatch_close()
 *
 * A lease ends when the client releases or closes vm_fd. By default the
 * VM is single-use: its child exits and the pool forks a replacement. In a
 * restore pool with reuse = snapshot, a child whose lease ended that way
 * with its guest alive instead restores the pool's snapshot over itself
 * and becomes idle again, to be leased by the next client
 * (docs/security.md: weaker isolation).
 *
 * Calls are synchronous: one request, one reply. A client is not
 * thread-safe; use one per thread. Every call takes an optional
 * `struct hatch_err *` and returns 0 on success or -1 with it filled:
 * err->code is the hatchery.v1.ErrorCode the server replied with, or
 * INTERNAL / UNAVAILABLE for local and transport failures.
 *
 * Ownership: reply messages handed out through `**out` are the caller's;
 * free them with hatch_free(). vm_fd is the caller's to close.
 */
#ifndef HATCHERY_CLIENT_H
#define HATCHERY_CLIENT_H

#include <stdint.h>

#include "hatchery/error.h"
#include "hatchery/v1/supervisor.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"

#define HATCH_DEFAULT_SOCKET "/run/hatchery/hatchery.sock"

struct hatch_client;

/* Connect to hatcheryd at `path` (NULL: $HATCHERY_SOCKET, else the default). */
int hatch_connect(const char *path, struct hatch_client **out,
		  struct hatch_err *err);
void hatch_close(struct hatch_client *c);

/* Fail a call whose reply has not come in `ms` milliseconds (0: wait forever,
 * the default). Acquire waits at least its own deadline plus this. */
void hatch_set_timeout(struct hatch_client *c, unsigned ms);

int hatch_ping(struct hatch_client *c, Hatchery__V1__PingReply **out,
	       struct hatch_err *err);

/* Lease a ready VM of `pool`, waiting up to deadline_ms for one. On success
 * *vm_fd is a connected SOCK_SEQPACKET socket to the child. `info` may be
 * NULL. */
int hatch_acquire(struct hatch_client *c, const char *pool,
		  uint32_t deadline_ms, int *vm_fd,
		  Hatchery__V1__AcquireReply **info, struct hatch_err *err);

int hatch_status(struct hatch_client *c, Hatchery__V1__StatusReply **out,
		 struct hatch_err *err);
int hatch_stats(struct hatch_client *c, Hatchery__V1__StatsReply **out,
		struct hatch_err *err);

/* Calls on a leased VM's socket. */
int hatch_vm_ping(int vm_fd, struct hatch_err *err);
int hatch_vm_info(int vm_fd, Hatchery__V1__VmInfoReply **out,
		  struct hatch_err *err);
/* Call guest function `function` with `payload` (booted pools, or after a
 * Load). deadline_ms 0: the VM's default (1000 ms). On success the caller
 * frees *out with hatch_free(). Errors: NOT_FOUND, GUEST_ERROR (the VM
 * lives on), GUEST_FAULT, DEADLINE_EXCEEDED (the VM is gone; the message
 * has the vector, RIP and address of a fault). */
int hatch_vm_call(int vm_fd, const char *function, const void *payload,
		  size_t len, uint32_t deadline_ms,
		  Hatchery__V1__VmCallReply **out, struct hatch_err *err);

/* Load a guest ELF into an empty VM (pool kind "empty"), once. elf_fd is a
 * regular file of at most 16 MiB; it is sent with SCM_RIGHTS and stays the
 * caller's to close. `out` (functions, boot time) may be NULL. A guest that
 * faults while booting ends the VM (GUEST_FAULT). */
int hatch_vm_load(int vm_fd, int elf_fd, Hatchery__V1__VmLoadReply **out,
		  struct hatch_err *err);
/* Save the leased VM's state and memory to out_fd (a regular file opened
 * for writing; it is truncated to the snapshot's size). out_fd is sent with
 * SCM_RIGHTS and stays the caller's to close. The VM stays usable. `out`
 * (timings, size) may be NULL. */
int hatch_vm_save(int vm_fd, int out_fd, Hatchery__V1__VmSaveReply **out,
		  struct hatch_err *err);
/* Restore the snapshot in snap_fd (opened for reading) into a leased VM
 * that has no guest yet (pool kind "empty"). snap_fd stays the caller's
 * to close. `out` (timings, functions) may be NULL. */
int hatch_vm_restore(int vm_fd, int snap_fd, Hatchery__V1__VmRestoreReply **out,
		     struct hatch_err *err);
/* Ask the child to tear down, wait for its reply and close vm_fd. */
int hatch_vm_release(int vm_fd, struct hatch_err *err);

/* Free a reply message returned by any call above (NULL is fine). */
void hatch_free(void *msg);

#endif
