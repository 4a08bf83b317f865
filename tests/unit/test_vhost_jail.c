/* test_vhost_jail.c - the vhost-user block backend as the supervisor
 * starts it: vmp_jail_clone3 into the namespaces, then
 * vhu_backend_child_main (vhost/backend_child.h) with a socketpair for
 * the frontend and a memfd for the image, jailed with its own seccomp
 * filter (VMP_FILTER_VHOST_BLK) in kill mode. The test is the frontend
 * and the guest (vhost_frontend.c): requests of every type go through
 * the jailed backend, plain, read-only and in overlay mode, so a syscall
 * the backend needs and its allowlist lacks kills it here. Then what
 * /proc says about it (seccomp, no_new_privs, capabilities, uid,
 * namespaces, fds), and the escapes of test_jail.c tried from inside the
 * backend's jail (vhu_backend_child_enter, then the attempt): each dies
 * by SIGSYS naming the syscall, and without seccomp the layer beneath
 * refuses. Needs root (namespaces, setuid); no KVM. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend_child.h"
#include "hatchery/v1/control.pb-c.h"
#include "testing.h"
#include "vhost_frontend.h"
#include "vhost_guest.h"

#define UID_BASE 291000u /* away from hatcheryd's 200000 and test_jail's 290000 */
#define SECTORS 128u

enum mode { RW, RO, OVERLAY };

static struct vmp_jail_filter filter_kill;

static void setup(void)
{
	if (geteuid() != 0)
		t_skip("the backend's jail needs root (namespaces, setuid)");
	struct hatch_err err = { 0 };
	cr_assert_eq(vhu_backend_filter_build(VMP_SECCOMP_KILL, &filter_kill, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(filter_kill.profile, VMP_FILTER_VHOST_BLK);
}

static void teardown(void)
{
	vmp_jail_filter_free(&filter_kill);
}

TestSuite(vhost_jail, .init = setup, .fini = teardown, .timeout = 30);

/* The image: a memfd, sector s filled with 0x10 + s. */
static int make_image(void)
{
	int fd = memfd_create("vhost-jail-img", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	uint8_t sector[512];
	for (unsigned s = 0; s < SECTORS; s++) {
		memset(sector, 0x10 + (int)s, sizeof(sector));
		cr_assert_eq(pwrite(fd, sector, sizeof(sector), s * 512), 512);
	}
	return fd;
}

/* The same file again, read-only, as the supervisor opens a base. */
static int reopen_ro(int fd)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	int r = open(p, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(r, 0);
	return r;
}


static struct vmp_jail_config jail_cfg(unsigned slot, const struct vmp_jail_filter *f,
				       int report_fd)
{
	return (struct vmp_jail_config){
		.uid = UID_BASE + slot,
		.gid = UID_BASE + slot,
		.as_extra = 256ull << 20, /* the guest RAM it maps is 1 MiB here */
		.filter = f,
#if defined(__SANITIZE_ADDRESS__)
		.flags = VMP_JAIL_NO_AS_LIMIT,
#endif
		.report_fd = report_fd,
		.parent_pidfd = -1,
	};
}

struct backend {
	pid_t pid;
	int pidfd;
	int s;          /* the frontend's end of the connection */
	int image;      /* the test's own fd on the image */
	int canary[2];  /* a pipe the backend must not inherit */
};

static void start(struct backend *b, unsigned slot, enum mode m)
{
	b->image = make_image();
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	int img = m == RW ? dup(b->image) : reopen_ro(b->image);
	int layer = m == OVERLAY ? memfd_create("vhost-jail-layer", MFD_CLOEXEC) : -1;
	/* Not CLOEXEC, and no exec anyway: only fd hygiene keeps it out. */
	cr_assert_eq(pipe(b->canary), 0);
	b->pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, &b->pidfd);
	cr_assert_geq(b->pid, 0, "clone3: %s", strerror(errno));
	if (b->pid == 0) {
		struct vmp_jail_config cfg = jail_cfg(slot, &filter_kill, -1);
		struct vhu_backend_spawn sp = {
			.conn_fd = sv[1], .image_fd = img, .overlay_fd = layer,
			.read_only = m == RO, .jail = &cfg,
		};
		vhu_backend_child_main(&sp);
	}
	close(sv[1]);
	close(img);
	if (layer >= 0)
		close(layer);
	b->s = sv[0];
}

/* How it ended: exit status, or -signal. */
static int finish(struct backend *b)
{
	siginfo_t si = { 0 };
	cr_assert_eq(waitid(P_PIDFD, (id_t)b->pidfd, &si, WEXITED), 0);
	close(b->pidfd);
	close(b->s);
	close(b->image);
	close(b->canary[0]);
	close(b->canary[1]);
	return si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
}

/* "Key:\tvalue" of /proc/PID/status, into val. */
static void status_field(pid_t pid, const char *key, char *val, size_t len)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	cr_assert_not_null(f);
	val[0] = '\0';
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			snprintf(val, len, "%.*s", (int)strcspn(line + kl + 2, "\n"),
				 line + kl + 2);
			break;
		}
	fclose(f);
}

