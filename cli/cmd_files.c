/* cmd_files.c - cp, ls, stat, console: one-shot leases of a Linux VM (the
 * VM is discarded after each command), and the upload/download that exec's
 * --put/--get share. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchctl.h"

int hx_parse_bytes(const char *s, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

/* The last component of a path, without copying ("a/b/" -> "b/" is not
 * wanted: callers pass names that do not end in '/'). */
static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* Copy `fd` to an unlinked temporary file and rewind it: WriteFile must
 * announce its size before the first byte, which a pipe cannot tell. */
static int spool(int fd, const char *what, struct hatch_err *err)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	_cleanup_close_ int tmp = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tmp < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "spool %s: temporary file in %s",
				     what, dir);
	static uint8_t buf[64 * 1024];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "read %s", what);
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(tmp, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return hatch_err_set(err, E(INTERNAL), errno, "spool %s", what);
			off += w;
		}
	}
	if (lseek(tmp, 0, SEEK_SET) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "spool %s", what);
	return steal_fd(&tmp);
}

int hx_upload(int vm_fd, const char *local, const char *remote, uint64_t *bytes,
	      struct hatch_err *err)
{
	bool from_stdin = strcmp(local, "-") == 0;
	_cleanup_close_ int fd = from_stdin ? fcntl(0, F_DUPFD_CLOEXEC, 0)
						 : open(local, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "open %s", local);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "stat %s", local);
	if (S_ISDIR(st.st_mode))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "%s is a directory (copy files one by one)", local);
	/* stdin has no name whose mode would mean anything to the reader. */
	uint32_t mode = from_stdin ? 0644 : st.st_mode & 07777;
	uint64_t size = (uint64_t)st.st_size;
	off_t at = S_ISREG(st.st_mode) ? lseek(fd, 0, SEEK_CUR) : 0;
	if (at > 0 && (uint64_t)at <= size) /* stdin may be a file half read */
		size -= (uint64_t)at;
	if (!S_ISREG(st.st_mode)) {
		int t = spool(fd, from_stdin ? "stdin" : local, err);
		if (t < 0)
			return -1;
		close(fd);
		fd = t;
		mode = 0644;
		if (fstat(fd, &st) < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "stat spooled %s", local);
		size = (uint64_t)st.st_size;
	}
	/* "REMOTE/": keep the local name, as cp does with a directory. */
	char *path = NULL;
	size_t rl = strlen(remote);
	if (rl && remote[rl - 1] == '/' && !from_stdin) {
		if (asprintf(&path, "%s%s", remote, base_name(local)) < 0)
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "upload");
	}
	const char *dst = path ? path : remote;
	int r = hatch_vm_write_file(vm_fd, dst, mode, 0, 0, fd, size, NULL, err);
	if (r < 0)
		hatch_err_wrap(err, "put %s to %s", local, dst);
	else if (bytes)
		*bytes = size;
	free(path);
	return r;
}

int hx_download(int vm_fd, const char *remote, const char *local, uint64_t max_size,
		uint64_t *bytes, struct hatch_err *err)
{
	Hatchery__V1__VmReadFileReply *rep = NULL;
	if (strcmp(local, "-") == 0) {
		if (fflush(stdout) != 0) /* what was printed before comes first */
			return hatch_err_set(err, E(INTERNAL), errno, "write to stdout");
		if (hatch_vm_read_file(vm_fd, remote, max_size, 1, &rep, err) < 0)
			return hatch_err_wrap(err, "get %s", remote);
		if (bytes)
			*bytes = rep->size;
		hatch_free(rep);
		return 0;
	}

	_cleanup_free_ char *target = NULL;
	struct stat st;
	if (stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (asprintf(&target, "%s/%s", local, base_name(remote)) < 0)
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "download");
	} else if (!(target = strdup(local))) {
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "download");
	}
	/* A temporary name in the same directory, so rename() is atomic. */
	_cleanup_free_ char *tmpl = NULL;
	if (asprintf(&tmpl, "%s.hatchctl-XXXXXX", target) < 0)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "download");
	_cleanup_close_ int fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "create %s", tmpl);
	int r = hatch_vm_read_file(vm_fd, remote, max_size, fd, &rep, err);
	if (r < 0) {
		hatch_err_wrap(err, "get %s", remote);
		unlink(tmpl);
		return -1;
	}
	mode_t um = umask(0);
	umask(um);
	uint64_t size = rep->size;
	mode_t mode = (mode_t)(rep->mode & 0777) & ~um;
	hatch_free(rep);
	if (fchmod(fd, mode) < 0 || rename(tmpl, target) < 0) {
		hatch_err_set(err, E(INTERNAL), errno, "get %s: finish %s", remote, target);
		unlink(tmpl);
		return -1;
	}
	if (bytes)
		*bytes = size;
	return 0;
}

