/* backend_child.h - the vhost-user block backend as a jailed process of
 * its own, started by the supervisor.
 *
 * Life cycle:
 *
 *   supervisor, once at start-up:  vmp_jail_filter_build(mode,
 *                                  VMP_FILTER_VHOST_BLK) per seccomp mode
 *                                  (vhu_backend_filter_build says the same)
 *   supervisor, per disk:          open the image (and an overlay's layer),
 *                                  a connected socket for the VMM, fill a
 *                                  struct vmp_jail_config and this struct,
 *                                  vmp_jail_clone3() as for a pool child
 *   backend, right after the fork: vhu_backend_child_main(), which never
 *                                  returns
 *
 * vhu_backend_child_main, in order: dies with the supervisor
 * (PR_SET_PDEATHSIG), signals back to defaults; fd hygiene (below); the
 * disk set up on the fds (vhu_blk_open_fd: the layer sized, the bitmap
 * allocated, before any limit); the jail (vmp_jail_enter: pivot_root into
 * an empty root, the uid, no capabilities, rlimits, no_new_privs, the
 * backend's own seccomp filter); then vhu_backend_serve on the connection
 * until the frontend hangs up: _exit(0); anything else: the reason on
 * stderr (the daemon's log) and _exit(1). The backend never opens a file,
 * makes a socket or forks: everything it touches came as an fd.
 *
 * fds in the backend: 0 and 1 /dev/null, 2 inherited (the log), then the
 * VHU_CHILD_*_FD numbers below; every other inherited fd is closed before
 * anything else is done. Ownership: the struct and the config are read
 * in the fresh process only; the caller's copies of the fds are its own
 * to close after the fork.
 */
#ifndef HATCHERY_VHOST_BACKEND_CHILD_H
#define HATCHERY_VHOST_BACKEND_CHILD_H

#include <stdbool.h>

#include "blk.h"
#include "child/jail.h"
#include "hatchery/error.h"
#include "vmproc.h"

struct vhu_backend_spawn {
	int conn_fd;      /* connected SOCK_STREAM: the VMM's vhost-user connection */
	int image_fd;     /* the disk image, opened by the supervisor (O_RDONLY for
			     ro/overlay, O_RDWR for rw) */
	int overlay_fd;   /* overlay: an empty regular file the layer lives in (the
			     supervisor opens it O_TMPFILE|O_RDWR in overlay_dir); -1
			     otherwise */
	bool read_only;   /* disk_mode = ro: the guest sees VIRTIO_BLK_F_RO */
	/* NULL: no jail (hatcheryd --no-jail); else jailed as a child, with the
	 * backend's own filter (field .filter: VMP_FILTER_VHOST_BLK). Used as
	 * given: uid, gid, as_extra (must cover the guest RAM the frontend
	 * maps: guest RAM + 64 MiB), flags, filter. Overridden: nproc 1 (the
	 * backend never forks nor makes threads), fsize the disk's size (0
	 * when read-only: nothing to write), nofile VHU_BACKEND_NOFILE when 0.
	 * report_fd and parent_pidfd, when >= 0, are kept through the fd
	 * hygiene (at VHU_CHILD_REPORT_FD, VHU_CHILD_PIDFD) and used as for a
	 * pool child; the pidfd is closed once the jail is in place. */
	const struct vmp_jail_config *jail;
};

/* The fixed fd numbers in the backend. */
#define VHU_CHILD_CONN_FD 3
#define VHU_CHILD_IMAGE_FD 4
#define VHU_CHILD_OVERLAY_FD 5 /* overlay mode only */
#define VHU_CHILD_REPORT_FD 6  /* only if jail->report_fd >= 0 */
#define VHU_CHILD_PIDFD 7      /* only if jail->parent_pidfd >= 0; closed after the jail */

/* RLIMIT_NOFILE when jail->nofile is 0: stdio, the socket, image and layer,
 * a ring's kick/call/err, and a message's fds (at most 8) in flight. */
#define VHU_BACKEND_NOFILE 32u

/* The backend's filter for `mode`: its own allowlist (vmproc/host/seccomp.c,
 * vhost_blk_allowed), compiled once by the supervisor. Free it with
 * vmp_jail_filter_free. Returns 0, or -1 with err. */
static inline int vhu_backend_filter_build(enum vmp_seccomp_mode mode,
					   struct vmp_jail_filter *out,
					   struct hatch_err *err)
{
	return vmp_jail_filter_build(mode, VMP_FILTER_VHOST_BLK, out, err);
}

/* In the freshly forked process: fd hygiene (keep only conn/image/overlay,
 * moved to fixed numbers, close everything else), the jail, then
 * vhu_backend_serve until the frontend hangs up. Never returns: _exit(0)
 * when the frontend hung up, _exit(1) with the reason on stderr otherwise. */
__attribute__((noreturn)) void vhu_backend_child_main(const struct vhu_backend_spawn *s);

/* vhu_backend_child_main's steps up to serving, for tests that try
 * escapes from the backend's jail: fd hygiene, *blk opened on the fixed
 * fds, the jail (info filled; not touched without one). Returns 0, or -1
 * with err: the process is then half set up and must exit. The connection
 * is VHU_CHILD_CONN_FD. */
int vhu_backend_child_enter(const struct vhu_backend_spawn *s, struct vhu_blk *blk,
			    struct vmp_jail_info *info, struct hatch_err *err);

#endif