/* What the kernel says about the running backend. */
static void expect_jailed(const struct backend *b, unsigned slot, enum mode m)
{
	char v[128], want[128];
	status_field(b->pid, "Seccomp", v, sizeof(v));
	cr_expect_str_eq(v, "2", "Seccomp");
	status_field(b->pid, "NoNewPrivs", v, sizeof(v));
	cr_expect_str_eq(v, "1", "NoNewPrivs");
	status_field(b->pid, "CapEff", v, sizeof(v));
	cr_expect_str_eq(v, "0000000000000000", "CapEff");
	status_field(b->pid, "CapPrm", v, sizeof(v));
	cr_expect_str_eq(v, "0000000000000000", "CapPrm");
	status_field(b->pid, "CapBnd", v, sizeof(v));
	cr_expect_str_eq(v, "0000000000000000", "CapBnd");
	unsigned id = UID_BASE + slot;
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", id, id, id, id);
	status_field(b->pid, "Uid", v, sizeof(v));
	cr_expect_str_eq(v, want, "Uid");
	status_field(b->pid, "Gid", v, sizeof(v));
	cr_expect_str_eq(v, want, "Gid");
	status_field(b->pid, "Groups", v, sizeof(v));
	cr_expect_eq(strspn(v, " "), strlen(v), "Groups: [%s]", v);
	/* Its own namespaces, all but the user one (root: real uids). */
	uint64_t ino[VMP_NS__N];
	cr_assert_eq(vmp_jail_ns_inodes(b->pid, ino), 0);
	for (int i = 0; i < VMP_NS__N; i++) {
		char path[64];
		struct stat mine;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", vmp_jail_ns_names[i]);
		cr_assert_eq(stat(path, &mine), 0);
		if (i == VMP_NS_USER)
			cr_expect_eq(ino[i], mine.st_ino, "user ns: expected the host's");
		else
			cr_expect_neq(ino[i], mine.st_ino, "%s ns not new", vmp_jail_ns_names[i]);
	}
	/* Its fds: stdio, the connection, the image, the layer, and what
	 * the frontend sent (the ring's eventfds); never the canary. */
	struct stat canary;
	cr_assert_eq(fstat(b->canary[0], &canary), 0);
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", b->pid);
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		char path[400], target[256];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		cr_assert_gt(n, 0);
		target[n] = '\0';
		struct stat st;
		cr_assert_eq(stat(path, &st), 0);
		cr_expect_neq(st.st_ino, canary.st_ino, "fd %d is the canary pipe", fd);
		if (fd <= 1) /* its path is gone with the host's /dev: by number */
			cr_expect(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
				  "fd %d is not /dev/null: %s", fd, target);
		else if (fd == VHU_CHILD_CONN_FD)
			cr_expect(!strncmp(target, "socket:", 7), "fd 3: %s", target);
		else if (fd == VHU_CHILD_IMAGE_FD)
			cr_expect(strstr(target, "vhost-jail-img"), "fd 4: %s", target);
		else if (fd == VHU_CHILD_OVERLAY_FD && m == OVERLAY)
			cr_expect(strstr(target, "vhost-jail-layer"), "fd 5: %s", target);
		else if (fd != 2)
			cr_expect_str_eq(target, "anon_inode:[eventfd]", "fd %d", fd);
	}
	closedir(d);
}

