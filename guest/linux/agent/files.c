/* files.c - the file operations: WriteFile (streamed to disk as its chunks
 * come), ReadFile (streamed back in file_chunk frames), ListDir and Stat.
 * Every failure the guest's kernel reports is AGENT_ERROR with its errno
 * and a message naming the path; the VM serves on.
 *
 * WriteFile follows symlinks like a shell redirection would: the agent is
 * root in a guest whose programs are root too, so O_NOFOLLOW would guard
 * nothing and surprise callers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "hatchery/cleanup.h"

#define AGENT_ERROR HATCHERY__V1__ERROR_CODE__AGENT_ERROR
#define INVALID HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT
/* Budget for ListDir's entries: the reply's envelope stays far below the
 * rest of AGENT_MAX_FRAME. */
#define LIST_BUDGET (60u * 1024)

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- WriteFile ---------------------------------------------------------- */

struct wfile {
	int fd;
	const char *path;
	uint64_t written;
	struct hatch_err err; /* the first failure; later bytes are dropped */
};

static void wfile_put(struct wfile *f, const uint8_t *p, size_t n)
{
	if (f->err.code || n == 0)
		return;
	int r = write_all(f->fd, p, n);
	if (r < 0)
		hatch_err_set(&f->err, AGENT_ERROR, -r, "write %s", f->path);
	else
		f->written += n;
}

static void wfile_open(struct wfile *f, const Hatchery__V1__VmWriteFileRequest *w)
{
	mode_t mode = w->mode ? (mode_t)w->mode : 0644;
	f->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, mode);
	if (f->fd < 0) {
		hatch_err_set(&f->err, AGENT_ERROR, errno, "open %s", w->path);
		return;
	}
	/* An existing file keeps its mode and owner through O_TRUNC, and the
	 * umask trimmed a new one's: set both to what was asked. */
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		hatch_err_set(&f->err, AGENT_ERROR, errno, "fstat %s", w->path);
	else if ((st.st_mode & 07777) != mode && fchmod(f->fd, mode) < 0)
		hatch_err_set(&f->err, AGENT_ERROR, errno, "chmod %s", w->path);
	else if ((st.st_uid != w->uid || st.st_gid != w->gid) &&
		 fchown(f->fd, w->uid, w->gid) < 0)
		hatch_err_set(&f->err, AGENT_ERROR, errno, "chown %s", w->path);
}

void agent_write_file(struct agent *a, uint64_t id, const Hatchery__V1__VmWriteFileRequest *w,
		      const struct hatch_err *refused)
{
	struct wfile f = { .fd = -1, .path = w->path };
	if (refused)
		f.err = *refused; /* nothing is opened; the chunks are dropped */
	else
		wfile_open(&f, w);
	wfile_put(&f, w->data.data, w->data.len);
	uint64_t received = w->data.len;
	while (received < w->size) {
		Hatchery__V1__VmRequest *c = chan_recv(a);
		if (!c) {
			close(f.fd);
			return; /* the channel is gone: nobody to answer */
		}
		if (c->id != id || c->body_case != HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK) {
			/* The host broke the protocol: answer this write and
			 * serve what came as the next request. */
			a->pending = c;
			close(f.fd);
			struct hatch_err e;
			hatch_err_set(&e, INVALID, 0,
				      "write_file %s: %llu of %llu bytes came, then a "
				      "request that is not its file_chunk", w->path,
				      (unsigned long long)received, (unsigned long long)w->size);
			chan_send_error(a, id, &e);
			return;
		}
		size_t n = c->file_chunk->data.len;
		if (n > w->size - received) {
			hatchery__v1__vm_request__free_unpacked(c, NULL);
			close(f.fd);
			struct hatch_err e;
			hatch_err_set(&e, INVALID, 0,
				      "write_file %s: file_chunks carry more than size (%llu) bytes",
				      w->path, (unsigned long long)w->size);
			chan_send_error(a, id, &e);
			return;
		}
		wfile_put(&f, c->file_chunk->data.data, n);
		received += n;
		hatchery__v1__vm_request__free_unpacked(c, NULL);
	}
	if (f.fd >= 0 && close(f.fd) < 0 && !f.err.code)
		hatch_err_set(&f.err, AGENT_ERROR, errno, "close %s", w->path);
	if (f.err.code) {
		chan_send_error(a, id, &f.err);
		return;
	}
	Hatchery__V1__VmWriteFileReply wr = HATCHERY__V1__VM_WRITE_FILE_REPLY__INIT;
	wr.bytes_written = f.written;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_WRITE_FILE;
	r.write_file = &wr;
	chan_send(a, &r);
}