/* --- cp ------------------------------------------------------------------- */

/* "POOL:PATH" names a VM's file; a local path with a ':' in its first
 * component is written "./a:b". *colon is where POOL ends. */
static bool is_remote(const char *arg, const char **colon)
{
	const char *c = strchr(arg, ':');
	const char *slash = strchr(arg, '/');
	if (!c || c == arg || (slash && slash < c))
		return false;
	*colon = c;
	return true;
}

/* Lease one VM of `pool` with the CLI's defaults; hatch_fail()s on error. */
static int lease(const struct hx_ctx *cx, const char *pool, unsigned deadline_ms,
		 struct hatch_err *err)
{
	Hatchery__V1__AcquireReply *a = NULL;
	int fd = hx_lease_vm(cx, pool, deadline_ms, cx->timeout_ms, &a, NULL, err);
	hatch_free(a);
	return fd;
}

static const struct option cp_opts[] = {
	{ "deadline", required_argument, NULL, OPT_DEADLINE },
	{ "max-size", required_argument, NULL, 'm' },
	{ 0 },
};

/* cp [--deadline MS] [--max-size BYTES] SRC DST: one side POOL:PATH. */
int cmd_cp(const struct hx_ctx *cx, int argc, char **argv)
{
	unsigned deadline = LINUX_DEADLINE_MS;
	uint64_t max_size = 0;
	const char *pos[2];
	int npos = 0;
	optind = 0;
	opterr = 1;
	int c;
	argv[0] = (char *)"hatchctl cp";
	while ((c = getopt_long(argc, argv, "+", cp_opts, NULL)) != -1 || optind < argc) {
		if (c == -1) { /* a positional argument; options may follow it */
			if (npos == 2)
				return hx_usage_error("cp: unexpected argument '%s'", argv[optind]);
			pos[npos++] = argv[optind++];
			continue;
		}
		if (c == OPT_DEADLINE) {
			if (hx_parse_ms(optarg, &deadline) < 0)
				return hx_usage_error("cp: --deadline wants milliseconds in 0..%u, not '%s'",
						      MAX_MS, optarg);
		} else if (c == 'm') {
			if (hx_parse_bytes(optarg, &max_size) < 0)
				return hx_usage_error("cp: --max-size wants a byte count, not '%s'",
						      optarg);
		} else {
			fprintf(stderr, "Try 'hatchctl help'.\n");
			return HX_USAGE;
		}
	}
	if (npos < 2)
		return hx_usage_error("cp: missing SRC DST");
	const char *cs = NULL, *cd = NULL;
	bool rs = is_remote(pos[0], &cs), rd = is_remote(pos[1], &cd);
	if (rs == rd)
		return hx_usage_error("cp: exactly one of SRC and DST must be POOL:PATH");
	const char *spec = rs ? pos[0] : pos[1], *colon = rs ? cs : cd;
	const char *rpath = colon + 1;
	if (*rpath != '/')
		return hx_usage_error("cp: the guest path '%s' must be absolute", rpath);
	char pool[256];
	if ((size_t)(colon - spec) >= sizeof(pool))
		return hx_usage_error("cp: pool name too long");
	memcpy(pool, spec, (size_t)(colon - spec));
	pool[colon - spec] = '\0';

	struct hatch_err err = { 0 };
	_cleanup_close_ int vm_fd = lease(cx, pool, deadline, &err);
	if (vm_fd < 0)
		return hx_fail(&err);
	int r = rs ? hx_download(vm_fd, rpath, pos[1], max_size, NULL, &err)
		   : hx_upload(vm_fd, pos[0], rpath, NULL, &err);
	if (r < 0)
		return hx_fail(&err);
	/* The lease ends here and the VM with it: what was copied in is gone.
	 * (exec --put/--get keep one VM for several steps.) */
	if (hatch_vm_release(steal_fd(&vm_fd), &err) < 0)
		return hx_fail(&err);
	return rs && strcmp(pos[1], "-") == 0 ? hx_finish_stdout() : HX_OK;
}