/* The guest's view: one request, kicked, completed. Returns its status. */
static uint8_t request(int s, struct vg *g, int kfd, int call, uint16_t *d,
		       uint32_t type, uint64_t sector, uint32_t len, const void *data)
{
	(void)s;
	unsigned p = (unsigned)*d;
	blk_req(g, *d, p, type, sector, len);
	if (data)
		memcpy(vg_ptr(g, GPA(p + 1)), data, len);
	kick(kfd);
	cr_assert(wait_fd(call, 5000), "request type %u: no call", type);
	*d += 3;
	return *(uint8_t *)vg_ptr(g, GPA(p + 2));
}

static uint8_t image_byte(int fd, uint64_t off)
{
	uint8_t b = 0xee;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	return b;
}

/* Every request type through the jailed backend in `m`. */
static void drive(enum mode m, unsigned slot)
{
	struct backend b;
	start(&b, slot, m);
	struct vg g;
	vg_init(&g, 32);
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fe_handshake(b.s);
	fe_send(b.s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	uint64_t f = fe_reply_u64(b.s, VHU_GET_FEATURES);
	cr_expect_eq((f >> VIRTIO_BLK_F_RO) & 1, m == RO, "VIRTIO_BLK_F_RO");
	fe_mem_table(b.s, &g);
	fe_ring(b.s, 32, call, kfd);

	uint16_t d = 0;
	uint8_t data[512], want_out = m == RO ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	memset(data, 0x5c, sizeof(data));
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_OUT, 7, 512, data), want_out);
	unsigned p = d;
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_IN, 6, 1024, NULL),
		     VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(p + 1)), 0x16);
	cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(p + 1) + 512), m == RO ? 0x17 : 0x5c);
	struct virtio_blk_discard_write_zeroes seg = { .sector = 16, .num_sectors = 9 };
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_DISCARD, 0, sizeof(seg),
			     &seg), want_out);
	seg = (struct virtio_blk_discard_write_zeroes){ .sector = 40, .num_sectors = 1 };
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_WRITE_ZEROES, 0,
			     sizeof(seg), &seg), want_out);
	p = d;
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_IN, 16, 512, NULL),
		     VIRTIO_BLK_S_OK);
	if (m == OVERLAY)
		cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(p + 1)), 0, "discarded: zeros");
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_FLUSH, 0, 0, NULL),
		     VIRTIO_BLK_S_OK);
	p = d;
	cr_expect_eq(request(b.s, &g, kfd, call, &d, VIRTIO_BLK_T_GET_ID, 0,
			     VHU_BLK_ID_BYTES, NULL), VIRTIO_BLK_S_OK);
	cr_expect(!strncmp(vg_ptr(&g, GPA(p + 1)), "memfd:vhost-jail-img", VHU_BLK_ID_BYTES),
		  "serial %.20s", (char *)vg_ptr(&g, GPA(p + 1)));

	expect_jailed(&b, slot, m);
	/* A memory table replaced, then the frontend hangs up: exit 0. */
	fe_mem_table(b.s, &g);
	shutdown(b.s, SHUT_WR);
	uint8_t on_image = image_byte(b.image, 7 * 512);
	uint8_t discarded = image_byte(b.image, 20 * 512);
	cr_expect_eq(finish(&b), 0, "a clean exit when the frontend hangs up");
	if (m == RW) {
		cr_expect_eq(on_image, 0x5c, "written through");
		cr_expect_eq(discarded, 0, "discarded (a memfd punches holes)");
	} else {
		cr_expect_eq(on_image, 0x17, "the base is unchanged");
		cr_expect_eq(discarded, 0x10 + 20, "the base is unchanged");
	}
	close(call);
	close(kfd);
	vg_close(&g);
}

