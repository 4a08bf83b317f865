/* test_linux_disk.c - a Linux guest mounts its vhost-user disk.
 *
 * Through vmproc's machine API, without a daemon (as test_linux_vcpus.c
 * drives the machine): a VM with guest RAM in a memfd and a disk whose
 * vhost-user connection is a socketpair, the other end served by
 * vhu_backend_serve in a thread of this test over an ext4 image made with
 * mkfs.ext4 -d (holding one file). Debian's kernel boots with the agent's
 * initramfs; the agent is asked to Exec `mount /dev/vda /mnt; cat` and the
 * file's bytes must come back; then to write a file and umount, and the
 * host reads that file from the image (debugfs). The backend hangs up and
 * the VM must end with that reason.
 *
 * linux_disk_qsd (at the end; where CMake found qemu-storage-daemon): the
 * same machine with QEMU's backend serving its disk.
 *
 * Needs a /dev/kvm that boots Linux (scripts/vm's nested KVM):
 *   scripts/vm -t 600 -- ./build/tests/test_linux_disk
 * Skipped loudly without /dev/kvm or mkfs.ext4.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "hatchery/clock.h"
#include "hatchery/v1/vm.pb-c.h"
#include "kvm/kvm.h"
#include "linux/machine.h"
#include "linux/vcpus.h"
#include "testing.h"
#include "vmproc.h"

static struct vmp_kvm_host host = { .kvm_fd = -1 };

static void setup(void)
{
	struct hatch_err err = { 0 };
	if (vmp_kvm_host_open(&host, "/dev/kvm", &err) < 0)
		t_skip("this test needs /dev/kvm: %s", err.msg);
}

TestSuite(linux_disk, .init = setup, .timeout = 600);

#define FILE_TEXT "hello from the vhost-user disk\n"
#define WRITTEN "written-by-the-guest"

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	cr_assert_not_null(b);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* An ext4 image of 16 MiB holding /hello.txt. */
static void make_image(char *img, size_t cap)
{
	char dir[] = "/tmp/hatch-disk-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char p[256];
	snprintf(p, sizeof(p), "%s/hello.txt", dir);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(FILE_TEXT, f);
	fclose(f);
	snprintf(img, cap, "%s.img", dir);
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 16M %s && mkfs.ext4 -q -F -d %s %s >/dev/null 2>&1", img, dir,
		 img);
	if (system(cmd) != 0)
		t_skip("mkfs.ext4 -d failed (e2fsprogs; scripts/deps)");
	unlink(p);
	rmdir(dir);
}

struct served {
	pthread_t t;
	int sock;
	int r;
	struct hatch_err err;
	struct vhu_blk blk;
};

static void *serve_thread(void *p)
{
	struct served *sv = p;
	sv->r = vhu_backend_serve(sv->sock, &sv->blk, &sv->err);
	return NULL;
}

/* Poll the machine once (up to ms) and take the agent's next frame, if
 * any: 1 with *rep (caller frees), 0 none yet; the VM ending fails the
 * test unless *ended is given (then -1 with its message there). */
static int step(struct vmp_linux *m, int ms, Hatchery__V1__VmReply **rep,
		struct hatch_err *ended)
{
	struct hatch_err err = { 0 };
	const uint8_t *frame;
	size_t len;
	int r = vmp_linux_agent_recv(m, &frame, &len, &err);
	cr_assert_geq(r, 0, "%s", err.msg);
	if (r > 0) {
		*rep = hatchery__v1__vm_reply__unpack(NULL, len, frame);
		cr_assert_not_null(*rep);
		return 1;
	}
	struct pollfd p[VMP_LINUX_MAX_POLLFDS];
	size_t n = vmp_linux_pollfds(m, p);
	poll(p, n, ms);
	if (vmp_linux_process(m, p, n, &err) < 0) {
		cr_assert_not_null(ended, "the VM ended: %s", err.msg);
		*ended = err;
		return -1;
	}
	return 0;
}