/* --- ls, stat ---------------------------------------------------------------- */

static const struct option path_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ "deadline", required_argument, NULL, OPT_DEADLINE },
	{ 0 },
};

/* "drwxr-xr-x" from st_mode, as ls -l writes it. */
static void mode_string(uint32_t m, char out[11])
{
	static const char types[] = "?pc?d?b?-?l?s???";
	out[0] = types[(m >> 12) & 017];
	const char *rwx = "rwxrwxrwx";
	for (int i = 0; i < 9; i++)
		out[1 + i] = (m & (0400u >> i)) ? rwx[i] : '-';
	if (m & 04000)
		out[3] = (m & 0100) ? 's' : 'S';
	if (m & 02000)
		out[6] = (m & 0010) ? 's' : 'S';
	if (m & 01000)
		out[9] = (m & 0001) ? 't' : 'T';
	out[10] = '\0';
}

static void format_mtime(char *buf, size_t len, int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "?");
}

static void stat_json(struct json *j, const char *key, const Hatchery__V1__VmFileStat *s)
{
	json_open(j, key, '{');
	json_str(j, "name", s->name);
	json_u64(j, "mode", s->mode);
	json_u64(j, "size", s->size);
	json_u64(j, "uid", s->uid);
	json_u64(j, "gid", s->gid);
	json_i64(j, "mtime_ns", s->mtime_ns);
	if (s->link_target && *s->link_target)
		json_str(j, "link_target", s->link_target);
	json_close(j, '}');
}

/* A one-shot lease for ls, stat: POOL PATH [--json] [--deadline MS]. */
static int path_cmd(const struct hx_ctx *cx, int argc, char **argv, struct hx_opts *o,
		    struct hatch_err *err)
{
	o->deadline_ms = LINUX_DEADLINE_MS;
	int r = hx_parse_cmd(argc, argv, path_opts, 2, "POOL PATH", o);
	if (r != HX_OK)
		return -r;
	if (!*o->args[0] || !*o->args[1])
		return -hx_usage_error("POOL and PATH must not be empty");
	int fd = lease(cx, o->args[0], o->deadline_ms, err);
	return fd < 0 ? -hx_fail(err) : fd;
}

/* ls POOL PATH: the directory's entries as ls -l shows them (UTC times). */
int cmd_ls(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { 0 };
	struct hatch_err err = { 0 };
	_cleanup_close_ int vm_fd = path_cmd(cx, argc, argv, &o, &err);
	if (vm_fd < 0)
		return -vm_fd;
	Hatchery__V1__VmListDirReply *l = NULL;
	if (hatch_vm_list_dir(vm_fd, o.args[1], &l, &err) < 0) {
		hatch_err_wrap(&err, "ls %s", o.args[1]);
		return hx_fail(&err);
	}
	hatch_vm_release(steal_fd(&vm_fd), &err);
	int r = HX_OK;
	if (o.json) {
		struct json j = { 0 };
		json_open(&j, NULL, '{');
		json_str(&j, "path", o.args[1]);
		json_open(&j, "entries", '[');
		for (size_t i = 0; i < l->n_entries; i++)
			stat_json(&j, NULL, l->entries[i]);
		json_close(&j, ']');
		json_bool(&j, "truncated", l->truncated);
		json_close(&j, '}');
		putchar('\n');
	} else {
		struct table t = { .ncols = 6, .align = "lrrrll" };
		for (size_t i = 0; i < l->n_entries; i++) {
			const Hatchery__V1__VmFileStat *s = l->entries[i];
			char mode[11], when[32];
			mode_string(s->mode, mode);
			format_mtime(when, sizeof(when), s->mtime_ns);
			table_cell(&t, "%s", mode);
			table_cell(&t, "%u", s->uid);
			table_cell(&t, "%u", s->gid);
			table_cell(&t, "%llu", (unsigned long long)s->size);
			table_cell(&t, "%s", when);
			if (s->link_target && *s->link_target)
				table_cell(&t, "%s -> %s", s->name, s->link_target);
			else
				table_cell(&t, "%s", s->name);
		}
		r = table_flush(&t);
	}
	if (l->truncated)
		fprintf(stderr, "%s: ls %s: more entries than fit one reply; %zu shown\n",
			hx_prog, o.args[1], l->n_entries);
	hatch_free(l);
	return r == HX_OK ? hx_finish_stdout() : r;
}

