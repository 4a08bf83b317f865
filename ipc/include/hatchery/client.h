/* client.h - the C client library for hatcheryd and for leased VMs.
 *
 * Lifecycle:
 *   hatch_connect()  -> struct hatch_client *   (one connection to hatcheryd)
 *   hatch_acquire()  -> int vm_fd                (a socket to one vmproc)
 *   hatch_vm_ping()/hatch_vm_info() on vm_fd
 *   Linux pools: hatch_vm_exec(), hatch_vm_write_file(), hatch_vm_read_file(),
 *   hatch_vm_list_dir(), hatch_vm_stat() on vm_fd, one at a time
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
 *
 * Streaming calls (Exec, WriteFile, ReadFile) exchange several packets per
 * operation. If one fails half-way for a reason the VM did not report
 * itself -- a reply with another id or an unexpected body (MALFORMED), the
 * source fd giving more or fewer bytes than announced, a transport error --
 * the socket is out of step with the VM and no later call could tell whose
 * reply it reads. The library then shuts vm_fd down (shutdown(2): the
 * lease ends) and the caller still closes it. An error *reply* (Error set,
 * e.g. AGENT_ERROR) ends the operation cleanly: the VM serves on.
 */
#ifndef HATCHERY_CLIENT_H
#define HATCHERY_CLIENT_H

#include <stddef.h>
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
/* Ask hatcheryd to re-read its configuration file (uid 0 and its own uid
 * only). A refused file is an error whose message says why; the running
 * configuration then stays. `out` (the summary) may be NULL. */
int hatch_reload(struct hatch_client *c, Hatchery__V1__ReloadReply **out,
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

/* ---- Linux guests (pool kind "linux"): the agent's operations ----------
 * One operation at a time per lease; each call below returns after the
 * operation's last reply. AGENT_ERROR means the guest's kernel refused
 * (no such file, permission denied, ...): err->sys_errno is then the
 * guest's errno (Linux numbering, the same as the host's), and the message
 * ends with "(guest errno N ENAME)". The VM lives on after AGENT_ERROR and
 * INVALID_ARGUMENT. */

/* What to run. argv has argc entries (at least one; argv[0] is looked up in
 * the guest's PATH if it has no '/'). envc == 0: the agent's defaults
 * (PATH, HOME=/root, TERM=dumb); otherwise exactly these "NAME=value"
 * strings. cwd NULL or "": /. The whole stdin travels in the request
 * packet with argv and env: all of it must fit 64 KiB (INVALID_ARGUMENT
 * otherwise). timeout_ms 0: 60 s. output_limit: bytes of each stream sent
 * back, 0: 16 MiB. Nothing here is taken over; it may be freed after the
 * call. */
struct hatch_exec {
	const char *const *argv;
	size_t argc;
	const char *const *env;
	size_t envc;
	const char *cwd;
	const void *stdin_data;
	size_t stdin_len;
	uint32_t timeout_ms;
	uint64_t output_limit;
	uint32_t uid, gid;
};

#define HATCH_STDOUT HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDOUT
#define HATCH_STDERR HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDERR

/* Called for each piece of output as it arrives, in the order the program
 * wrote it on that stream. stream is HATCH_STDOUT or HATCH_STDERR; data is
 * valid only during the call. */
typedef void hatch_output_fn(void *ctx, int stream, const void *data, size_t len);

/* Run a program in the guest. on_output may be NULL (the output is read
 * and dropped). On success *out (may be NULL) has the exit code, or the
 * signal, and timed_out: a program that failed is still a success here.
 * Errors: AGENT_ERROR (could not be started: ENOENT, EACCES, a bad cwd),
 * INVALID_ARGUMENT (empty argv, the request does not fit one packet). */
int hatch_vm_exec(int vm_fd, const struct hatch_exec *req,
		  hatch_output_fn *on_output, void *ctx,
		  Hatchery__V1__VmExecReply **out, struct hatch_err *err);

/* Create or truncate `path` (absolute; its directory must exist) in the
 * guest with `mode` (0: 0644), owner uid:gid, and fill it with exactly
 * `size` bytes read from src_fd (at most 1 GiB). src_fd is read from its
 * current offset in packet-sized pieces, never held whole in memory; it
 * stays the caller's. If src_fd ends before `size` bytes or has more
 * after them, the call fails (INVALID_ARGUMENT) and the lease ends (see
 * "Streaming calls" above): the announced file cannot be completed. *out
 * (may be NULL) has bytes_written. */
int hatch_vm_write_file(int vm_fd, const char *path, uint32_t mode,
			uint32_t uid, uint32_t gid, int src_fd, uint64_t size,
			Hatchery__V1__VmWriteFileReply **out,
			struct hatch_err *err);

/* Called with each piece of a file being read, in order. Return 0 to go on;
 * anything else stops the deliveries: the call still reads the rest of the
 * operation off the socket (so the VM serves on) and then fails with
 * INTERNAL, keeping the error the callback left in `err` if it set one. */
typedef int hatch_chunk_fn(void *ctx, const void *data, size_t len,
			   struct hatch_err *err);

/* Read `path` from the guest, streaming it to on_chunk. max_size 0: the
 * agent's default (64 MiB); a larger file is refused before any data
 * (AGENT_ERROR, EFBIG). *out (may be NULL) has the size and st_mode. */
int hatch_vm_read_file_cb(int vm_fd, const char *path, uint64_t max_size,
			  hatch_chunk_fn *on_chunk, void *ctx,
			  Hatchery__V1__VmReadFileReply **out,
			  struct hatch_err *err);

/* The same, written to dst_fd (a file, a pipe; short writes and EINTR are
 * handled; it stays the caller's). A failed write ends the call with
 * INTERNAL after the operation is drained; the VM serves on. A pipe whose
 * reader has gone raises SIGPIPE as any write(2) does: the library leaves
 * signal dispositions to the program. */
int hatch_vm_read_file(int vm_fd, const char *path, uint64_t max_size,
		       int dst_fd, Hatchery__V1__VmReadFileReply **out,
		       struct hatch_err *err);

/* The entries of a guest directory, sorted by name, without "." and "..";
 * (*out)->truncated when they did not all fit one reply. */
int hatch_vm_list_dir(int vm_fd, const char *path,
		      Hatchery__V1__VmListDirReply **out, struct hatch_err *err);

/* lstat(2) of a guest path. */
int hatch_vm_stat(int vm_fd, const char *path, Hatchery__V1__VmStatReply **out,
		  struct hatch_err *err);

/* Free a reply message returned by any call above (NULL is fine). */
void hatch_free(void *msg);

#endif
