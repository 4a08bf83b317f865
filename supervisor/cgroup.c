/* cgroup.c - per-child cgroup v2: discovery, the pool tree, child dirs. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL
#define E_PRECOND HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION

static const char *const needed[] = { "memory", "pids", "cpu" };

/* ---- pure ---------------------------------------------------------------- */

/* mountinfo escapes blanks, tabs, newlines and backslashes as \ooo. */
static int unescape_field(const char *s, size_t n, char *out, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\' && i + 3 < n + 1 && s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' &&
		    s[i + 3] <= '7') {
			c = (char)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 |
				   (s[i + 3] - '0'));
			i += 3;
		}
		if (o + 1 >= len)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

int sup_cgroup_find_v2_mount(const char *mountinfo, char *out, size_t len)
{
	for (const char *l = mountinfo; l && *l; ) {
		const char *eol = strchr(l, '\n');
		size_t ll = eol ? (size_t)(eol - l) : strlen(l);
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE ..." */
		const char *f[5];
		size_t fl[5];
		const char *p = l, *end = l + ll;
		int nf = 0;
		while (nf < 5 && p < end) {
			while (p < end && *p == ' ')
				p++;
			const char *q = p;
			while (q < end && *q != ' ')
				q++;
			f[nf] = p;
			fl[nf++] = (size_t)(q - p);
			p = q;
		}
		const char *dash = NULL;
		for (const char *q = p; q + 2 < end; q++)
			if (q[0] == ' ' && q[1] == '-' && q[2] == ' ') {
				dash = q + 3;
				break;
			}
		if (nf == 5 && dash && (size_t)(end - dash) >= 8 &&
		    strncmp(dash, "cgroup2 ", 8) == 0)
			return unescape_field(f[4], fl[4], out, len);
		l = eol ? eol + 1 : NULL;
	}
	return -1;
}

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; *p; ) {
		p += strspn(p, " \t\n");
		size_t k = strcspn(p, " \t\n");
		if (k == n && strncmp(p, w, n) == 0)
			return true;
		p += k;
	}
	return false;
}

int sup_cgroup_missing_controllers(const char *controllers, char *missing,
				   size_t len)
{
	int n = 0;
	size_t o = 0;
	if (len)
		missing[0] = '\0';
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(needed); i++) {
		if (has_word(controllers, needed[i]))
			continue;
		n++;
		if (o < len)
			o += (size_t)snprintf(missing + o, len - o, "%s%s",
					      o ? " " : "", needed[i]);
	}
	return n;
}

int sup_cgroup_child_path(char *out, size_t len, const char *base,
			  const char *pool, uint64_t id)
{
	int n = snprintf(out, len, "%s/%s/child-%llu", base, pool,
			 (unsigned long long)id);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

void sup_cgroup_cpu_max(unsigned pct, char *out, size_t len)
{
	if (pct == 0)
		snprintf(out, len, "max 100000");
	else
		snprintf(out, len, "%u 100000", pct * 1000);
}

const char *sup_cgroup_v2_self(const char *proc_self_cgroup)
{
	/* cgroup v2's line is "0::/path"; v1 hierarchies have other ids. */
	for (const char *l = proc_self_cgroup; l && *l; ) {
		if (strncmp(l, "0::", 3) == 0)
			return l + 3;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return NULL;
}

/* ---- syscalls ------------------------------------------------------------ */

static int read_file(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, len - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0 || n + (size_t)r >= len - 1) {
			n += (size_t)r;
			break;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	return 0;
}

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[512];
	int len = snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (len < 0 || (size_t)len >= sizeof(path)) {
		/* A cut path would name another file: refuse instead. */
		errno = ENAMETOOLONG;
		return -1;
	}
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = strlen(val);
	return write(fd, val, n) == (ssize_t)n ? 0 : -1;
}

/* Not usable: fail (required) or remember why and go on (optional). */
__attribute__((format(printf, 4, 5))) static int
unusable(struct sup_cgroup *cg, const struct sup_config *cfg,
	 struct hatch_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cg->reason, sizeof(cg->reason), fmt, ap);
	va_end(ap);
	cg->usable = false;
	if (cfg->cgroup == SUP_CGROUP_REQUIRED)
		return hatch_err_set(err, E_PRECOND, 0,
				     "cgroup = required, but %s (set cgroup = "
				     "optional to run without limits)",
				     cg->reason);
	return 0;
}

/* cgroup v2 lets only a cgroup without processes of its own enable
 * controllers for its children ("no internal processes"; the root is
 * exempt). When cgroup_root is the cgroup we run in, which is what
 * systemd's Delegate=yes gives hatcheryd.service, move ourselves into a
 * leaf of it first, ROOT/supervisor, beside ROOT/hatchery. */
static int leave_root(struct sup_cgroup *cg, const struct sup_config *cfg,
		      const char *root, struct hatch_err *err)
{
	char buf[4096], mnt[256], self[512];
	char info[16384];
	if (read_file("/proc/self/mountinfo", info, sizeof(info)) < 0 ||
	    sup_cgroup_find_v2_mount(info, mnt, sizeof(mnt)) < 0 ||
	    read_file("/proc/self/cgroup", buf, sizeof(buf)) < 0)
		return 0;
	const char *rel = sup_cgroup_v2_self(buf);
	if (!rel)
		return 0;
	size_t rl = strcspn(rel, "\n");
	if (rl <= 1) /* "/": the root cgroup may hold processes */
		return 0;
	int n = snprintf(self, sizeof(self), "%s%.*s", mnt, (int)rl, rel);
	if (n < 0 || (size_t)n >= sizeof(self) || strcmp(self, root) != 0)
		return 0;
	char leaf[600];
	snprintf(leaf, sizeof(leaf), "%s/supervisor", root);
	if ((mkdir(leaf, 0755) < 0 && errno != EEXIST) ||
	    write_file(leaf, "cgroup.procs", "0") < 0)
		return unusable(cg, cfg, err, "cgroup_root %s is our own cgroup, and "
				"moving hatcheryd into %s (cgroup v2 allows no processes "
				"in a cgroup that enables controllers for its children) "
				"failed: %s", root, leaf, strerror(errno));
	fprintf(stderr, "hatcheryd: cgroup: cgroup_root %s is our own (delegated) "
			"cgroup: moved hatcheryd into %s\n", root, leaf);
	return 0;
}