static void send_exec(struct vmp_linux *m, uint64_t id, const char *script)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmExecRequest ex = HATCHERY__V1__VM_EXEC_REQUEST__INIT;
	char sh[] = "/bin/sh", c[] = "-c";
	char *argv[] = { sh, c, (char *)script };
	ex.argv = argv;
	ex.n_argv = 3;
	ex.timeout_ms = 60000;
	req.id = id;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_EXEC;
	req.exec = &ex;
	uint8_t buf[1024];
	cr_assert_leq(hatchery__v1__vm_request__get_packed_size(&req), sizeof(buf));
	size_t len = hatchery__v1__vm_request__pack(&req, buf);
	cr_assert_eq(vmp_linux_agent_send(m, buf, len), 0);
}

/* Exec `script` with sh -c; collect its output; return its exit code. */
static int run_exec(struct vmp_linux *m, uint64_t id, const char *script, char *out,
		    char *errout, uint64_t deadline)
{
	out[0] = errout[0] = '\0';
	send_exec(m, id, script);
	for (;;) {
		cr_assert_lt(hatch_now_ns(), deadline, "no Exec reply in time");
		Hatchery__V1__VmReply *rep = NULL;
		if (step(m, 100, &rep, NULL) == 0)
			continue;
		cr_assert_eq(rep->id, id);
		if (rep->body_case == HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT) {
			char *o = rep->exec_output->stream ==
						  HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDOUT
					  ? out : errout;
			size_t room = 4095 - strlen(o);
			size_t n = rep->exec_output->data.len < room ? rep->exec_output->data.len
								     : room;
			strncat(o, (const char *)rep->exec_output->data.data, n);
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
			continue;
		}
		cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_EXEC, "%s",
			     rep->error ? rep->error->message : "?");
		int code = rep->exec->exit_code;
		hatchery__v1__vm_reply__free_unpacked(rep, NULL);
		return code;
	}
}

Test(linux_disk, mount_read_write)
{
	char img[128];
	make_image(img, sizeof(img));
	struct served sv = { 0 };
	struct hatch_err err = { 0 };
	cr_assert_eq(vhu_blk_open(&sv.blk, img, false, &err), 0, "%s", err.msg);
	int s[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	sv.sock = s[1];
	cr_assert_eq(pthread_create(&sv.t, NULL, serve_thread, &sv), 0);

	size_t klen, ilen;
	uint8_t *kernel = slurp(HATCH_DEFAULT_KERNEL, &klen);
	uint8_t *initrd = slurp(HATCH_DEFAULT_INITRD, &ilen);
	cr_assert_eq(vmp_vcpus_signal_init(&err), 0, "%s", err.msg);
	struct vmp_vm vm;
	cr_assert_eq(vmp_vm_create_flags(&host, 256u << 20, 1, VMP_VM_SHARED_MEM, &vm, &err),
		     0, "%s", err.msg);
	cr_assert_geq(vm.mem_fd, 0);
	struct vmp_linux_config cfg = {
		.kernel = kernel, .kernel_len = klen, .initrd = initrd, .initrd_len = ilen,
		.host_cpuid = host.cpuid, .disk = true, .disk_fd = s[0],
	};
	struct vmp_linux *m;
	cr_assert_eq(vmp_linux_create(&vm, &cfg, &m, &err), 0, "%s", err.msg);
	free(kernel); /* copied into guest RAM */
	free(initrd);
	cr_assert_eq(vmp_linux_start(m, &err), 0, "%s", err.msg);

	/* The agent's hello. */
	uint64_t deadline = hatch_now_ns() + t_ms(300000) * 1000000ull;
	Hatchery__V1__VmReply *rep = NULL;
	while (step(m, 100, &rep, NULL) == 0)
		cr_assert_lt(hatch_now_ns(), deadline, "no agent hello in time");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_AGENT_READY);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);

	char out[4096], errout[4096];
	int exit_code = run_exec(m, 1, "mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt", out,
				 errout, deadline);
	cr_expect_eq(exit_code, 0, "mount and cat; stderr: %s", errout);
	cr_expect_str_eq(out, FILE_TEXT);

	/* And writes: a new file, then umount, which flushes it to the
	 * image (the backend's pwrite and FLUSH). Read back on the host. */
	exit_code = run_exec(m, 2, "echo " WRITTEN " > /mnt/new.txt && umount /mnt", out, errout,
			     deadline);
	cr_expect_eq(exit_code, 0, "write and umount; stderr: %s", errout);

	/* The backend goes away: the VM ends, saying so. */
	shutdown(sv.sock, SHUT_RDWR);
	pthread_join(sv.t, NULL);
	struct hatch_err ended = { 0 };
	deadline = hatch_now_ns() + t_ms(30000) * 1000000ull;
	int r;
	while ((r = step(m, 100, &rep, &ended)) >= 0) {
		if (r > 0)
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
		cr_assert_lt(hatch_now_ns(), deadline, "the VM went on without its disk");
	}
	cr_expect(strstr(ended.msg, "the disk backend closed its connection"), "%s",
		  ended.msg);
	vhu_blk_close(&sv.blk);

	char cmd[256];
	snprintf(cmd, sizeof(cmd), "debugfs -R 'cat /new.txt' %s 2>/dev/null", img);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	char got[128] = "";
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = '\0';
	pclose(f);
	unlink(img);
	cr_expect_str_eq(got, WRITTEN "\n", "the guest's file, read from the image on the host");
}

