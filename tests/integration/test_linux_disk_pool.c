/* Disks for Linux pools through a real hatcheryd (jailed): `disk =` gives
 * each VM an ext4 image as /dev/vda, served by a jailed vhost-user backend
 * of its own (docs/vhost.md). Overlay writes stay in the VM's layer and go
 * with it, a read-only disk refuses writes, the backend is jailed as its
 * own uid with its own filter, and a backend that dies ends its VM alone,
 * with a clear error and a replacement.
 *
 * Labelled linux: scripts/test runs it natively only where the host's KVM
 * can boot a kernel, otherwise in scripts/vm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "booted_tests.h"
#include "guest_sh.h"
#include "harness.h"

TestSuite(linux_disk, .fini = h_teardown, .timeout = 900);

/* Acquire, waiting for a boot if none is ready (seconds natively,
 * up to a minute inside scripts/vm). */
static int acquire(struct harness *h, const char *pool, pid_t *pid)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	Hatchery__V1__AcquireReply *info = NULL;
	cr_assert_eq(hatch_acquire(h->c, pool, t_ms(8000u), &fd, &info, &err), 0,
		     "Acquire from \"%s\": %s", pool, err.msg);
	*pid = (pid_t)info->child_pid;
	hatch_free(info);
	return fd;
}

static char dir[64], img[128];

/* A 16 MiB ext4 image holding hello.txt. */
static void make_image(void)
{
	snprintf(dir, sizeof(dir), "/tmp/hatchery-disk.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	char src[96], path[160];
	snprintf(src, sizeof(src), "%s/src", dir);
	cr_assert_eq(mkdir(src, 0755), 0);
	snprintf(path, sizeof(path), "%s/hello.txt", src);
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f);
	fputs("from the host\n", f);
	fclose(f);
	snprintf(img, sizeof(img), "%s/root.img", dir);
	char out[4096];
	const char *args[] = { "-q", "-F", "-d", src, img, "16M", NULL };
	int st = h_run("/usr/sbin/mkfs.ext4", args, 0, out, sizeof(out), 30000);
	cr_assert_eq(st, 0, "mkfs.ext4: %s", out);
}

static void sha256_file(const char *path, char hex[65])
{
	char out[256];
	const char *args[] = { path, NULL };
	cr_assert_eq(h_run("/usr/bin/sha256sum", args, 0, out, sizeof(out), 30000), 0);
	memcpy(hex, out, 64);
	hex[64] = '\0';
}

/* The pid of the disk backend of the child whose pid is `child`. */
static pid_t backend_of(struct harness *h, const char *pool, pid_t child)
{
	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, pool);
	cr_assert_not_null(p);
	pid_t b = 0;
	for (size_t i = 0; i < p->n_children; i++)
		if ((pid_t)p->children[i]->pid == child)
			b = (pid_t)p->children[i]->disk_backend_pid;
	cr_assert_str_eq(p->disk, img);
	hatch_free(st);
	cr_assert_gt(b, 0, "child %d of pool %s has no disk backend in status", child, pool);
	return b;
}

/* The backend runs jailed: its own uid, no capabilities, the filter. */
static void backend_is_jailed(pid_t b, pid_t child)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", b);
	struct h_jail_status j = h_jail_status(path);
	cr_assert_eq(j.seccomp, 2, "backend %d: Seccomp %d", b, j.seccomp);
	cr_assert_eq(j.no_new_privs, 1);
	cr_assert_eq(j.cap_eff, 0, "backend %d: CapEff %llx", b, j.cap_eff);
	cr_assert_neq(j.uid, 0, "backend %d runs as root", b);
	snprintf(path, sizeof(path), "/proc/%d/status", child);
	cr_assert_neq(j.uid, h_jail_status(path).uid, "the backend shares its VM's uid %u",
		      j.uid);
}

static bool gone(void *arg)
{
	return kill(*(pid_t *)arg, 0) < 0 && errno == ESRCH;
}