/* mkdir DIR, then turn memory, pids and cpu on for its children. */
static int make_level(const char *dir, bool enable)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -1;
	return enable ? write_file(dir, "cgroup.subtree_control",
				   "+memory +pids +cpu") : 0;
}

int sup_cgroup_setup(struct sup_cgroup *cg, const struct sup_config *cfg,
		     struct hatch_err *err)
{
	memset(cg, 0, sizeof(*cg));
	char root[256];
	char buf[16384];
	if (cfg->cgroup_root[0]) {
		snprintf(root, sizeof(root), "%s", cfg->cgroup_root);
	} else {
		if (read_file("/proc/self/mountinfo", buf, sizeof(buf)) < 0)
			return unusable(cg, cfg, err, "cannot read /proc/self/mountinfo: %s",
					strerror(errno));
		if (sup_cgroup_find_v2_mount(buf, root, sizeof(root)) < 0)
			return unusable(cg, cfg, err, "no cgroup2 filesystem is mounted");
		/* A systemd service (INVOCATION_ID is set for every unit's
		 * processes) owns only the subtree systemd delegated to it
		 * (hatcheryd.service: Delegate=): default to our own cgroup
		 * there rather than the hierarchy's root, which is systemd's. */
		char self[4096];
		const char *rel = getenv("INVOCATION_ID") &&
					  read_file("/proc/self/cgroup", self, sizeof(self)) == 0
				  ? sup_cgroup_v2_self(self) : NULL;
		size_t rl = rel ? strcspn(rel, "\n") : 0;
		if (rl > 1 && strlen(root) + rl < sizeof(root)) {
			strncat(root, rel, rl);
			fprintf(stderr, "hatcheryd: cgroup: running as a systemd service: "
					"cgroup_root defaults to our own cgroup %s\n", root);
		}
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return unusable(cg, cfg, err, "%s: %s (not a cgroup v2 directory?)",
				path, strerror(errno));
	char missing[64];
	if (sup_cgroup_missing_controllers(buf, missing, sizeof(missing)) > 0) {
		buf[strcspn(buf, "\n")] = '\0';
		return unusable(cg, cfg, err,
				"cgroup v2 at %s lacks the %s controller(s) (available: "
				"\"%s\"; they are bound to cgroup v1 hierarchies here)",
				root, missing, buf);
	}
	if (leave_root(cg, cfg, root, err) < 0)
		return -1;
	/* Enable the controllers down the tree: root -> hatchery -> pool. */
	if (write_file(root, "cgroup.subtree_control", "+memory +pids +cpu") < 0)
		return unusable(cg, cfg, err, "%s/cgroup.subtree_control: cannot enable "
				"memory pids cpu: %s", root, strerror(errno));
	snprintf(cg->base, sizeof(cg->base), "%s/hatchery", root);
	if (make_level(cg->base, true) < 0)
		return unusable(cg, cfg, err, "%s: %s", cg->base, strerror(errno));
	for (size_t i = 0; i < cfg->n_pools; i++) {
		snprintf(path, sizeof(path), "%s/%s", cg->base, cfg->pools[i].name);
		if (make_level(path, true) < 0)
			return unusable(cg, cfg, err, "%s: %s", path, strerror(errno));
	}
	cg->usable = true;
	return 0;
}

int sup_cgroup_pool_add(const struct sup_cgroup *cg, const char *pool,
			struct hatch_err *err)
{
	if (!cg->usable)
		return 0;
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", cg->base, pool);
	if (make_level(path, true) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "cgroup %s", path);
	return 0;
}

int sup_cgroup_child_create(const struct sup_cgroup *cg,
			    const struct sup_pool_config *p, uint64_t id,
			    int *dirfd, struct hatch_err *err)
{
	*dirfd = -1;
	char dir[512];
	if (sup_cgroup_child_path(dir, sizeof(dir), cg->base, p->name, id) < 0)
		return hatch_err_set(err, E_INTERNAL, ENAMETOOLONG, "cgroup path");
	/* A leftover from a crashed supervisor with the same id is reused. */
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return hatch_err_set(err, E_INTERNAL, errno, "mkdir %s", dir);
	char v[64];
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->memory_max_mib << 20);
	if (write_file(dir, "memory.max", v) < 0)
		goto fail;
	snprintf(v, sizeof(v), "%u", p->pids_max);
	if (write_file(dir, "pids.max", v) < 0)
		goto fail;
	sup_cgroup_cpu_max(p->cpu_max_pct, v, sizeof(v));
	if (write_file(dir, "cpu.max", v) < 0)
		goto fail;
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		goto fail;
	return 0;
fail:;
	int e = errno;
	rmdir(dir);
	return hatch_err_set(err, E_INTERNAL, e, "cgroup %s", dir);
}

void sup_cgroup_child_remove(const struct sup_cgroup *cg,
			     const struct sup_pool_config *p, uint64_t id)
{
	char dir[512];
	if (cg->usable &&
	    sup_cgroup_child_path(dir, sizeof(dir), cg->base, p->name, id) == 0)
		rmdir(dir);
}