#ifdef HATCH_QEMU_STORAGE_DAEMON
/* The other direction of docs/vhost.md's interoperability: QEMU's backend,
 * hatchery's frontend. qemu-storage-daemon (QEMU 7.2: libvhost-user)
 * exports the ext4 image as vhost-user-blk on a unix socket; the test
 * connects and gives that fd to the machine as its disk. The guest reads
 * the host's file, writes 4 MiB from /dev/urandom, syncs, unmounts, mounts
 * again (the page cache went with the unmount: the bytes come back from
 * the daemon) and takes their sha256; the host's debugfs copy of the file
 * must have the same, and e2fsck -fn must find the image clean. Then the
 * daemon is stopped and the VM ends, saying its disk backend went away.
 * Compiled in and registered (test_linux_disk.qsd) only where CMake found
 * qemu-storage-daemon: never a skip for want of it. */
TestSuite(linux_disk_qsd, .init = setup, .timeout = 600);

static pid_t start_qsd(const char *img, const char *sock, const char *log)
{
	char blockdev[256], export[256];
	snprintf(blockdev, sizeof(blockdev), "driver=file,node-name=f,filename=%s", img);
	snprintf(export, sizeof(export),
		 "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=%s,"
		 "writable=on",
		 sock);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int out = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(HATCH_QEMU_STORAGE_DAEMON, "qemu-storage-daemon", "--blockdev", blockdev,
		      "--export", export, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The daemon's socket, connected (it listens once it has opened the image). */
static int connect_qsd(pid_t qsd, const char *sock, const char *log)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cr_assert_lt(strlen(sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	uint64_t deadline = hatch_now_ns() + t_ms(20000) * 1000000ull;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		cr_assert_eq(waitpid(qsd, NULL, WNOHANG), 0, "qemu-storage-daemon ended (%s)",
			     log);
		cr_assert_lt(hatch_now_ns(), deadline, "no %s to connect to (%s)", sock, log);
		usleep(20000);
	}
	return fd;
}

Test(linux_disk_qsd, ext4_write_read_back)
{
	char img[128];
	make_image(img, sizeof(img));
	char dir[] = "/tmp/hatch-qsd-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char sock[64], log[64];
	snprintf(sock, sizeof(sock), "%s/blk.sock", dir);
	snprintf(log, sizeof(log), "%s/qsd.log", dir);
	pid_t qsd = start_qsd(img, sock, log);
	int disk = connect_qsd(qsd, sock, log);

	size_t klen, ilen;
	uint8_t *kernel = slurp(HATCH_DEFAULT_KERNEL, &klen);
	uint8_t *initrd = slurp(HATCH_DEFAULT_INITRD, &ilen);
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_vcpus_signal_init(&err), 0, "%s", err.msg);
	struct vmp_vm vm;
	cr_assert_eq(vmp_vm_create_flags(&host, 256u << 20, 1, VMP_VM_SHARED_MEM, &vm, &err),
		     0, "%s", err.msg);
	struct vmp_linux_config cfg = {
		.kernel = kernel, .kernel_len = klen, .initrd = initrd, .initrd_len = ilen,
		.host_cpuid = host.cpuid, .disk = true, .disk_fd = disk,
	};
	struct vmp_linux *m;
	cr_assert_eq(vmp_linux_create(&vm, &cfg, &m, &err), 0, "%s (%s)", err.msg, log);
	free(kernel);
	free(initrd);
	cr_assert_eq(vmp_linux_start(m, &err), 0, "%s", err.msg);

	uint64_t deadline = hatch_now_ns() + t_ms(300000) * 1000000ull;
	Hatchery__V1__VmReply *rep = NULL;
	while (step(m, 100, &rep, NULL) == 0)
		cr_assert_lt(hatch_now_ns(), deadline, "no agent hello in time");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_AGENT_READY);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);

	char out[4096], errout[4096];
	int code = run_exec(m, 1, "mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt", out,
			    errout, deadline);
	cr_assert_eq(code, 0, "mount and cat; stderr: %s (daemon: %s)", errout, log);
	cr_expect_str_eq(out, FILE_TEXT);
	code = run_exec(m, 2, "head -c 4194304 /dev/urandom > /mnt/data && sync && umount /mnt",
			out, errout, deadline);
	cr_assert_eq(code, 0, "write, sync, umount; stderr: %s", errout);
	code = run_exec(m, 3, "mount -t ext4 /dev/vda /mnt && sha256sum /mnt/data && umount /mnt",
			out, errout, deadline);
	cr_assert_eq(code, 0, "mount, sha256sum, umount; stderr: %s", errout);
	char guest_sum[65];
	cr_assert_eq(sscanf(out, "%64[0-9a-f]  /mnt/data", guest_sum), 1, "%s", out);

	/* The daemon stops (SIGTERM: a clean exit); the VM ends, saying so. */
	kill(qsd, SIGTERM);
	int st;
	cr_assert_eq(waitpid(qsd, &st, 0), qsd);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qemu-storage-daemon status 0x%x (%s)",
		  st, log);
	struct hatch_err ended = { 0 };
	deadline = hatch_now_ns() + t_ms(30000) * 1000000ull;
	int r;
	while ((r = step(m, 100, &rep, &ended)) >= 0) {
		if (r > 0)
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
		cr_assert_lt(hatch_now_ns(), deadline, "the VM went on without its disk");
	}
	cr_expect(strstr(ended.msg, "the disk backend closed its connection"), "%s",
		  ended.msg);

	char cmd[256], host_sum[128] = "";
	snprintf(cmd, sizeof(cmd), "debugfs -R 'cat /data' %s 2>/dev/null | sha256sum", img);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	if (!fgets(host_sum, sizeof(host_sum), f))
		host_sum[0] = '\0';
	pclose(f);
	cr_expect_eq(strncmp(host_sum, guest_sum, 64), 0,
		     "guest's sha256 %s, the image's (debugfs) %.64s", guest_sum, host_sum);
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", img);
	cr_expect_eq(system(cmd), 0, "e2fsck -fn of the image");
	unlink(img);
	unlink(log);
	rmdir(dir);
}
#endif
