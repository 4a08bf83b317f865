/* systemd.c - socket activation and sd_notify without libsystemd
 * (systemd.h says what each part is for). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "systemd.h"

#define E_PRECOND HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION

/* ---- pure ---------------------------------------------------------------- */

/* A decimal number with nothing around it, at most `max`. */
static int parse_ulong(const char *s, unsigned long long max, unsigned long long *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int sup_sd_parse_listen(const char *listen_pid, const char *listen_fds, pid_t self)
{
	unsigned long long pid, n;
	if (!listen_pid)
		return 0;
	if (parse_ulong(listen_pid, (unsigned long long)INT32_MAX, &pid) < 0)
		return -EINVAL;
	/* Inherited from a parent that was activated: not ours. */
	if ((pid_t)pid != self)
		return 0;
	if (!listen_fds)
		return 0;
	if (parse_ulong(listen_fds, 65536, &n) < 0)
		return -EINVAL;
	return (int)n;
}

int sup_sd_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!value || !*value)
		return -EINVAL;
	if (value[0] != '/' && value[0] != '@')
		return strchr(value, ':') ? -EAFNOSUPPORT : -EINVAL;
	size_t n = strlen(value);
	if (n < 2 || n > sizeof(sa->sun_path) - (value[0] == '/'))
		return -EINVAL;
	memcpy(sa->sun_path, value, n);
	if (value[0] == '@') {
		/* Abstract: a leading NUL, and the length says where it ends. */
		sa->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

uint64_t sup_sd_parse_watchdog(const char *usec, const char *pid, pid_t self)
{
	unsigned long long us, p;
	if (parse_ulong(usec, UINT64_MAX / 1000, &us) < 0 || us == 0)
		return 0;
	/* WATCHDOG_PID is optional; when set it must be us (NotifyAccess=main). */
	if (pid && (parse_ulong(pid, (unsigned long long)INT32_MAX, &p) < 0 ||
		    (pid_t)p != self))
		return 0;
	return (uint64_t)us * 1000u;
}

/* ---- syscalls ------------------------------------------------------------ */

static const char *type_name(int type)
{
	switch (type) {
	case SOCK_STREAM: return "SOCK_STREAM (ListenStream=)";
	case SOCK_DGRAM: return "SOCK_DGRAM (ListenDatagram=)";
	case SOCK_SEQPACKET: return "SOCK_SEQPACKET";
	default: return "another type";
	}
}

int sup_sd_listen_fd(int *fd, char *path, size_t len, struct hatch_err *err)
{
	*fd = -1;
	int n = sup_sd_parse_listen(getenv("LISTEN_PID"), getenv("LISTEN_FDS"), getpid());
	const char *fds_s = getenv("LISTEN_FDS");
	char fds_copy[32];
	snprintf(fds_copy, sizeof(fds_copy), "%s", fds_s ? fds_s : "");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n == 0)
		return 0;
	if (n < 0)
		return hatch_err_set(err, E_PRECOND, 0,
				     "socket activation: LISTEN_PID/LISTEN_FDS are not "
				     "numbers (LISTEN_FDS=\"%s\")", fds_copy);
	if (n != 1)
		return hatch_err_set(err, E_PRECOND, 0,
				     "socket activation: systemd passed %d sockets "
				     "(LISTEN_FDS=%d), hatcheryd takes exactly one: one "
				     "ListenSequentialPacket= in hatcheryd.socket", n, n);
	int lfd = SUP_SD_LISTEN_FDS_START;
	const char *want = "socket activation: fd 3 (LISTEN_FDS=1) must be a "
			   "listening AF_UNIX SOCK_SEQPACKET socket bound to a path "
			   "(ListenSequentialPacket=/run/hatchery/hatchery.sock in "
			   "hatcheryd.socket)";
	struct stat st;
	if (fstat(lfd, &st) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "%s, but it is not open", want);
	if (!S_ISSOCK(st.st_mode))
		return hatch_err_set(err, E_PRECOND, 0, "%s, but it is not a socket", want);
	int v = 0;
	socklen_t vl = sizeof(v);
	if (getsockopt(lfd, SOL_SOCKET, SO_DOMAIN, &v, &vl) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "%s: SO_DOMAIN", want);
	if (v != AF_UNIX)
		return hatch_err_set(err, E_PRECOND, 0, "%s, but it is of address "
				     "family %d, not AF_UNIX", want, v);
	vl = sizeof(v);
	if (getsockopt(lfd, SOL_SOCKET, SO_TYPE, &v, &vl) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "%s: SO_TYPE", want);
	if (v != SOCK_SEQPACKET)
		return hatch_err_set(err, E_PRECOND, 0, "%s, but it is %s", want,
				     type_name(v));
	vl = sizeof(v);
	if (getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "%s: SO_ACCEPTCONN", want);
	if (!v)
		return hatch_err_set(err, E_PRECOND, 0, "%s, but it is not listening "
				     "(a connected socket? Accept=yes is not supported)", want);
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "%s: getsockname", want);
	size_t plen = sl > offsetof(struct sockaddr_un, sun_path)
			      ? sl - offsetof(struct sockaddr_un, sun_path) : 0;
	if (plen == 0 || sa.sun_path[0] != '/')
		return hatch_err_set(err, E_PRECOND, 0, "%s, but it is %s", want,
				     plen == 0 ? "unbound" : "an abstract socket");
	/* It is ours now: no fd of the supervisor may leak into a child, and
	 * the loop's accept4 runs until EAGAIN. systemd hands it over blocking
	 * (NonBlocking=no); the flag is on the shared file description, which
	 * systemd does not read from while we run. */
	int fl = fcntl(lfd, F_GETFL);
	if (fcntl(lfd, F_SETFD, FD_CLOEXEC) < 0 || fl < 0 ||
	    fcntl(lfd, F_SETFL, fl | O_NONBLOCK) < 0)
		return hatch_err_set(err, E_PRECOND, errno, "socket activation: fcntl fd 3");
	snprintf(path, len, "%.*s", (int)strnlen(sa.sun_path, plen), sa.sun_path);
	*fd = lfd;
	return 0;
}

