/* systemd.h - socket activation and sd_notify, without libsystemd.
 *
 * Both protocols are a few environment variables and one datagram socket
 * (sd_listen_fds(3), sd_notify(3)); hatchery speaks them itself rather
 * than depend on libsystemd.
 *
 *   main.c   sup_sd_listen_fd()  LISTEN_PID/LISTEN_FDS: the socket systemd
 *                                bound for us (hatcheryd.socket), checked to
 *                                be what we would have bound ourselves
 *            sup_sd_init()       NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID
 *   notify.c sup_sd_send()       READY=1, STATUS=, STOPPING=1, WATCHDOG=1
 *            (what to say and when is the event loop's business: notify.c)
 *
 * Every variable is unset once read, as sd_listen_fds(1)/sd_notify(1) do,
 * so nothing we start (nothing: hatcheryd never execs, but children that
 * inherit our environment clear it anyway) mistakes them for its own.
 * Without those variables everything here is a no-op.
 *
 * The parsers at the top are pure and unit-tested (tests/unit/test_systemd.c).
 */
#ifndef HATCHERY_SUP_SYSTEMD_H
#define HATCHERY_SUP_SYSTEMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "hatchery/error.h"

/* The first passed fd (SD_LISTEN_FDS_START). */
#define SUP_SD_LISTEN_FDS_START 3

/* ---- pure ---------------------------------------------------------------- */

/* LISTEN_PID and LISTEN_FDS (either may be NULL: unset) as sd_listen_fds(3)
 * reads them: the number of fds passed to `self`, 0 when none are (unset,
 * or LISTEN_PID names another process: the variables were inherited), or
 * -EINVAL when a value is not a number. */
int sup_sd_parse_listen(const char *listen_pid, const char *listen_fds, pid_t self);

/* NOTIFY_SOCKET's value as an AF_UNIX address: "/path", or "@name" for an
 * abstract socket. Returns 0, or -EINVAL (empty, relative, too long) /
 * -EAFNOSUPPORT (another family, e.g. "vsock:"). */
int sup_sd_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len);

/* WATCHDOG_USEC and WATCHDOG_PID (either may be NULL): the watchdog
 * interval in ns, 0 when there is none for `self`. */
uint64_t sup_sd_parse_watchdog(const char *usec, const char *pid, pid_t self);

/* ---- syscalls ------------------------------------------------------------ */

/* Socket activation. Sets *fd to the listening socket systemd passed
 * (made close-on-exec and non-blocking) and writes its path into
 * path[len], or sets *fd = -1 when we were not activated. Fails with a
 * message naming what is wrong when fds were passed but are not exactly
 * one listening AF_UNIX SOCK_SEQPACKET socket bound to a path. Unsets
 * LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. The fd is the caller's. */
int sup_sd_listen_fd(int *fd, char *path, size_t len, struct hatch_err *err);

struct sup_sd {
	int fd;                     /* datagram socket to NOTIFY_SOCKET, -1: none */
	struct sockaddr_un addr;
	socklen_t addr_len;
	uint64_t watchdog_ns;       /* 0: no watchdog */
	bool warned;                /* a failed send was logged once */
};

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (and unset them).
 * Never fails: a malformed NOTIFY_SOCKET is reported on stderr and
 * ignored (systemd then times the start-up out, with our message in the
 * journal). */
void sup_sd_init(struct sup_sd *sd);

/* Is anyone listening? */
static inline bool sup_sd_enabled(const struct sup_sd *sd)
{
	return sd->fd >= 0;
}

/* Send one notification ("READY=1\nSTATUS=..."); a no-op without
 * NOTIFY_SOCKET. Never blocks; a failure is logged once and otherwise
 * ignored (the supervisor never stops serving because systemd did not
 * listen). Returns 0 or -errno. */
int sup_sd_send(struct sup_sd *sd, const char *msg);

void sup_sd_close(struct sup_sd *sd);

#endif