Test(vhost_jail, read_write_disk)
{
	drive(RW, 1);
}

Test(vhost_jail, read_only_disk)
{
	drive(RO, 2);
}

Test(vhost_jail, overlay_disk)
{
	drive(OVERLAY, 3);
}

/* A frontend that breaks the protocol: the backend says why on stderr
 * (write is allowed for that) and exits 1, not by SIGSYS. */
Test(vhost_jail, garbage_exits_1)
{
	struct backend b;
	start(&b, 4, RW);
	uint8_t junk[12] = { 1, 0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0 };
	cr_assert_eq(write(b.s, junk, sizeof(junk)), 12);
	cr_expect_eq(finish(&b), 1);
}

/* An rw disk on an image fd opened read-only is refused before the jail. */
Test(vhost_jail, writable_disk_needs_a_writable_fd)
{
	struct backend b = { 0 };
	int image = make_image();
	int ro = reopen_ro(image);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	b.pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, &b.pidfd);
	cr_assert_geq(b.pid, 0);
	if (b.pid == 0) {
		struct vmp_jail_config cfg = jail_cfg(5, &filter_kill, -1);
		struct vhu_backend_spawn sp = { sv[1], ro, -1, false, &cfg };
		vhu_backend_child_main(&sp);
	}
	close(sv[1]);
	close(ro);
	b.s = sv[0];
	b.image = image;
	cr_assert_eq(pipe(b.canary), 0);
	cr_expect_eq(finish(&b), 1);
}

/* ---- escapes from the backend's jail ------------------------------------- */

typedef int (*attempt_fn)(void);

#define X_SUCCEEDED 200
#define X_ENTER_FAILED 201

struct outcome {
	bool sigsys;
	int exit_code;
	int report_nr;
	uint32_t report_arch;
};

/* The backend's own path up to serving (vhu_backend_child_enter), then
 * fn instead of the frontend's requests: what a frontend or a guest that
 * took over the backend could try. with_seccomp false: the same jail
 * without its filter, to see the layer beneath. */
static struct outcome run(bool with_seccomp, attempt_fn fn)
{
	int image = make_image();
	int sv[2], rep[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rep), 0);
	int pidfd;
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, &pidfd);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct vmp_jail_config cfg =
			jail_cfg(6, with_seccomp ? &filter_kill : NULL, rep[1]);
		struct vhu_backend_spawn sp = { sv[1], image, -1, false, &cfg };
		struct vhu_blk blk;
		struct vmp_jail_info info;
		struct hatch_err err = { 0 };
		if (vhu_backend_child_enter(&sp, &blk, &info, &err) < 0) {
			fprintf(stderr, "%s\n", err.msg);
			_exit(X_ENTER_FAILED);
		}
		errno = 0;
		int r = fn();
		_exit(r >= 0 ? X_SUCCEEDED : errno);
	}
	close(sv[1]);
	close(rep[1]);
	struct outcome o = { .report_nr = -1 };
	siginfo_t si = { 0 };
	cr_assert_eq(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED), 0);
	if (si.si_code == CLD_EXITED) {
		o.exit_code = si.si_status;
	} else {
		cr_assert_eq(si.si_status, SIGSYS, "died by signal %d", si.si_status);
		o.sigsys = true;
	}
	uint8_t buf[256];
	ssize_t n = recv(rep[0], buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0) {
		Hatchery__V1__ChildMsg *m =
			hatchery__v1__child_msg__unpack(NULL, (size_t)n, buf);
		cr_assert_not_null(m, "the SIGSYS report did not decode");
		o.report_nr = m->seccomp_violation->syscall;
		o.report_arch = m->seccomp_violation->arch;
		hatchery__v1__child_msg__free_unpacked(m, NULL);
	}
	close(rep[0]);
	close(sv[0]);
	close(pidfd);
	close(image);
	return o;
}

