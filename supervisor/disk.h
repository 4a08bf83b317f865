/* disk.h - a linux pool's disk: one jailed vhost-user backend per child
 * (docs/vhost.md, "Supervision").
 *
 * The backend's life is tied to its VM: it is forked with the child
 * (sup_disk_start, from sup_spawn), serves that child's one vhost-user
 * connection, and is gone with it. Its own exit — it ends when the child's
 * end of the connection closes — is reaped by its pidfd (the loop's
 * TAG_DISK, sup_disk_reap); an exit while the child still lives (a crash,
 * a seccomp kill, a protocol error) ends the VM: the child sees its disk
 * connection hang up and ends the lease with that error, and the
 * supervisor also kills an idle or spawning child at once. When a child is
 * released, sup_disk_stop kills and waits for a backend still there.
 *
 * Ownership: the backend's pidfd is the child's (struct sup_child
 * disk_pidfd), closed by sup_disk_reap or sup_disk_stop.
 */
#ifndef HATCHERY_SUP_DISK_H
#define HATCHERY_SUP_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "hatchery/error.h"
#include "pool.h"
#include "server.h"

/* Start c's backend as uid:gid (jailed unless o->no_jail): open the image
 * (read-only for ro and overlay, read-write for rw) and, for overlay, an
 * unlinked layer file in overlay_dir, make the connection (a SOCK_STREAM
 * socketpair), fork the backend with its end, and give the other end to
 * the caller in *vm_end (for the child's DISK_FD; the caller closes it
 * after the child's fork). Sets c->disk_pid and c->disk_pidfd. */
int sup_disk_start(struct sup_child *c, const struct sup_server_opts *o, uid_t uid,
		   gid_t gid, int *vm_end, struct hatch_err *err);

/* An empty, unlinked file in dir for an overlay layer: O_TMPFILE, or
 * where the file system has none, a file made and unlinked at once. -1
 * with errno. */
int sup_disk_layer_open(const char *dir);

/* disk_socket = PATH instead of disk: connect to that external
 * vhost-user-blk backend (qemu-storage-daemon, ...) and give the connected
 * socket to the caller in *vm_end, as sup_disk_start does. No process of
 * ours, no jail around the backend: c->disk_pidfd stays -1, and the
 * backend's life is its own (it sees the connection close when the VM
 * ends, and must accept the next child's). */
int sup_disk_connect(const struct sup_pool_config *cfg, int *vm_end, struct hatch_err *err);

/* The backend's pidfd is readable: reap it. Returns false if it has not
 * exited after all (a spurious wake-up); else closes the pidfd and writes
 * how it ended to msg. */
bool sup_disk_reap(struct sup_child *c, char *msg, size_t cap);

/* The child is gone or going: SIGKILL a backend still running and wait
 * for it (it is one syscall from its exit: SIGKILL cannot be caught). */
void sup_disk_stop(struct sup_child *c);

#endif