static const char *type_name(uint32_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "regular file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symbolic link";
	case S_IFCHR: return "character device";
	case S_IFBLK: return "block device";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	default: return "unknown";
	}
}

/* stat POOL PATH: lstat(2) of a guest path. */
int cmd_stat(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { 0 };
	struct hatch_err err = { 0 };
	_cleanup_close_ int vm_fd = path_cmd(cx, argc, argv, &o, &err);
	if (vm_fd < 0)
		return -vm_fd;
	Hatchery__V1__VmStatReply *rep = NULL;
	if (hatch_vm_stat(vm_fd, o.args[1], &rep, &err) < 0) {
		hatch_err_wrap(&err, "stat %s", o.args[1]);
		return hx_fail(&err);
	}
	hatch_vm_release(steal_fd(&vm_fd), &err);
	const Hatchery__V1__VmFileStat *s = rep->stat;
	if (o.json) {
		struct json j = { 0 };
		stat_json(&j, NULL, s);
		putchar('\n');
	} else {
		char mode[11], when[32];
		mode_string(s->mode, mode);
		format_mtime(when, sizeof(when), s->mtime_ns);
		struct table t = { .ncols = 2, .align = "ll" };
		table_cell(&t, "path");
		table_cell(&t, "%s", s->name);
		table_cell(&t, "type");
		table_cell(&t, "%s", type_name(s->mode));
		table_cell(&t, "mode");
		table_cell(&t, "%04o (%s)", s->mode & 07777, mode);
		table_cell(&t, "size");
		table_cell(&t, "%llu", (unsigned long long)s->size);
		table_cell(&t, "owner");
		table_cell(&t, "%u:%u", s->uid, s->gid);
		table_cell(&t, "mtime");
		table_cell(&t, "%s.%09lld UTC", when, (long long)(s->mtime_ns % 1000000000));
		if (s->link_target && *s->link_target) {
			table_cell(&t, "link");
			table_cell(&t, "%s", s->link_target);
		}
		int r = table_flush(&t);
		if (r != HX_OK) {
			hatch_free(rep);
			return r;
		}
	}
	hatch_free(rep);
	return hx_finish_stdout();
}

/* --- console ----------------------------------------------------------------- */

static const struct option deadline_opts[] = {
	{ "deadline", required_argument, NULL, OPT_DEADLINE },
	{ 0 },
};

/* console POOL: the guest's kernel and the tail of its serial console, as
 * the child kept them (how a VM that will not serve is diagnosed). The
 * console is the guest's: escape sequences in it are defused, only
 * newlines and tabs pass. */
int cmd_console(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { .deadline_ms = LINUX_DEADLINE_MS };
	int r = hx_parse_cmd(argc, argv, deadline_opts, 1, "POOL", &o);
	if (r != HX_OK)
		return r;
	struct hatch_err err = { 0 };
	_cleanup_close_ int vm_fd = lease(cx, o.args[0], o.deadline_ms, &err);
	if (vm_fd < 0)
		return hx_fail(&err);
	Hatchery__V1__VmInfoReply *vi = NULL;
	if (hatch_vm_info(vm_fd, &vi, &err) < 0)
		return hx_fail(&err);
	hatch_vm_release(steal_fd(&vm_fd), &err);
	printf("kernel: ");
	put_clean(*vi->kernel_release ? vi->kernel_release : "(none: not a Linux guest)");
	printf("\n--- console tail ---\n");
	for (const char *p = vi->console_tail; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		putchar(ch == '\n' || ch == '\t' || (ch >= 0x20 && ch != 0x7f) ? ch : '?');
	}
	size_t n = strlen(vi->console_tail);
	if (n && vi->console_tail[n - 1] != '\n')
		putchar('\n');
	hatch_free(vi);
	return hx_finish_stdout();
}