static void expect_sigsys(struct outcome o, long nr, const char *name)
{
	cr_assert(o.sigsys, "%s: expected death by SIGSYS, got exit %d (%s)", name,
		  o.exit_code, strerror(o.exit_code));
	cr_assert_eq(o.report_nr, nr, "%s: the report named syscall %d", name, o.report_nr);
	char buf[64];
	cr_assert_str_eq(vmp_jail_syscall_name(o.report_nr, o.report_arch, buf,
					       sizeof(buf)), name);
}

static void expect_errno(struct outcome o, int e, const char *what)
{
	cr_assert(!o.sigsys, "%s: died by SIGSYS without seccomp", what);
	cr_assert_neq(o.exit_code, X_ENTER_FAILED, "%s: the jail failed", what);
	cr_assert_eq(o.exit_code, e, "%s: expected %s, got %s", what, strerror(e),
		     o.exit_code == X_SUCCEEDED ? "success" : strerror(o.exit_code));
}

static int open_passwd(void)
{
	return open("/etc/passwd", O_RDONLY);
}

static int inet_socket(void)
{
	return socket(AF_INET, SOCK_STREAM, 0);
}

static int inet_connect(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80),
				  .sin_addr.s_addr = htonl(0x01010101) };
	return connect(s, (struct sockaddr *)&sa, sizeof(sa));
}

static int exec_sh(void)
{
	char *argv[] = { (char *)"sh", NULL };
	return execve("/bin/sh", argv, argv + 1);
}

static int do_fork(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return p;
}

static int image_ioctl(void)
{
	uint64_t n;
	return ioctl(VHU_CHILD_IMAGE_FD, BLKGETSIZE64, &n);
}

static int mmap_exec(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? -1 : 0;
}

static int new_memfd(void)
{
	return memfd_create("escape", 0);
}

static int dup_an_fd(void)
{
	return fcntl(VHU_CHILD_CONN_FD, F_DUPFD, 0);
}

static int write_a_file(void)
{
	return open("/escape", O_WRONLY | O_CREAT | O_TRUNC, 0644);
}

Test(vhost_jail, escapes)
{
	expect_sigsys(run(true, open_passwd), SYS_openat, "openat");
	expect_errno(run(false, open_passwd), ENOENT, "open /etc/passwd");
	expect_sigsys(run(true, write_a_file), SYS_openat, "openat");
	expect_errno(run(false, write_a_file), EROFS, "create /escape");
	expect_sigsys(run(true, inet_socket), SYS_socket, "socket");
	expect_errno(run(false, inet_connect), ENETUNREACH, "connect to 1.1.1.1:80");
	expect_sigsys(run(true, exec_sh), SYS_execve, "execve");
	expect_errno(run(false, exec_sh), ENOENT, "execve /bin/sh");
	/* glibc's fork() is clone(2); beneath, NPROC 1 from the start. */
	expect_sigsys(run(true, do_fork), SYS_clone, "clone");
	expect_errno(run(false, do_fork), EAGAIN, "fork");
	/* No ioctl at all, not even on its own image. */
	expect_sigsys(run(true, image_ioctl), SYS_ioctl, "ioctl");
	expect_sigsys(run(true, mmap_exec), SYS_mmap, "mmap");
	expect_sigsys(run(true, new_memfd), SYS_memfd_create, "memfd_create");
	/* fcntl only for the O_NONBLOCK flags. */
	expect_sigsys(run(true, dup_an_fd), SYS_fcntl, "fcntl");
}

/* The no-jail path (hatcheryd --no-jail): the same process, fds cleaned,
 * serving, without namespaces or a filter. */
Test(vhost_jail, no_jail_serves)
{
	int image = make_image();
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct vhu_backend_spawn sp = { sv[1], image, -1, false, NULL };
		vhu_backend_child_main(&sp);
	}
	close(sv[1]);
	fe_handshake(sv[0]);
	char v[64];
	status_field(pid, "Seccomp", v, sizeof(v));
	cr_expect_str_eq(v, "0");
	close(sv[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	close(image);
}