/* ---- ReadFile ----------------------------------------------------------- */

void agent_read_file(struct agent *a, uint64_t id, const Hatchery__V1__VmReadFileRequest *rq)
{
	uint64_t max = rq->max_size ? rq->max_size : AGENT_DEFAULT_READ_MAX;
	struct hatch_err e = { 0 };
	/* O_NONBLOCK: a FIFO or a terminal must not hold the agent; on a
	 * regular file it changes nothing. */
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = open(rq->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0) {
		hatch_err_set(&e, AGENT_ERROR, errno, "open %s", rq->path);
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		hatch_err_set(&e, AGENT_ERROR, errno, "fstat %s", rq->path);
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		hatch_err_set(&e, AGENT_ERROR, EISDIR, "read %s", rq->path);
		goto fail;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		hatch_err_set(&e, AGENT_ERROR, EFBIG, "read %s: %lld bytes, max_size %llu",
			      rq->path, (long long)st.st_size, (unsigned long long)max);
		goto fail;
	}
	buf = malloc(AGENT_CHUNK);
	if (!buf) {
		hatch_err_set(&e, AGENT_ERROR, ENOMEM, "read %s", rq->path);
		goto fail;
	}
	uint64_t sent = 0;
	for (;;) {
		ssize_t n = read(fd, buf, AGENT_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			hatch_err_set(&e, AGENT_ERROR, errno, "read %s", rq->path);
			goto fail;
		}
		if (n == 0)
			break;
		/* A file that grew, or one without a size (/proc, a device). */
		if ((uint64_t)n > max - sent) {
			hatch_err_set(&e, AGENT_ERROR, EFBIG, "read %s: more than max_size %llu bytes",
				      rq->path, (unsigned long long)max);
			goto fail;
		}
		Hatchery__V1__VmFileChunk ch = HATCHERY__V1__VM_FILE_CHUNK__INIT;
		ch.data.data = buf;
		ch.data.len = (size_t)n;
		Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
		r.id = id;
		r.body_case = HATCHERY__V1__VM_REPLY__BODY_FILE_CHUNK;
		r.file_chunk = &ch;
		if (chan_send(a, &r) < 0)
			return;
		sent += (uint64_t)n;
	}
	Hatchery__V1__VmReadFileReply rr = HATCHERY__V1__VM_READ_FILE_REPLY__INIT;
	rr.size = sent;
	rr.mode = st.st_mode;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_READ_FILE;
	r.read_file = &rr;
	chan_send(a, &r);
	return;
fail:
	chan_send_error(a, id, &e);
}

/* ---- ListDir and Stat --------------------------------------------------- */

/* Fill *fs from st; the link target goes into target (PATH_MAX + 1). */
static void fill_stat(Hatchery__V1__VmFileStat *fs, const struct stat *st, int dirfd,
		      const char *name, char *target)
{
	fs->mode = st->st_mode;
	fs->size = (uint64_t)st->st_size;
	fs->uid = st->st_uid;
	fs->gid = st->st_gid;
	fs->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000ll + st->st_mtim.tv_nsec;
	if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(dirfd, name, target, PATH_MAX);
		if (n >= 0) {
			target[n] = '\0';
			fs->link_target = target;
		}
	}
}

