/* server.h - hatcheryd's event loop: one epoll, no threads.
 *
 * Internal to supervisor/. main.c loads the config and probes /dev/kvm,
 * then hands both to sup_server_run(), which owns every fd and child until
 * it returns (after SIGTERM/SIGINT, with every child reaped and the socket
 * unlinked, unless systemd passed it: systemd.h).
 */
#ifndef HATCHERY_SUP_SERVER_H
#define HATCHERY_SUP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "config.h"
#include "hatchery/error.h"
#include "pool.h"
#include "systemd.h"
#include "vmproc.h"

struct sup_server_opts {
	/* Not owned. The first reload releases its assets
	 * (sup_config_release_assets); from then on only what a reload
	 * cannot change is read here ([supervisor] socket, socket_mode,
	 * jail_uid_base). The running configuration is the server's cfg. */
	struct sup_config *cfg;
	const char *config_path;          /* what a reload re-reads */
	const char *socket_override;      /* --socket, or NULL: applied to a
	                                   * reloaded configuration too */
	const struct vmp_kvm_host *kvm;   /* not owned; kvm_fd inherited by children */
	bool verbose;
	bool no_jail;                     /* --no-jail: children run as we do */
	/* Not root: every child gets a user namespace too, mapping only our
	 * own uid/gid, and all children run as that one uid. */
	bool rootless;
	/* Compiled once at start-up, one per guest kind's profile and
	 * seccomp mode; not owned. */
	const struct vmp_jail_filter (*filters)[VMP_SECCOMP__N]; /* [VMP_FILTER__N] */
	const struct sup_cgroup *cgroup;  /* not owned */
	int devnull_fd;                   /* /dev/null, the children's stdin/stdout */
	int self_pidfd;                   /* our own pidfd, inherited by children */
	/* Socket activation: the listening socket systemd passed (the server
	 * takes it over and closes it), or -1 to bind cfg->socket_path. A
	 * passed socket is systemd's: it is never unlinked. */
	int listen_fd;
	struct sup_sd *sd;                /* sd_notify state; not owned, never NULL */
};

/* Fails with a message if a live hatcheryd already listens at `path`; a
 * stale socket file from a crash is fine (it is replaced at bind). */
int sup_socket_check_free(const char *path, struct hatch_err *err);

/* Bind the socket, fill the pools and serve until SIGTERM/SIGINT.
 * Returns 0 after a clean shutdown, -1 with err on a start-up failure. */
int sup_server_run(const struct sup_server_opts *o, struct hatch_err *err);

/* spawn.c: fork one child of its pool (clone3 with CLONE_PIDFD, the jail's
 * namespaces and CLONE_INTO_CGROUP unless --no-jail / no cgroup). c->slot
 * must be set. In the child, enters vmp_child_main and never returns. In
 * the parent fills c->pid, c->pidfd, c->ctrl_fd (nonblocking) and
 * c->in_cgroup. Returns 0 or -1 with err. */
int sup_spawn(struct sup_child *c, const struct sup_server_opts *o,
	      struct hatch_err *err);

/* spawn.c: start-up check that no process on the host runs with a uid in
 * [base, base + n) (scans /proc/[pid]/status). Returns 0, or -1 with err
 * naming the first such process. */
int sup_jail_check_uids(uid_t base, unsigned n, struct hatch_err *err);

/* log.c: one line to stderr; sup_debug only with -v. */
void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sup_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


#endif