Test(linux_disk, overlay_ro_jail_and_a_dying_backend)
{
	make_image();
	char before[65], after[65];
	sha256_file(img, before);
	struct harness *h = h_start(
		"[pool \"ov\"]\nkind = linux\nmemory_mib = 256\nvcpus = 1\nmin_idle = 1\nmax = 2\n"
		"disk = %s\nboot_timeout_ms = %u\nhealth_interval_ms = %u\nhealth_timeout_ms = %u\n"
		"[pool \"ro\"]\nkind = linux\nmemory_mib = 256\nvcpus = 1\nmin_idle = 1\nmax = 1\n"
		"disk = %s\ndisk_mode = ro\nboot_timeout_ms = %u\nhealth_interval_ms = %u\n"
		"health_timeout_ms = %u\n",
		img, t_ms(20000u), t_ms(2000u), t_ms(1000u), img, t_ms(20000u), t_ms(2000u),
		t_ms(1000u));
	h_wait_steady(h, t_ms(120000u));

	/* Overlay: the VM reads the image and writes its own layer. */
	pid_t pa;
	int a = acquire(h, "ov", &pa);
	pid_t ba = backend_of(h, "ov", pa);
	backend_is_jailed(ba, pa);
	cr_assert_str_eq(guest_sh(a, "mount /dev/vda /mnt && cat /mnt/hello.txt"), "from the host\n");
	cr_assert_str_eq(guest_sh(a, "echo changed > /mnt/hello.txt && sync && "
			       "echo 3 > /proc/sys/vm/drop_caches && cat /mnt/hello.txt"),
			 "changed\n");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(a, &err), 0, "%s", err.msg);
	cr_assert(h_wait_until(gone, &ba, t_ms(10000u)), "backend %d outlived its VM", ba);
	sha256_file(img, after);
	cr_assert_str_eq(before, after, "an overlay VM changed the image");
	/* The next VM sees the image, not the last one's layer. */
	h_wait_steady(h, t_ms(120000u));
	pid_t pb;
	int b = acquire(h, "ov", &pb);
	cr_assert_str_eq(guest_sh(b, "mount /dev/vda /mnt && cat /mnt/hello.txt"), "from the host\n");
	cr_assert_eq(hatch_vm_release(b, &err), 0, "%s", err.msg);

	/* Read-only: readable, no write reaches the device. */
	pid_t pr;
	int r = acquire(h, "ro", &pr);
	cr_assert_str_eq(guest_sh(r, "mount -o ro /dev/vda /mnt && cat /mnt/hello.txt"),
			 "from the host\n");
	cr_assert_neq(guest_sh_rc(r, "dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct "
			       "2>/dev/null"), 0, "a write to a read-only disk succeeded");
	cr_assert_eq(hatch_vm_release(r, &err), 0, "%s", err.msg);
	sha256_file(img, after);
	cr_assert_str_eq(before, after);

	/* A backend that dies ends its VM with a clear error; the pool
	 * replaces the VM. */
	h_wait_steady(h, t_ms(120000u));
	pid_t pc;
	int c = acquire(h, "ov", &pc);
	pid_t bc = backend_of(h, "ov", pc);
	guest_sh(c, "mount /dev/vda /mnt");
	cr_assert_eq(kill(bc, SIGKILL), 0);
	const char *argv[] = { "sh", "-c", "cat /mnt/hello.txt; echo 3 > /proc/sys/vm/drop_caches; "
					  "cat /mnt/hello.txt" };
	struct hatch_exec x = { .argv = argv, .argc = 3 };
	/* The VM may end before or during this Exec; either way the lease
	 * ends with an error that names the disk. */
	int rc = hatch_vm_exec(c, &x, NULL, NULL, NULL, &err);
	if (rc == 0)
		rc = hatch_vm_exec(c, &x, NULL, NULL, NULL, &err);
	cr_assert_eq(rc, -1, "the VM served on without its disk");
	cr_assert_not_null(strstr(err.msg, "disk"), "the error does not name the disk: %s",
			   err.msg);
	close(c);
	cr_assert(h_wait_until(gone, &pc, t_ms(10000u)), "the VM outlived its disk backend");
	Hatchery__V1__StatsReply *sr = NULL;
	struct hatch_client *cl = h_connect(h);
	cr_assert_eq(hatch_stats(cl, &sr, &err), 0, "%s", err.msg);
	uint64_t exits = 0;
	for (size_t i = 0; i < sr->n_pools; i++)
		if (strcmp(sr->pools[i]->name, "ov") == 0)
			exits = sr->pools[i]->disk_backend_exits;
	hatch_free(sr);
	hatch_close(cl);
	cr_assert_eq(exits, 1, "disk_backend_exits %llu", (unsigned long long)exits);
	h_wait_steady(h, t_ms(120000u));
	h_finish(h);
	unlink(img);
	char src[96];
	snprintf(src, sizeof(src), "%s/src/hello.txt", dir);
	unlink(src);
	snprintf(src, sizeof(src), "%s/src", dir);
	rmdir(src);
	rmdir(dir);
}
