/* main.c - hatchery-vhost-blk: a vhost-user block device backend.
 *
 *   hatchery-vhost-blk --socket PATH --image FILE [--read-only | --overlay[=DIR]]
 *
 * --overlay: FILE is a read-only base; the guest's writes go to a private
 * sparse layer, an unlinked file (O_TMPFILE) in DIR (default: FILE's
 * directory), gone when the program exits (blk.h).
 * Listens on PATH (a stale socket there is replaced; any other file is
 * not), serves one frontend connection (QEMU's vhost-user-blk, or
 * hatchery's own frontend when there is one) and exits when it ends:
 * 0 when the frontend hung up, 1 when we ended it (the reason on stderr).
 * No jail here: the jailed backend is vhu_backend_child_main
 * (backend_child.h), which the supervisor forks (docs/vhost.md).
 */
#include <errno.h>
#include <fcntl.h>
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
	bool overlay;
	const char *overlay_dir; /* NULL: the image's directory */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hatchery-vhost-blk --socket PATH --image FILE "
		   "[--read-only | --overlay[=DIR]]\n");
}

static int parse(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "overlay", optional_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "s:i:rh", longopts, NULL)) != -1) {
		switch (c) {
		case 's': o->socket = optarg; break;
		case 'i': o->image = optarg; break;
		case 'r': o->ro = true; break;
		case 'o': o->overlay = true; o->overlay_dir = optarg; break;
		case 'h': usage(stdout); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (!o->socket || !o->image || optind != argc || (o->ro && o->overlay)) {
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

/* The layer goes next to the image unless a directory was given. */
static int open_overlay(const struct options *o, struct vhu_blk *blk,
			struct hatch_err *err)
{
	int image = open(o->image, O_RDONLY | O_CLOEXEC);
	if (image < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "image `%s`", o->image);
	char dir[4096];
	const char *slash = strrchr(o->image, '/');
	if (o->overlay_dir)
		snprintf(dir, sizeof(dir), "%s", o->overlay_dir);
	else if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - o->image + 1), o->image);
	else
		snprintf(dir, sizeof(dir), ".");
	int layer = vhu_blk_layer_tmpfile(dir, err);
	if (layer < 0) {
		close(image);
		return -1;
	}
	const char *base = slash ? slash + 1 : o->image;
	if (vhu_blk_open_fd(blk, image, layer, false, base, err) < 0)
		return hatch_err_wrap(err, "image `%s`", o->image);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	int r = parse(argc, argv, &o);
	if (r != 0)
		return r < 0 ? 2 : 0;
	struct hatch_err err = { 0 };
	struct vhu_blk blk;
	r = o.overlay ? open_overlay(&o, &blk, &err) : vhu_blk_open(&blk, o.image, o.ro, &err);
	if (r < 0) {
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
