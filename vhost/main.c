/* main.c - hatchery-vhost-blk: a vhost-user block device backend.
 *
 *   hatchery-vhost-blk --socket PATH --image FILE [--read-only]
 *
 * Listens on PATH (a stale socket there is replaced; any other file is
 * not), serves one frontend connection (QEMU's vhost-user-blk, or
 * hatchery's own frontend when there is one) and exits when it ends:
 * 0 when the frontend hung up, 1 when we ended it (the reason on stderr).
 * Not yet: a jail, a seccomp filter, being started by the supervisor
 * (docs/vhost.md).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

struct options {
	const char *socket;
	const char *image;
	bool ro;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hatchery-vhost-blk --socket PATH --image FILE [--read-only]\n");
}

static int parse(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "s:i:rh", longopts, NULL)) != -1) {
		switch (c) {
		case 's': o->socket = optarg; break;
		case 'i': o->image = optarg; break;
		case 'r': o->ro = true; break;
		case 'h': usage(stdout); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (!o->socket || !o->image || optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* A socket file left by a backend that died is replaced; anything else
 * at the path is an error (we never unlink a user's file). */
static int bind_path(int fd, const char *path, struct hatch_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "socket path too long");
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "bind `%s`", path);
	return 0;
}

static int accept_one(const char *path, struct hatch_err *err)
{
	_cleanup_close_ int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "socket");
	if (bind_path(l, path, err) < 0)
		return -1;
	int c = -1;
	if (listen(l, 1) < 0)
		hatch_err_set(err, E(INTERNAL), errno, "listen `%s`", path);
	else
		while ((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
			;
	if (c < 0 && !err->msg[0])
		hatch_err_set(err, E(INTERNAL), errno, "accept `%s`", path);
	unlink(path); /* one connection: nobody else may connect */
	return c;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	int r = parse(argc, argv, &o);
	if (r != 0)
		return r < 0 ? 2 : 0;
	struct hatch_err err = { 0 };
	struct vhu_blk blk;
	if (vhu_blk_open(&blk, o.image, o.ro, &err) < 0) {
		fprintf(stderr, "hatchery-vhost-blk: %s\n", err.msg);
		return 1;
	}
	_cleanup_close_ int conn = accept_one(o.socket, &err);
	if (conn >= 0)
		r = vhu_backend_serve(conn, &blk, &err);
	vhu_blk_close(&blk);
	if (conn < 0 || r < 0) {
		fprintf(stderr, "hatchery-vhost-blk: %s\n", err.msg);
		return 1;
	}
	return 0;
}