void sup_sd_init(struct sup_sd *sd)
{
	memset(sd, 0, sizeof(*sd));
	sd->fd = -1;
	const char *ns = getenv("NOTIFY_SOCKET");
	sd->watchdog_ns = sup_sd_parse_watchdog(getenv("WATCHDOG_USEC"),
						 getenv("WATCHDOG_PID"), getpid());
	if (ns) {
		int r = sup_sd_notify_addr(ns, &sd->addr, &sd->addr_len);
		if (r < 0)
			fprintf(stderr, "hatcheryd: NOTIFY_SOCKET=\"%s\": %s; not "
					"notifying systemd\n", ns,
				r == -EAFNOSUPPORT ? "only AF_UNIX addresses are supported"
						   : "not an absolute path or @abstract name");
		else if ((sd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
			fprintf(stderr, "hatcheryd: NOTIFY_SOCKET: socket: %s; not "
					"notifying systemd\n", strerror(errno));
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	if (sd->fd < 0)
		sd->watchdog_ns = 0; /* nobody to tell */
}

int sup_sd_send(struct sup_sd *sd, const char *msg)
{
	if (sd->fd < 0)
		return 0;
	ssize_t n;
	do
		n = sendto(sd->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
			   (const struct sockaddr *)&sd->addr, sd->addr_len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return 0;
	int e = errno;
	if (!sd->warned) {
		sd->warned = true;
		fprintf(stderr, "hatcheryd: NOTIFY_SOCKET: sendto: %s (\"%.40s...\"); "
				"further failures are not logged\n", strerror(e), msg);
	}
	return -e;
}

void sup_sd_close(struct sup_sd *sd)
{
	if (sd->fd >= 0)
		close(sd->fd);
	sd->fd = -1;
}