static int by_name(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static size_t varint_len(size_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

struct names {
	char **v;
	size_t n, cap;
};

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

void agent_list_dir(struct agent *a, uint64_t id, const Hatchery__V1__VmListDirRequest *rq)
{
	struct hatch_err e = { 0 };
	struct names l = { 0 };
	Hatchery__V1__VmFileStat *ents = NULL, **ptrs = NULL;
	char *targets = NULL;
	int fd = open(rq->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		hatch_err_set(&e, AGENT_ERROR, errno, "opendir %s", rq->path);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	/* All names first: the reply is sorted, and the first ones that fit
	 * are the ones sent. */
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				hatch_err_set(&e, AGENT_ERROR, errno, "readdir %s", rq->path);
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (l.n == l.cap) {
			size_t cap = l.cap ? l.cap * 2 : 64;
			char **v = realloc(l.v, cap * sizeof(*v));
			if (!v)
				break;
			l.v = v;
			l.cap = cap;
		}
		if (!(l.v[l.n] = strdup(de->d_name)))
			break;
		l.n++;
	}
	if (e.code)
		goto out;
	qsort(l.v, l.n, sizeof(*l.v), by_name);

	ents = calloc(l.n ? l.n : 1, sizeof(*ents));
	ptrs = calloc(l.n ? l.n : 1, sizeof(*ptrs));
	if (!ents || !ptrs) {
		hatch_err_set(&e, AGENT_ERROR, ENOMEM, "list %s", rq->path);
		goto out;
	}
	/* Targets share one buffer: together they are bounded by the budget
	 * (an entry that does not fit is not kept). */
	targets = malloc(LIST_BUDGET + PATH_MAX + 1);
	if (!targets) {
		hatch_err_set(&e, AGENT_ERROR, ENOMEM, "list %s", rq->path);
		goto out;
	}
	size_t used = 0, tused = 0, kept = 0;
	bool truncated = false;
	for (size_t i = 0; i < l.n; i++) {
		struct stat st;
		if (fstatat(dirfd(d), l.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed since readdir */
			hatch_err_set(&e, AGENT_ERROR, errno, "lstat %s/%s", rq->path, l.v[i]);
			goto out;
		}
		Hatchery__V1__VmFileStat *fs = &ents[kept];
		hatchery__v1__vm_file_stat__init(fs);
		fs->name = l.v[i];
		fill_stat(fs, &st, dirfd(d), l.v[i], targets + tused);
		size_t sz = hatchery__v1__vm_file_stat__get_packed_size(fs);
		sz += 1 + varint_len(sz); /* field tag + length */
		if (used + sz > LIST_BUDGET) {
			truncated = true;
			break;
		}
		used += sz;
		if (fs->link_target && fs->link_target[0] != '\0')
			tused += strlen(fs->link_target) + 1;
		ptrs[kept++] = fs;
	}
	Hatchery__V1__VmListDirReply lr = HATCHERY__V1__VM_LIST_DIR_REPLY__INIT;
	lr.n_entries = kept;
	lr.entries = ptrs;
	lr.truncated = truncated;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_LIST_DIR;
	r.list_dir = &lr;
	chan_send(a, &r);
out:
	if (e.code)
		chan_send_error(a, id, &e);
	if (d)
		closedir(d);
	free(targets);
	free(ptrs);
	free(ents);
	names_free(&l);
}

void agent_stat(struct agent *a, uint64_t id, const Hatchery__V1__VmStatRequest *rq)
{
	struct stat st;
	if (lstat(rq->path, &st) < 0) {
		struct hatch_err e;
		hatch_err_set(&e, AGENT_ERROR, errno, "lstat %s", rq->path);
		chan_send_error(a, id, &e);
		return;
	}
	char target[PATH_MAX + 1];
	Hatchery__V1__VmFileStat fs = HATCHERY__V1__VM_FILE_STAT__INIT;
	fs.name = rq->path;
	fill_stat(&fs, &st, AT_FDCWD, rq->path, target);
	Hatchery__V1__VmStatReply sr = HATCHERY__V1__VM_STAT_REPLY__INIT;
	sr.stat = &fs;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_STAT;
	r.stat = &sr;
	chan_send(a, &r);
}
